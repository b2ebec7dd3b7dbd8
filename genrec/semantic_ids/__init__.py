"""Semantic IDs: quantize item vectors into short code tuples and make them unique.

:func:`semantic_ids` is the one entry point models use; it builds on demand (embeddings included)
and caches the result under ``cache_dir`` keyed by every setting that affects it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

import numpy as np

from genrec.cache import ArrayCache
from genrec.data import Interactions, Split
from genrec.embeddings import ItemVectors, dataset_cache_dir, item_embeddings
from genrec.errors import DataError, GenrecError
from genrec.schema import StrictModel
from genrec.semantic_ids import letter, methods, opq, per_modality, rqkmeans, rqvae  # noqa: F401  each registers its quantizer
from genrec.semantic_ids.collisions import resolve_conflict_free, resolve_tiger
from genrec.semantic_ids.frozen import FrozenQuantizer
from genrec.semantic_ids.quantization import Quantization

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SemanticIDs:
    """``codes[i]`` is the semantic ID of item index ``i``; ``level_sizes[l]`` is the number of
    distinct values level ``l`` may take (models give each level its own token range)."""

    codes: np.ndarray  # [n_items, n_levels] int64
    level_sizes: list[int]
    report: dict
    cache_key: str | None = None  # digest of what they were built from (None: made by hand)

    @property
    def n_levels(self) -> int:
        return self.codes.shape[1]

    @property
    def fingerprint(self) -> dict:
        """What a checkpoint of a model reading these IDs records: their cache key and their content."""
        codes = np.ascontiguousarray(self.codes, dtype=np.int64)
        content = hashlib.sha256(codes.tobytes() + repr((codes.shape, list(self.level_sizes))).encode()).hexdigest()
        return {"key": self.cache_key, "codes": content}


def with_new_items(sids: SemanticIDs, codes: np.ndarray) -> SemanticIDs:
    """``sids`` followed by new items' IDs ``codes`` (cold start: item ``len(sids.codes) + j`` is
    ``codes[j]``), which must fit the level sizes and be unique against the others."""
    codes = np.asarray(codes, dtype=np.int64)
    if (
        codes.ndim != 2
        or codes.shape[1] != sids.n_levels
        or (codes < 0).any()
        or (codes >= np.asarray(sids.level_sizes)).any()
    ):
        raise GenrecError(f"new semantic IDs must be {sids.n_levels} codes within the level sizes {sids.level_sizes}")
    every = np.concatenate([sids.codes, codes])
    if len(np.unique(every, axis=0)) != len(every):
        raise GenrecError("new semantic IDs must differ from each other and from the catalogue's")
    return SemanticIDs(every, sids.level_sizes, sids.report, sids.cache_key)


def quantize(config, item_vectors: ItemVectors) -> Quantization:
    return methods.get(config.vq_method).quantize(config, item_vectors)


def prefix_collision_rate(codes: np.ndarray, depth: int) -> float:
    """Share of items whose first ``depth`` codes are shared with at least one other item."""
    _, inverse, counts = np.unique(codes[:, :depth], axis=0, return_inverse=True, return_counts=True)
    return float((counts[inverse.ravel()] > 1).mean())


def build_report(config, quantization: Quantization, final: np.ndarray) -> dict:
    codes = quantization.codes
    levels = [
        {
            "level": level + 1,
            "utilisation": round(len(np.unique(codes[:, level])) / config.vq_codebook_size, 4),
            "collision_rate": round(prefix_collision_rate(codes, level + 1), 4),
            "recon_error": round(quantization.level_errors[level], 4),
        }
        for level in range(codes.shape[1])
    ]
    moved = int((final[:, : codes.shape[1]] != codes).any(axis=1).sum())
    report = {
        "method": config.vq_method,
        "collision": config.vq_collision,
        "n_items": len(codes),
        "levels": levels,
        "colliding_items": round(prefix_collision_rate(codes, codes.shape[1]), 4),
        "moved_items": moved,
        "unique": round(len(np.unique(final, axis=0)) / len(final), 6),
        "id_length": final.shape[1],
    }
    if config.vq_collision == "tiger":
        report["extra_token_values"] = int(final[:, -1].max()) + 1
    report.update({k: round(v, 4) for k, v in quantization.info.items() if isinstance(v, float)})
    return report


# Part of every cache key: bump when a change to the quantizers or collision handling alters results.
ALGORITHM_VERSION = 2  # 2: RQ-VAE trains with deterministic kernels


def sid_key(config, vectors: ItemVectors) -> dict:
    key = {
        "algorithm_version": ALGORITHM_VERSION,
        "vectors": vectors.key,
        "method": config.vq_method,
        "n_codebooks": config.vq_n_codebooks,
        "codebook_size": config.vq_codebook_size,
        "kmeans_iters": config.vq_kmeans_iters,
        "collision": config.vq_collision,
        "seed": config.seed,
    }
    key.update(methods.get(config.vq_method).settings(config))
    return key


def level_sizes_of(config, report: dict) -> list[int]:
    """Codes per level: the codebook size, plus TIGER's extra token (as many as the largest group)."""
    sizes = [config.vq_codebook_size] * config.vq_n_codebooks
    return sizes + [report["extra_token_values"]] if config.vq_collision == "tiger" else sizes


def check_cached(arrays: dict[str, np.ndarray], config, n_items: int) -> str | None:
    """What is wrong with a cached semantic-ID entry, or None: one ID per item, every code inside
    its level, every ID unique, and a report that agrees."""
    codes = arrays.get("codes")
    try:
        report = json.loads(str(arrays["report"]))
        sizes = level_sizes_of(config, report)
    except (KeyError, ValueError, TypeError):
        return "no readable report"
    if codes is None or codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
        return "no 2-D integer array 'codes'"
    if codes.shape != (n_items, len(sizes)) or report.get("level_sizes") != sizes:
        return (
            f"codes of shape {codes.shape} and level sizes {report.get('level_sizes')}, "
            f"expected {(n_items, len(sizes))} and {sizes}"
        )
    if (codes < 0).any() or (codes >= np.array(sizes)).any():
        return "codes outside their level's range"
    if len(np.unique(codes, axis=0)) != n_items:
        return "semantic IDs are not unique"
    return None


def semantic_ids(config: StrictModel, interactions: Interactions, split: Split) -> SemanticIDs:
    """The catalogue's unique semantic IDs as ``config`` builds them (``item_emb`` vectors quantized
    by ``vq_method``, collisions resolved by ``vq_collision``), from the cache when an entry with the
    same key (every setting and input that affects them) is there, else built and cached with the
    quantizer that made them."""
    vectors = item_embeddings(config, interactions, split)
    cache = ArrayCache(dataset_cache_dir(config, interactions))
    key = sid_key(config, vectors)
    cached = cache.load("sids", key, lambda arrays: check_cached(arrays, config, interactions.n_items))
    if cached is not None:
        log.info("semantic IDs: cache hit (%s)", cache.path("sids", key).name)
        report = json.loads(str(cached["report"]))
        return in_level_order(
            config, SemanticIDs(cached["codes"], report["level_sizes"], report, cache.path("sids", key).stem)
        )
    if np.ptp(vectors.vectors, axis=0).max(initial=0.0) == 0:
        raise DataError(
            f"the {vectors.source} embeddings of {interactions.name} are the same vector for every item "
            f"({'all zero' if not vectors.vectors.any() else 'constant'}): semantic IDs would carry no "
            "information; check sent_emb_model, or choose other embeddings with --item_emb"
        )
    cache.ensure_writable()
    quantization = quantize(config, vectors)
    final = resolve(config, quantization)
    report = build_report(config, quantization, final)
    report["embedding_source"] = vectors.source
    level_sizes = level_sizes_of(config, report)
    report["level_sizes"] = level_sizes
    if report["unique"] != 1.0:
        raise AssertionError(f"semantic IDs are not unique after {config.vq_collision} resolution")
    cache.save("sids", key, {"codes": final, "report": np.array(json.dumps(report))}, info=report)
    cache.save("quantizer", key, frozen(config, vectors, quantization).arrays())
    return in_level_order(config, SemanticIDs(final, level_sizes, report, cache.path("sids", key).stem))


def resolve(config, quantization: Quantization) -> np.ndarray:
    """Unique IDs from the quantizer's codes by ``vq_collision``."""
    if config.vq_collision == "tiger":
        return resolve_tiger(quantization.codes, quantization.distances)
    return resolve_conflict_free(quantization.codes, quantization.distances, config.vq_codebook_size)


def frozen(config, vectors: ItemVectors, quantization: Quantization) -> FrozenQuantizer:
    """What gives a new item its code as ``quantization`` gave the catalogue theirs."""
    return methods.get(config.vq_method).keep(config, vectors, quantization)


def frozen_quantizer(config, interactions: Interactions, split: Split) -> FrozenQuantizer:
    """The quantizer that built these semantic IDs (cached beside them). IDs cached before the
    quantizer was kept get it by quantizing again, which is deterministic; the rebuilt IDs must equal
    the cached ones, or the cache and the quantizer disagree and nothing is returned."""
    sids = semantic_ids(config, interactions, split)
    vectors = item_embeddings(config, interactions, split)
    cache = ArrayCache(dataset_cache_dir(config, interactions))
    key = sid_key(config, vectors)
    cached = cache.load("quantizer", key)
    if cached is not None:
        return FrozenQuantizer.from_arrays(config.vq_method, config.vq_codebook_size, cached)
    quantization = quantize(config, vectors)
    if not np.array_equal(
        in_level_order(config, SemanticIDs(resolve(config, quantization), sids.level_sizes, {})).codes, sids.codes
    ):
        raise DataError(
            f"quantizing {interactions.name} again did not reproduce its cached semantic IDs "
            f"({cache.path('sids', key).name}); delete that file to rebuild both"
        )
    quantizer = frozen(config, vectors, quantization)
    cache.save("quantizer", key, quantizer.arrays())
    return quantizer


def in_level_order(config, sids: SemanticIDs) -> SemanticIDs:
    """The IDs with their levels in ``vq_level_order`` (a fixed-order ablation: the cached IDs are the
    quantizer's; the order is applied on loading, and the codes' fingerprint tells checkpoints apart)."""
    if config.vq_level_order is None:
        return sids
    order = list(config.vq_level_order)
    return SemanticIDs(
        sids.codes[:, order],
        [sids.level_sizes[level] for level in order],
        {**sids.report, "level_order": order},
        sids.cache_key,
    )
