"""``genrec sids``: build (or load) a dataset's semantic IDs and report their quality."""

from __future__ import annotations

import json

from genrec.cache import atomic_write_text
from genrec.commands.tables import sids_summary
from genrec.config import load_config


def cmd_sids(argv: list[str]) -> int:
    """``genrec sids`` and the dataset's and quantizer's flags: build (or load from the cache) the
    semantic IDs and report their quality (collisions before resolution, codebook use, moved items)."""
    from genrec.pipeline import load_split, run_directory
    from genrec.semantic_ids import semantic_ids

    config = load_config(argv)
    with run_directory(config, "sids") as directory:
        interactions, split = load_split(config)
        sids = semantic_ids(config, interactions, split)
        atomic_write_text(directory / "sids.json", json.dumps(sids.report, indent=2))
    print(sids_summary(sids.report))
    print(f"report and resolved config: {directory}")
    return 0
