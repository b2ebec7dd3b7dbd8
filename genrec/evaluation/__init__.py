"""Full-ranking evaluation: metrics over ranked item lists, one target per user."""

from genrec.evaluation.metrics import METRIC_NAMES, ranking_metrics, target_ranks, top_k

__all__ = ["METRIC_NAMES", "ranking_metrics", "target_ranks", "top_k"]
