"""Dataset-independent data types: interactions with item metadata, and the splits (leave-one-out, temporal)."""

from genrec.data.interactions import Interactions, build_interactions, without_duplicates
from genrec.data.split import Examples, Split, Windows, leave_one_out, temporal_split, training_windows

__all__ = [
    "Examples",
    "Interactions",
    "Split",
    "build_interactions",
    "Windows",
    "leave_one_out",
    "temporal_split",
    "training_windows",
    "without_duplicates",
]
