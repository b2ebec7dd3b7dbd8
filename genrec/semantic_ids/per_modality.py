"""Multi-modal semantic IDs (the Latte paper's §6): one level per modality, each level the k-means
code of that modality's own vector (e.g. collaborative vector, category path, text), so the levels
are parallel views of an item rather than residual refinements, and their order is a free choice.
"""

from __future__ import annotations

import numpy as np

from genrec.semantic_ids.frozen import residual_codebooks
from genrec.semantic_ids.methods import Quantizer, register
from genrec.semantic_ids.quantization import Quantization, check_size, squared_distances
from genrec.semantic_ids.rqkmeans import kmeans


def per_modality(parts: list[np.ndarray], codebook_size: int, iters: int, seed: int) -> Quantization:
    """Level ``l`` clusters ``parts[l]`` into at most ``codebook_size`` codes: fewer when the modality
    has fewer distinct vectors (a catalogue with 40 category paths gets 40 codes; the unused codes
    are at infinite distance). ``level_errors[l]`` is that modality's squared error relative to its
    spread around its mean (each level quantizes its own space)."""
    codes, distances, errors, codebooks = [], [], [], []
    for level, part in enumerate(parts):
        x = np.ascontiguousarray(part, dtype=np.float32)
        check_size(len(x), codebook_size)
        k = min(codebook_size, len(np.unique(x, axis=0)))
        centroids = kmeans(x, k, iters, seed + level)
        d = np.full((len(x), codebook_size), np.inf, dtype=np.float32)
        d[:, :k] = squared_distances(x, centroids)
        code = d.argmin(axis=1)
        spread = float(((x - x.mean(axis=0)).astype(np.float64) ** 2).sum())
        left = float(((x - centroids[code]).astype(np.float64) ** 2).sum())
        codes.append(code)
        distances.append(d)
        codebooks.append(centroids)
        errors.append(left / spread if spread > 0 else 0.0)
    return Quantization(np.stack(codes, 1).astype(np.int64), np.stack(distances, 1), errors, {"codebooks": codebooks})


register(
    Quantizer(
        "per_modality",
        lambda config, v: per_modality(
            np.split(v.vectors, np.cumsum(v.part_dims)[:-1], axis=1),
            config.vq_codebook_size,
            config.vq_kmeans_iters,
            config.seed,
        ),
        residual_codebooks,
        lambda config: {"modalities": list(config.vq_modalities)},
    )
)
