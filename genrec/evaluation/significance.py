"""Is a difference between two models larger than the test users' noise? A paired bootstrap over
users: both models are scored on the same users, so resampling users (with replacement) and
averaging each model's per-user metric gives the spread of the mean difference."""

from __future__ import annotations

import numpy as np


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, float]:
    """Mean of ``a - b`` (per-user metrics of two models on the same users, in the same order), its
    ``level`` percentile interval over ``resamples`` bootstrap samples of users, and the two-sided
    bootstrap p-value ``p``: twice the share of resampled means on the far side of 0, counted with
    the observed sample ((count + 1) / (resamples + 1), never 0), so that ``p < 1 - level`` where
    the interval excludes 0."""
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
    far_side = min(int((means <= 0).sum()), int((means >= 0).sum()))
    p = min(1.0, 2 * (far_side + 1) / (resamples + 1))
    return {"mean": float(difference.mean()), "low": float(low), "high": float(high), "p": p}


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of ``p_values`` for testing them all at once: where many pairs of
    models are compared, some intervals exclude 0 by chance; an adjusted p below 0.05 keeps the
    chance of any false "beyond noise" among them at 5% (no assumption about how the tests depend
    on each other)."""
    order = np.argsort(p_values, kind="stable")
    adjusted, running = [0.0] * len(p_values), 0.0
    for position, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - position) * p_values[index]))
        adjusted[index] = running
    return adjusted


def oriented_difference(differences: list[dict], a: str, b: str) -> dict[str, float] | None:
    """``a − b`` (mean and interval, and the p-values, which do not depend on the order) from paired
    differences listed once per pair, in either order (``{"a", "b", "mean", "low", "high", "p"...}``);
    None when the pair was not compared."""
    for d in differences:
        p_values = {key: d[key] for key in ("p", "p_holm") if key in d}
        if (d["a"], d["b"]) == (a, b):
            return {"mean": d["mean"], "low": d["low"], "high": d["high"], **p_values}
        if (d["a"], d["b"]) == (b, a):
            return {"mean": -d["mean"], "low": -d["high"], "high": -d["low"], **p_values}
    return None
