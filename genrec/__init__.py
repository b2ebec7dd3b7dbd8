"""genrec: generative recommendation with semantic IDs.

``genrec.load_run("runs/<run>")`` loads a trained run; ``run.recommend(histories)`` recommends raw
item ids (:mod:`genrec.run`), spread over the catalogue with ``diversity=genrec.Diversity(...)``.
The command line is ``genrec --help``.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Diversity", "Run", "__version__", "load_run"]


def __getattr__(name: str) -> Any:
    """``Run``, ``load_run`` and ``Diversity`` load torch and the models: imported on first use, so
    ``import genrec`` (and ``genrec --help``) stays fast."""
    if name in ("Run", "load_run", "Diversity"):
        from genrec import run

        return getattr(run, name)
    raise AttributeError(f"module 'genrec' has no attribute {name!r}")
