"""``genrec compare``: models x seeds on one dataset, with the comparison's tables."""

from __future__ import annotations

import os

from genrec.errors import GenrecError


def cmd_compare(argv: list[str]) -> int:
    """``genrec compare --models=A,B,... [--seeds=3 | --seeds=[2024,2025]]`` and shared flags: train (or
    reuse, or resume from ``last.pt``) every model and seed on one dataset; a variant is
    ``Model:key=value:key=value``. Writes ``comparison.md`` / ``.json``, mean ± std over seeds, paired
    bootstrap intervals over users, learning curves, and the sweep figure when the variants differ in
    one number."""
    from genrec.compare import compare

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise GenrecError(
            "genrec compare trains its runs one after another in one process; launch genrec train "
            "under torchrun for data-parallel training"
        )
    report, folder = compare(argv)
    print(report)
    print(f"comparison.md (also .csv, .tex), comparison.json and the runs: {folder}")
    return 0
