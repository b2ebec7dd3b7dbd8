"""The trained quantizer of a set of semantic IDs, kept to give new items IDs the way training gave
the catalogue theirs (cold start): the same codebooks, the same nearest-code rule, and the same
collision rule against the IDs already in use.

What is kept: the codebooks (RQ-KMeans, per-modality k-means), OPQ's rotation and sub-space
codebooks, RQ-VAE's encoder weights and residual codebooks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from genrec.errors import ConfigError
from genrec.semantic_ids.collisions import FreeIDs
from genrec.semantic_ids.quantization import Quantization, squared_distances


@dataclass(frozen=True)
class FrozenQuantizer:
    method: str
    codebooks: list[np.ndarray]  # per level [codes, dim]
    codebook_size: int
    part_dims: tuple[int, ...] = ()  # per_modality / opq: the width of each level's block of the vectors
    transform: dict[str, np.ndarray] = field(default_factory=dict)  # opq: "rotation"; rqvae, letter: the encoder's

    @property
    def encoded(self) -> bool:
        """Whether codes quantize a trained encoder's latents (RQ-VAE, LETTER) rather than the vectors."""
        return any(name.startswith("encoder_") for name in self.transform)

    def assign(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(codes [N, levels], distances [N, levels, codebook_size])`` of new item vectors, by the
        rule that built the catalogue's: residual nearest codes (RQ-KMeans; RQ-VAE on its encoder's
        latents), each block's nearest code (per-modality; OPQ on its rotated vectors); codes a
        level does not have are at infinite distance."""
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.method == "opq":
            x = np.ascontiguousarray(x @ self.transform["rotation"].T)
        elif self.encoded:
            x = encode(self.transform, x)
        inputs = np.split(x, np.cumsum(self.part_dims)[:-1], axis=1) if self.part_dims else None
        residual = x.copy()
        codes, distances = [], []
        for level, codebook in enumerate(self.codebooks):
            source = inputs[level] if inputs is not None else residual
            d = np.full((len(x), self.codebook_size), np.inf, dtype=np.float32)
            d[:, : len(codebook)] = self.distances(source, codebook)
            code = d.argmin(axis=1)
            if inputs is None:
                residual -= codebook[code]
            codes.append(code)
            distances.append(d)
        return np.stack(codes, 1).astype(np.int64), np.stack(distances, 1)

    def distances(self, x: np.ndarray, codebook: np.ndarray) -> np.ndarray:
        """Squared distances as the quantizer computed them in training (RQ-VAE: torch's ``cdist``)."""
        if self.encoded:
            # through the matrix product, as training computed them (torch computes 25 rows or fewer
            # directly otherwise: an item added alone could get another code than in a batch)
            cdist = torch.cdist(torch.as_tensor(x), torch.as_tensor(codebook), compute_mode="use_mm_for_euclid_dist")
            return cdist.pow(2).numpy()
        return squared_distances(x, codebook)

    def arrays(self) -> dict[str, np.ndarray]:
        """What the cache stores (see :func:`genrec.semantic_ids.frozen_quantizer`)."""
        return {
            "part_dims": np.asarray(self.part_dims, dtype=np.int64),
            **self.transform,
            **{f"codebook_{level}": codebook for level, codebook in enumerate(self.codebooks)},
        }

    @classmethod
    def from_arrays(cls, method: str, codebook_size: int, arrays: dict[str, np.ndarray]) -> FrozenQuantizer:
        levels = sorted(int(name.split("_")[1]) for name in arrays if name.startswith("codebook_"))
        transform = {name: value for name, value in arrays.items() if name == "rotation" or name.startswith("encoder_")}
        return cls(
            method,
            [arrays[f"codebook_{level}"] for level in levels],
            codebook_size,
            tuple(int(d) for d in arrays["part_dims"]),
            transform,
        )


def encode(encoder: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The latents of a trained RQ-VAE encoder (its ``state_dict`` as arrays, keys ``encoder_<i>_weight``
    / ``encoder_<i>_bias``): the same linear layers and ReLUs, through torch as in training."""
    layers = sorted({int(name.split("_")[1]) for name in encoder})
    h = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
    with torch.no_grad():
        for position, layer in enumerate(layers):
            h = torch.nn.functional.linear(
                h,
                torch.as_tensor(encoder[f"encoder_{layer}_weight"]),
                torch.as_tensor(encoder[f"encoder_{layer}_bias"]),
            )
            if position < len(layers) - 1:
                h = torch.relu(h)
    return h.numpy()


def residual_codebooks(config, vectors, quantization: Quantization) -> FrozenQuantizer:
    """Codebooks applied to the vectors as they are (residually, or one block per level)."""
    return FrozenQuantizer(
        config.vq_method, list(quantization.info["codebooks"]), config.vq_codebook_size, vectors.part_dims
    )


def new_ids(
    raw: np.ndarray,
    distances: np.ndarray,
    existing: np.ndarray,
    collision: str,
    level_sizes: list[int],
    codebook_size: int,
) -> np.ndarray:
    """IDs for new items (their quantizer ``raw`` codes and ``distances``), unique against the
    ``existing`` IDs and each other by the run's collision rule: ``conflict_free`` moves a taken
    code to the nearest free one; ``tiger`` appends the next unused value of the extra token, which
    must fit the token's vocabulary (``level_sizes[-1]``)."""
    if collision == "conflict_free":
        free = FreeIDs(existing, codebook_size)
        placed = []
        for code, d in zip(map(tuple, raw.tolist()), distances):
            if code in free.used:
                code = free.nearest(code, d)
            else:
                free.mark(code)
            placed.append(code)
        return np.array(placed, dtype=np.int64).reshape(len(raw), raw.shape[1])
    taken: dict[tuple, int] = {}
    for code in map(tuple, existing[:, :-1].tolist()):
        taken[code] = taken.get(code, 0) + 1
    extra = []
    for code in map(tuple, raw.tolist()):
        value = taken.get(code, 0)
        if value >= level_sizes[-1]:
            raise ConfigError(
                f"a new item's ID {code} already has {value} items: TIGER's collision token has only "
                f"{level_sizes[-1]} values in this model, so it cannot be told apart"
            )
        taken[code] = value + 1
        extra.append(value)
    return np.concatenate([raw, np.array(extra, dtype=np.int64)[:, None]], axis=1)
