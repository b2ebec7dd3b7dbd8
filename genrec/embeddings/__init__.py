"""Item vectors for semantic IDs: text (sentence-transformers), collaborative (training
co-occurrence), or both; cached under ``cache_dir`` by everything that affects them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genrec.cache import ArrayCache, digest, fingerprint_arrays
from genrec.data import Interactions, Split
from genrec.embeddings.collaborative import cf_embeddings
from genrec.embeddings.text import encode, fit_pca, item_sentences, model_identity, project
from genrec.errors import ConfigError
from genrec.runtime import resolve_device

log = logging.getLogger(__name__)


# Part of every cache key: bump when a change to the embedding code alters results.
ALGORITHM_VERSION = 1


@dataclass(frozen=True)
class ItemVectors:
    vectors: np.ndarray  # [n_items, dim], row i = item index i
    source: str  # text | cf | text+cf, or the per-modality blocks (cf+category+text)
    key: dict  # the cache key: everything the vectors depend on
    part_dims: tuple[int, ...] = ()  # per-modality: the width of each block, in order
    collaborative: np.ndarray | None = None  # vq_method=letter: each item's collaborative vector, which it aligns to


def dataset_cache_dir(config, interactions: Interactions) -> Path:
    return Path(config.cache_dir) / interactions.name


def choose_source(config, interactions: Interactions) -> str:
    if config.item_emb == "auto":
        if interactions.has_text:
            log.info("item_emb=auto: %s has item text, using text embeddings", interactions.name)
            return "text"
        log.warning("item_emb=auto: %s has no item text, using collaborative (cf) embeddings", interactions.name)
        return "cf"
    if "text" in config.item_emb and not interactions.has_text:
        raise ConfigError(f"item_emb={config.item_emb} but {interactions.name} has no item text; use --item_emb=cf")
    return config.item_emb


def text_key(config, interactions: Interactions) -> tuple[dict, list[str]]:
    sentences = item_sentences(interactions.item_text, config.sent_emb_fields, config.sent_emb_max_chars)
    key = {
        "kind": "text",
        "algorithm_version": ALGORITHM_VERSION,
        "dataset": interactions.name,
        "items": digest([interactions.item_ids, sentences]),
        "model": model_identity(config.sent_emb_model),
        "fields": list(config.sent_emb_fields),
        "max_chars": config.sent_emb_max_chars,
        "pca": config.sent_emb_pca,
    }
    return key, sentences


def cf_key(config, interactions: Interactions, split: Split) -> dict:
    return {
        "kind": "cf",
        "algorithm_version": ALGORITHM_VERSION,
        "dataset": interactions.name,
        "items": digest(interactions.item_ids),
        "train": fingerprint_arrays(split.train_sequences),
        "dim": config.cf_emb_dim,
        "window": config.cf_window,
        "seed": config.seed,
    }


def check_vectors(arrays: dict[str, np.ndarray], n_items: int, dim: int | None = None) -> str | None:
    """What is wrong with cached item vectors, or None: one finite row per item (of ``dim`` columns)."""
    vectors = arrays.get("vectors")
    if vectors is None or vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.floating):
        return "no 2-D float array 'vectors'"
    if len(vectors) != n_items or (dim is not None and vectors.shape[1] != dim):
        return f"shape {vectors.shape}, expected ({n_items}, {dim or 'any'})"
    if not np.isfinite(vectors).all():
        return "non-finite values"
    return None


def text_vectors(config, interactions: Interactions, fields: list[str]) -> tuple[np.ndarray, dict]:
    """Sentence embeddings of each item's ``fields`` (cached), and their cache key."""
    key, sentences = text_key(config.model_copy(update={"sent_emb_fields": fields}), interactions)
    cache = ArrayCache(dataset_cache_dir(config, interactions))
    cached = cache.load("text-emb", key, lambda arrays: check_vectors(arrays, interactions.n_items))
    if cached is not None:
        log.info("text embeddings: cache hit (%s)", cache.path("text-emb", key).name)
        return cached["vectors"], key
    cache.ensure_writable()
    vectors = encode(sentences, config.sent_emb_model, config.sent_emb_batch_size, str(resolve_device(config.device)))
    arrays = {}
    if config.sent_emb_pca:  # the projection is kept: new items (cold start) are projected the same way
        mean, components = fit_pca(vectors, config.sent_emb_pca)
        vectors = project(vectors, mean, components)
        arrays = {"pca_mean": mean, "pca_components": components}
    cache.save("text-emb", key, {"vectors": vectors, **arrays})
    return vectors, key


def catalogue_pca(config, interactions: Interactions, fields: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The PCA projection the catalogue's text embeddings of ``fields`` were reduced with (kept in
    their cache entry)."""
    text_vectors(config, interactions, fields)  # builds the entry when it is missing
    key, _ = text_key(config.model_copy(update={"sent_emb_fields": fields}), interactions)
    cache = ArrayCache(dataset_cache_dir(config, interactions))
    arrays = cache.load("text-emb", key, lambda arrays: check_vectors(arrays, interactions.n_items))
    if arrays is None or "pca_components" not in arrays:
        raise ConfigError(
            f"the cached text embeddings {cache.path('text-emb', key).name} predate keeping their PCA "
            "projection, which new items need; delete that file to rebuild it"
        )
    return arrays["pca_mean"], arrays["pca_components"]


def cf_vectors(config, interactions: Interactions, split: Split) -> tuple[np.ndarray, dict]:
    """Collaborative embeddings from the training sequences (cached), and their cache key."""
    key = cf_key(config, interactions, split)
    cache = ArrayCache(dataset_cache_dir(config, interactions))
    cached = cache.load("cf-emb", key, lambda arrays: check_vectors(arrays, interactions.n_items, config.cf_emb_dim))
    if cached is not None:
        return cached["vectors"], key
    cache.ensure_writable()
    vectors = cf_embeddings(
        split.train_sequences, interactions.n_items, config.cf_emb_dim, config.cf_window, config.seed
    )
    cache.save("cf-emb", key, {"vectors": vectors})
    return vectors, key


def modality_vectors(config, interactions: Interactions, split: Split, modality: str) -> tuple[np.ndarray, dict]:
    """``text`` (the ``sent_emb_fields``), ``cf``, or ``category`` (the embedded category path alone)."""
    if modality == "cf":
        return cf_vectors(config, interactions, split)
    if modality == "category" and not any(text.get("categories", "").strip() for text in interactions.item_text):
        raise ConfigError(f"vq_modalities includes category but {interactions.name} has no item categories")
    if not interactions.has_text:
        raise ConfigError(f"vq_modalities includes {modality} but {interactions.name} has no item text")
    return text_vectors(
        config, interactions, ["categories"] if modality == "category" else list(config.sent_emb_fields)
    )


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def item_embeddings(config, interactions: Interactions, split: Split) -> ItemVectors:
    """The vectors semantic IDs quantize: with ``vq_method=per_modality`` one unit-norm block per
    entry of ``vq_modalities`` (``part_dims`` tells them apart), else the ``item_emb`` source (with
    ``vq_method=letter`` also the collaborative vectors its training aligns to)."""
    if config.vq_method == "per_modality":
        parts, keys = zip(*(modality_vectors(config, interactions, split, m) for m in config.vq_modalities))
        source = "+".join(config.vq_modalities)
        return ItemVectors(
            np.concatenate([unit_rows(p) for p in parts], axis=1).astype(np.float32),
            source,
            {"source": source, "parts": list(keys)},
            tuple(p.shape[1] for p in parts),
        )
    source = choose_source(config, interactions)
    parts, keys = zip(*(modality_vectors(config, interactions, split, m) for m in source.split("+")))
    if len(parts) > 1:  # text+cf: each part unit-norm so neither dominates by scale
        parts = [unit_rows(p) for p in parts]
    key = {"source": source, "parts": list(keys)}
    collaborative = None
    if config.vq_method == "letter":  # LETTER aligns the codes with the items' collaborative vectors
        collaborative, key["collaborative"] = cf_vectors(config, interactions, split)
    return ItemVectors(np.concatenate(parts, axis=1).astype(np.float32), source, key, (), collaborative)


def new_item_encoder(config, interactions: Interactions) -> Callable[[list[dict[str, str]]], np.ndarray]:
    """The function that embeds items that are not in ``interactions`` (cold start) as the
    catalogue's were: the same encoder, fields, PCA projection and per-modality normalization. What
    it needs from the catalogue (the PCA projections, read from the text-embedding cache) is read
    here once, so a server that adds items request by request does not read the catalogue's vectors
    each time. A new item has no interactions, so IDs built on collaborative vectors cannot place it."""
    modalities = (
        list(config.vq_modalities)
        if config.vq_method == "per_modality"
        else choose_source(config, interactions).split("+")
    )
    if "cf" in modalities:
        raise ConfigError(
            "a new item has no interactions, hence no collaborative (cf) vector: adding items needs "
            "semantic IDs built from text (item_emb=text, or vq_modalities without cf)"
        )
    device = str(resolve_device(config.device))
    fields_of = [["categories"] if modality == "category" else list(config.sent_emb_fields) for modality in modalities]
    projections = [catalogue_pca(config, interactions, fields) if config.sent_emb_pca else None for fields in fields_of]

    def embed(item_text: list[dict[str, str]]) -> np.ndarray:
        parts = []
        for fields, projection in zip(fields_of, projections):
            sentences = item_sentences(item_text, fields, config.sent_emb_max_chars)
            vectors = encode(sentences, config.sent_emb_model, config.sent_emb_batch_size, device)
            parts.append(vectors if projection is None else project(vectors, *projection))
        if config.vq_method == "per_modality":
            parts = [unit_rows(p) for p in parts]
        return np.concatenate(parts, axis=1).astype(np.float32)

    return embed
