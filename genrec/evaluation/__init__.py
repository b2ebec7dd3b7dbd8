"""Full-ranking evaluation: metrics over ranked item lists, one target per user."""

from genrec.evaluation.diversity import Catalogue, diversity_metrics
from genrec.evaluation.evaluator import (
    Evaluator,
    evaluate,
    evaluate_with_ranks,
    evaluation_width,
    list_metrics,
    recommend_all,
)
from genrec.evaluation.metrics import KS, metric_names, ndcg_per_example, ranking_metrics, target_ranks
from genrec.evaluation.significance import oriented_difference, paired_bootstrap
from genrec.ranking import top_k

__all__ = [
    "KS",
    "metric_names",
    "Catalogue",
    "Evaluator",
    "diversity_metrics",
    "evaluate",
    "evaluate_with_ranks",
    "evaluation_width",
    "list_metrics",
    "ndcg_per_example",
    "oriented_difference",
    "paired_bootstrap",
    "ranking_metrics",
    "recommend_all",
    "target_ranks",
    "top_k",
]
