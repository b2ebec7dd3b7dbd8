"""Analyses of finished runs: why models rank as they do (``genrec analyze ...``)."""

from genrec.analysis.beams import beam_sweep, top10_overlap
from genrec.analysis.diversity import diversity_sweep, parse_settings
from genrec.analysis.tree import (
    aggregate_paths,
    analyze,
    item_log_probs,
    pairwise_pearson,
    rank_reversals,
    sample_pairs,
    summarize_distances,
    tree_analysis,
    tree_distances,
)

__all__ = [
    "aggregate_paths",
    "analyze",
    "beam_sweep",
    "diversity_sweep",
    "item_log_probs",
    "pairwise_pearson",
    "parse_settings",
    "rank_reversals",
    "sample_pairs",
    "summarize_distances",
    "top10_overlap",
    "tree_analysis",
    "tree_distances",
]
