# Set-up on a fresh machine: `make quickstart` and `make test` create .venv when it is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.genrec-installed

.PHONY: venv quickstart test test-min lint format docs clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The pinned CPU build first: a bare `torch` requirement would pull GBs of CUDA packages.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

quickstart: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) main.py --config=configs/quickstart.yaml

# Two workers (the machines have 2 cores); a test module stays on one worker, so its fixtures are built once.
PYTEST_ARGS ?= -q -n 2 --dist loadscope

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

# The API reference from the docstrings (pdoc): docs/api/index.html.
docs: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) docs/api.py docs/api

# Lint and formatting (ruff, settings in pyproject.toml): `make format` rewrites, `make lint` only checks.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# The declared lower bounds of every dependency, installed together in their own environment.
MIN_VENV ?= .venv-min
MIN_STAMP := $(MIN_VENV)/.genrec-installed

$(MIN_STAMP): pyproject.toml constraints-min.txt
	test -x $(MIN_VENV)/bin/python || python3 -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MIN_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(MIN_VENV)/bin/python -m pip install --quiet -c constraints-min.txt -e ".[dev]"
	touch $(MIN_STAMP)

test-min: $(MIN_STAMP)
	HF_HUB_OFFLINE=1 $(MIN_VENV)/bin/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(MIN_VENV) cache runs docs/api
