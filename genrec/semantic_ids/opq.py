"""OPQ: a learned rotation (faiss ``OPQMatrix``) followed by product quantization.

Level ``l`` of the semantic ID is the code of sub-space ``l``; the levels are independent rather
than hierarchical. The codebook size must be a power of two (faiss stores codes as bit fields).
"""

from __future__ import annotations

import faiss
import numpy as np

from genrec.errors import ConfigError
from genrec.semantic_ids.frozen import FrozenQuantizer
from genrec.semantic_ids.methods import Quantizer, levels, register
from genrec.semantic_ids.quantization import Quantization, check_size, squared_distances


def opq(x: np.ndarray, n_levels: int, codebook_size: int, iters: int, seed: int) -> Quantization:
    check_size(len(x), codebook_size)
    nbits = int(np.log2(codebook_size))
    if 2**nbits != codebook_size:
        raise ConfigError(f"vq_method=opq needs a power-of-two vq_codebook_size, got {codebook_size}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    dim = x.shape[1]
    if len(x) < dim:  # faiss's OPQ training corrupts memory below this (seen with faiss-cpu 1.15)
        raise ConfigError(
            f"vq_method=opq needs at least as many items ({len(x)}) as embedding dimensions ({dim}); "
            "reduce the dimensions with --sent_emb_pca"
        )
    out_dim = n_levels * -(-dim // n_levels)  # round up to a multiple of the number of sub-spaces
    pq = faiss.ProductQuantizer(out_dim, n_levels, nbits)
    pq.cp.niter = iters
    pq.cp.seed = seed
    pq.cp.min_points_per_centroid = 1
    pq.cp.max_points_per_centroid = max(256, len(x))
    rotation = faiss.OPQMatrix(dim, n_levels, out_dim)
    rotation.niter = iters
    rotation.pq = pq  # OPQ alternates rotation and PQ training; it leaves `pq` trained on the rotated data
    rotation.train(x)
    rotated = rotation.apply(x)
    centroids = faiss.vector_to_array(pq.centroids).reshape(n_levels, codebook_size, pq.dsub)
    total = float((rotated.astype(np.float64) ** 2).sum())
    remaining = total
    codes, distances, errors = [], [], []
    for level in range(n_levels):
        sub = rotated[:, level * pq.dsub : (level + 1) * pq.dsub]
        d = squared_distances(sub, centroids[level])
        code = d.argmin(axis=1)
        remaining += float(d[np.arange(len(x)), code].astype(np.float64).sum()) - float(
            (sub.astype(np.float64) ** 2).sum()
        )
        codes.append(code)
        distances.append(d)
        errors.append(remaining / total)
    matrix = faiss.vector_to_array(rotation.A).reshape(out_dim, dim)  # the rotation, kept for new items (cold start)
    return Quantization(
        np.stack(codes, 1).astype(np.int64),
        np.stack(distances, 1),
        errors,
        {"codebooks": centroids, "rotation": matrix},
    )


register(
    Quantizer(
        "opq",
        lambda config, v: opq(v.vectors, iters=config.vq_kmeans_iters, seed=config.seed, **levels(config)),
        # product quantization of the rotated vectors: one block per level
        lambda config, v, q: FrozenQuantizer(
            "opq",
            list(q.info["codebooks"]),
            config.vq_codebook_size,
            tuple(c.shape[1] for c in q.info["codebooks"]),
            {"rotation": q.info["rotation"]},
        ),
    )
)
