"""What every quantizer returns, and the distance helper they share."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from genrec.errors import ConfigError


@dataclass(frozen=True)
class Quantization:
    """Codes of every item plus what collision handling and reports need.

    ``distances[n, l, k]`` is the squared distance between item ``n``'s input to level ``l`` (its
    residual for residual quantizers, its sub-vector for product quantizers) and code ``k`` of
    level ``l``. ``level_errors[l]`` is the relative squared error left after levels ``0..l``
    (in the quantizer's own space).
    """

    codes: np.ndarray  # [N, L] int64
    distances: np.ndarray  # [N, L, K] float32
    level_errors: list[float]
    info: dict = field(default_factory=dict)


def squared_distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """[N, K] squared Euclidean distances, clipped at 0 against rounding."""
    d = (x * x).sum(1, keepdims=True) - 2.0 * x @ centroids.T + (centroids * centroids).sum(1)[None, :]
    return np.maximum(d, 0.0).astype(np.float32)


def check_size(n_items: int, codebook_size: int) -> None:
    if codebook_size > n_items:
        raise ConfigError(
            f"vq_codebook_size={codebook_size} exceeds the number of items ({n_items}); "
            "k-means needs at least one item per code"
        )
