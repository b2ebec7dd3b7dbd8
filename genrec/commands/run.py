"""``genrec run`` (and ``python main.py``): the main job."""

from __future__ import annotations

import json

from genrec.cache import atomic_write_text
from genrec.commands.tables import format_table, sids_summary
from genrec.commands.train import cmd_train
from genrec.config import load_config


def cmd_run(argv: list[str]) -> int:
    """``genrec run`` (also ``python main.py``): with ``--model``, ``genrec train``; without, the data,
    split and semantic IDs with a summary."""
    from genrec.pipeline import load_split, run_directory
    from genrec.semantic_ids import semantic_ids

    config = load_config(argv)
    if config.model is not None:
        return cmd_train(argv)
    with run_directory(config, "run") as directory:
        interactions, split = load_split(config)
        sids = semantic_ids(config, interactions, split)
        summary = {
            "data": interactions.stats(),
            "split": {
                "train_examples": len(split.train),
                "valid_users": len(split.valid),
                "test_users": len(split.test),
            },
            "semantic_ids": sids.report,
        }
        atomic_write_text(directory / "summary.json", json.dumps(summary, indent=2))
    print(format_table([summary["data"]], ["dataset", "users", "items", "interactions", "avg_length"]))
    print(format_table([summary["split"]], list(summary["split"])))
    print(sids_summary(sids.report))
    print(f"outputs and resolved config: {directory}")
    return 0
