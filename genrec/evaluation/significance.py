"""Is a difference between two models larger than the test users' noise? A paired bootstrap over
users: both models are scored on the same users, so resampling users (with replacement) and
averaging each model's per-user metric gives the spread of the mean difference."""

from __future__ import annotations

import numpy as np


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, float]:
    """Mean of ``a - b`` (per-user metrics of two models on the same users, in the same order) and
    its ``level`` percentile interval over ``resamples`` bootstrap samples of users."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"paired metrics need two equally long 1-D arrays, got {a.shape} and {b.shape}")
    difference = a - b
    rng = np.random.default_rng(seed)
    block = max(1, 2**22 // len(difference))  # resamples drawn together: about 32 MB of indices at a time
    means = np.concatenate(
        [
            difference[rng.integers(0, len(difference), size=(min(block, resamples - start), len(difference)))].mean(
                axis=1
            )
            for start in range(0, resamples, block)
        ]
    )
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return {"mean": float(difference.mean()), "low": float(low), "high": float(high)}


def oriented_difference(differences: list[dict], a: str, b: str) -> dict[str, float] | None:
    """``a − b`` (mean and interval) from paired differences listed once per pair, in either order
    (``{"a", "b", "mean", "low", "high"}``); None when the pair was not compared."""
    for d in differences:
        if (d["a"], d["b"]) == (a, b):
            return {"mean": d["mean"], "low": d["low"], "high": d["high"]}
        if (d["a"], d["b"]) == (b, a):
            return {"mean": -d["mean"], "low": -d["high"], "high": -d["low"]}
    return None
