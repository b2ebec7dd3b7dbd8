"""Residual k-means (RQ-KMeans): level ``l`` clusters what levels ``0..l-1`` left unexplained.

Each level runs faiss k-means on the current residuals, assigns every item to its nearest centroid
and subtracts it, so the residual error can only fall level by level.
"""

from __future__ import annotations

import faiss
import numpy as np

from genrec.semantic_ids.frozen import residual_codebooks
from genrec.semantic_ids.methods import Quantizer, levels, register
from genrec.semantic_ids.quantization import Quantization, check_size, squared_distances


def kmeans(x: np.ndarray, k: int, iters: int, seed: int) -> np.ndarray:
    """faiss k-means on all points (no subsampling), deterministic under ``seed``."""
    km = faiss.Kmeans(
        x.shape[1],
        k,
        niter=iters,
        seed=seed,
        verbose=False,
        min_points_per_centroid=1,
        max_points_per_centroid=max(256, len(x)),
    )
    km.train(np.ascontiguousarray(x, dtype=np.float32))
    return km.centroids.copy()


def rq_kmeans(x: np.ndarray, n_levels: int, codebook_size: int, iters: int, seed: int) -> Quantization:
    check_size(len(x), codebook_size)
    residual = np.ascontiguousarray(x, dtype=np.float32).copy()
    total = float((residual.astype(np.float64) ** 2).sum())
    codes, distances, errors, codebooks = [], [], [], []
    for level in range(n_levels):
        centroids = kmeans(residual, codebook_size, iters, seed + level)
        d = squared_distances(residual, centroids)
        code = d.argmin(axis=1)
        residual -= centroids[code]
        codes.append(code)
        distances.append(d)
        codebooks.append(centroids)
        errors.append(float((residual.astype(np.float64) ** 2).sum()) / total)
    return Quantization(
        np.stack(codes, 1).astype(np.int64), np.stack(distances, 1), errors, {"codebooks": np.stack(codebooks)}
    )


register(
    Quantizer(
        "rqkmeans",
        lambda config, v: rq_kmeans(v.vectors, iters=config.vq_kmeans_iters, seed=config.seed, **levels(config)),
        residual_codebooks,
    )
)
