"""Full-ranking evaluation: metrics over ranked item lists, one target per user."""

from genrec.evaluation.diversity import Catalogue, diversity_metrics
from genrec.evaluation.evaluator import evaluate, recommend_all
from genrec.evaluation.metrics import METRIC_NAMES, ranking_metrics, target_ranks
from genrec.ranking import top_k

__all__ = ["METRIC_NAMES", "Catalogue", "diversity_metrics", "evaluate", "ranking_metrics", "recommend_all", "target_ranks", "top_k"]
