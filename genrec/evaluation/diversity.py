"""Item-level diversity of the recommended lists: how widely exposure spreads over the catalogue
and over item categories (the SimGR paper's concern that decoding concentrates on few items)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Catalogue:
    """What the evaluator knows about the items: how many there are and, when the dataset has a
    category path, each item's category at the configured level (``-1``: none)."""

    n_items: int
    categories: np.ndarray | None = None

    @classmethod
    def of(cls, interactions, category_level: int) -> Catalogue:
        """Categories from the items' comma-separated category paths at ``category_level`` (1 = the
        top level; 0 = none); ``None`` when no item has a category at that level."""
        if category_level == 0:
            return cls(interactions.n_items)
        names: dict[str, int] = {}
        categories = np.full(interactions.n_items, -1, dtype=np.int64)
        for item, text in enumerate(interactions.item_text):
            path = [part.strip() for part in text.get("categories", "").split(",") if part.strip()]
            if len(path) >= category_level:
                categories[item] = names.setdefault(path[category_level - 1], len(names))
        return cls(interactions.n_items, categories if names else None)


def entropy_bits(counts: np.ndarray) -> float:
    """Shannon entropy (bits) of the distribution proportional to ``counts``."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) if len(p) else 0.0


def diversity_metrics(ranked: np.ndarray, catalogue: Catalogue, k: int = 10) -> dict[str, float]:
    """Entropy@k of the exposure distribution over items (every top-k slot counts once), and over
    categories when the catalogue has them (items without a category left out)."""
    shown = ranked[:, :k]
    shown = shown[shown >= 0]
    metrics = {f"entropy@{k}": entropy_bits(np.bincount(shown, minlength=catalogue.n_items))}
    if catalogue.categories is not None:
        categories = catalogue.categories[shown]
        metrics[f"category_entropy@{k}"] = entropy_bits(np.bincount(categories[categories >= 0]))
    return metrics
