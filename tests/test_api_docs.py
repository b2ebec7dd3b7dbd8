"""The API reference builds from the docstrings without a warning (docs/api.py, `make docs`), and
the functions a user calls from Python say what they do and what they take."""

import inspect
import sys

from conftest import REPO

import genrec
from genrec.cache import entries_used
from genrec.config import load_config
from genrec.decoding.diversity import Diversity
from genrec.export import export_run
from genrec.pipeline import load_split, train
from genrec.semantic_ids import semantic_ids
from genrec.semantic_ids.methods import register

# What the README shows users calling from Python.
USER_API = [
    genrec.load_run,
    genrec.Run.recommend,
    genrec.Run.rank,
    genrec.Run.add_items,
    genrec.Run.remove,
    genrec.Run.restore,
    genrec.Run.allowed_items,
    export_run,
    load_config,
    load_split,
    train,
    entries_used,
]


def test_the_reference_builds_with_a_page_per_module(tmp_path):
    sys.path.insert(0, str(REPO / "docs"))
    try:
        import api
    finally:
        sys.path.remove(str(REPO / "docs"))
    pages = api.build(tmp_path)
    names = {str(page.relative_to(tmp_path)) for page in pages}
    assert {"index.html", "genrec/run.html", "genrec/export.html", "genrec/registry.html"} <= names
    run_page = (tmp_path / "genrec" / "run.html").read_text()
    assert "load_run" in run_page and "add_items" in run_page


def test_the_functions_users_call_have_docstrings_and_type_hints():
    for function in USER_API:
        name = function.__qualname__
        assert inspect.getdoc(function), f"{name} has no docstring"
        signature = inspect.signature(function)
        unannotated = [
            p.name
            for p in signature.parameters.values()
            if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty
        ]
        assert not unannotated, f"{name}: parameters without a type: {unannotated}"
        assert signature.return_annotation is not inspect.Signature.empty, f"{name}: no return type"
    assert inspect.getdoc(Diversity) and inspect.getdoc(register) and inspect.getdoc(semantic_ids)
