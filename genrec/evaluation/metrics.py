"""Recall / NDCG / HR at K over ranked lists, as in the TIGER and Latte papers (leave-one-out, one
target per user, full ranking over the whole catalogue).

A ranked list is a row of item indices, best first; ``-1`` marks an empty slot (a generative model
that returned fewer than K items) and ``-2`` a generated ID that is no item (decoding without the
trie). An item absent from the list is not retrieved. With one target,
Recall@K equals HR@K, NDCG@K is ``1 / log2(rank + 2)`` and MRR@K ``1 / (rank + 1)`` for a hit at
0-based ``rank`` (0 for a miss).
"""

from __future__ import annotations

import numpy as np

from genrec.decoding import INVALID

KS = (1, 5, 10)  # the default cutoffs (config: metric_ks)
DIGITS = 5  # decimals a metric keeps in results.json and metrics.jsonl


def recorded(value: float) -> float:
    """A metric as the run's files keep it (``DIGITS`` decimals)."""
    return round(float(value), DIGITS)


def shown(value: float) -> str:
    """A metric as logs and tables print it: four decimals of the *recorded* value. Formatting the
    raw value instead would round twice differently (0.025051 logs as 0.0251 while the table built
    from its recorded 0.02505 shows 0.0250): one rule makes a log line and a table agree."""
    return f"{recorded(value):.4f}"


def metric_names(ks: tuple[int, ...] = KS) -> tuple[str, ...]:
    """Recall at every cutoff, NDCG and MRR at every cutoff above 1 (with one target both equal
    Recall@1 at 1)."""
    above = [k for k in ks if k > 1]
    return tuple(f"recall@{k}" for k in ks) + tuple(f"ndcg@{k}" for k in above) + tuple(f"mrr@{k}" for k in above)


def target_ranks(ranked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based position of each row's target in its ranked list, ``-1`` when absent."""
    hits = np.asarray(ranked) == np.asarray(targets)[:, None]
    return np.where(hits.any(axis=1), hits.argmax(axis=1), -1)


def ndcg_per_example(ranks: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k of each example from its target's 0-based rank (``-1``: not retrieved)."""
    ranks = np.asarray(ranks)
    return np.where((ranks >= 0) & (ranks < k), 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)


def ranking_metrics(
    ranked: np.ndarray, targets: np.ndarray, n_items: int, ks: tuple[int, ...] = KS
) -> dict[str, float]:
    """Recall@K, NDCG@K and MRR@K (:func:`metric_names`) for lists at least ``max(ks)`` long, the catalogue
    coverage of the top-10 lists and the share of top-10 slots holding an invalid generation."""
    ranked = np.asarray(ranked)
    ranks = target_ranks(ranked, targets)
    found = ranks >= 0
    metrics = {f"recall@{k}": float((found & (ranks < k)).mean()) for k in ks}
    metrics.update({f"ndcg@{k}": float(ndcg_per_example(ranks, k).mean()) for k in ks if k > 1})
    metrics.update(
        {
            f"mrr@{k}": float(np.where(found & (ranks < k), 1.0 / (np.maximum(ranks, 0) + 1.0), 0.0).mean())
            for k in ks
            if k > 1
        }
    )
    top10 = ranked[:, :10]
    metrics["coverage@10"] = float(len(np.unique(top10[top10 >= 0])) / n_items)
    metrics["invalid@10"] = float((top10 == INVALID).sum() / top10.size) if top10.size else 0.0
    return metrics
