"""Dataset-independent data types: interactions with item metadata, and the leave-one-out split."""

from genrec.data.interactions import Interactions, build_interactions, without_duplicates
from genrec.data.split import Examples, LeaveOneOutSplit, leave_one_out

__all__ = ["Examples", "Interactions", "LeaveOneOutSplit", "build_interactions", "leave_one_out", "without_duplicates"]
