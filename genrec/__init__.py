"""genrec: generative recommendation with semantic IDs.

``genrec.load_run("runs/<run>")`` loads a trained run; ``run.recommend(histories)`` recommends raw
item ids (:mod:`genrec.run`). The command line is ``genrec --help``.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Run", "__version__", "load_run"]


def __getattr__(name: str) -> Any:
    """``Run`` and ``load_run`` load torch and the models: imported on first use, so ``import genrec``
    (and ``genrec --help``) stays fast."""
    if name in ("Run", "load_run"):
        from genrec import run

        return getattr(run, name)
    raise AttributeError(f"module 'genrec' has no attribute {name!r}")
