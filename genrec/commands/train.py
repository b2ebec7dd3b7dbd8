"""``genrec train``: train one model, select on validation, test the best checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

from genrec.commands.evaluate import cmd_evaluate
from genrec.commands.tables import results_table
from genrec.config import load_config
from genrec.errors import GenrecError


def cmd_train(argv: list[str]) -> int:
    """``genrec train --model=NAME`` and any settings: train, select the best epoch on validation, test
    it; the run folder holds ``best.pt``, ``last.pt``, ``metrics.jsonl``, ``results.json`` and its
    resolved ``config.yaml``. ``--checkpoint=last.pt`` resumes a run; a weights-only ``best.pt`` is
    evaluated."""
    from genrec import models
    from genrec.pipeline import train
    from genrec.trainer import is_resumable

    config = load_config(argv)
    if config.model is None:
        raise GenrecError(f"no model chosen; pass --model=<{'|'.join(models.names())}>")
    if config.checkpoint is not None and not is_resumable(Path(config.checkpoint)):
        return cmd_evaluate(argv)
    results, directory = train(config)
    if int(os.environ.get("RANK", "0")):  # a data-parallel process other than rank 0: rank 0 reports
        return 0
    print(f"{config.model} on {config.dataset}: best epoch {results['best_epoch']}, beam {results['num_beams']}")
    print(results_table(results))
    print(f"checkpoints, metrics.jsonl, results.json and resolved config: {directory}")
    return 0
