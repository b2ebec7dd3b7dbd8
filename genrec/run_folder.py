"""The files of a run folder, named in one place, and their readers: what ``genrec train`` /
``compare`` / ``finetune`` / ``serve`` write and every command that reads a run finds.

==========================  ============================================================
``config.yaml``             the resolved settings (reloadable with ``--config``)
``best.pt``                 the checkpoint selected on validation (with its identity)
``last.pt``                 the resumable state after the last epoch
``metrics.jsonl``           one line per epoch (loss, validation metrics, seconds), then the final record
``results.json``            validation and test metrics of the best checkpoint
``test_ranks.npy``          each test user's target rank in the best checkpoint's list (-1: not retrieved)
``resumes.jsonl``           the settings a resume changed (old and new value, epoch, commit)
``run.log``                 the whole run's log
``finetune.json``           a fine-tuned run's parent and recipe
``catalogue_changes.jsonl`` the items ``genrec serve`` added and removed, replayed on restart
==========================  ============================================================
"""

from __future__ import annotations

import json
from pathlib import Path

from genrec.errors import ConfigError, GenrecError

CONFIG = "config.yaml"
BEST = "best.pt"
LAST = "last.pt"
METRICS = "metrics.jsonl"
RESULTS = "results.json"
TEST_RANKS = "test_ranks.npy"
RESUMES = "resumes.jsonl"
LOG = "run.log"
FINETUNE = "finetune.json"
CATALOGUE_CHANGES = "catalogue_changes.jsonl"
# What marks a folder as holding a run: a new run never reuses such a folder.
RUN_FILES = (CONFIG, RESULTS, BEST, LAST, METRICS)


def is_finished(directory: Path) -> bool:
    """Whether ``directory`` holds a finished run: its settings and its best checkpoint."""
    return (directory / CONFIG).is_file() and (directory / BEST).is_file()


def finished_run(directory: Path) -> None:
    """Refuse a folder that holds no finished run (``config.yaml`` and ``best.pt``)."""
    if not is_finished(directory):
        raise ConfigError(f"{directory} is not a finished run (it needs {CONFIG} and {BEST})")


def read_results(directory: Path) -> dict:
    """A finished run's ``results.json``; a damaged one is one error line saying how to retrain."""
    path = directory / RESULTS
    try:
        results = json.loads(path.read_text())
        if not isinstance(results, dict) or not all(isinstance(results.get(k), dict) for k in ("valid", "test")):
            raise ValueError("expected an object with 'valid' and 'test' metrics")
        return results
    except (ValueError, UnicodeDecodeError) as exc:
        raise GenrecError(f"{path}: damaged results ({exc}); delete {directory} to train that run again") from None


def read_epochs(directory: Path) -> list[dict]:
    """The per-epoch records of a run's ``metrics.jsonl`` (the final record left out)."""
    path = directory / METRICS
    try:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise GenrecError(f"{path}: missing; delete {directory} to train that run again") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise GenrecError(f"{path}: damaged log ({exc}); delete {directory} to train that run again") from None
    return [record for record in records if isinstance(record, dict) and "epoch" in record]
