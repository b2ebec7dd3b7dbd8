"""Dataset-independent data types: interactions with item metadata, and the leave-one-out split."""

from genrec.data.interactions import Interactions, build_interactions, without_duplicates
from genrec.data.split import Examples, LeaveOneOutSplit, Windows, leave_one_out, training_windows

__all__ = [
    "Examples",
    "Interactions",
    "LeaveOneOutSplit",
    "build_interactions",
    "Windows",
    "leave_one_out",
    "training_windows",
    "without_duplicates",
]
