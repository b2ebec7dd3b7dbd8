"""The quantizers ``vq_method`` names, found through one registry.

A quantizer says three things: how it turns item vectors into codes (``quantize``), which settings
beyond the shared ones change its codes (``settings``: they join the semantic-ID cache key), and
what of its training to keep so that new items get codes by the same rule (``keep``: a
:class:`~genrec.semantic_ids.frozen.FrozenQuantizer`). Adding one is a :func:`register` call here,
or an entry point in another package (``genrec.quantizers``, :mod:`genrec.registry`); the
configuration accepts every registered name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from genrec.embeddings import ItemVectors
from genrec.errors import GenrecError
from genrec.registry import origin, plugins
from genrec.runtime import resolve_device
from genrec.semantic_ids.frozen import FrozenQuantizer
from genrec.semantic_ids.opq import opq
from genrec.semantic_ids.per_modality import per_modality
from genrec.semantic_ids.quantization import Quantization
from genrec.semantic_ids.rqkmeans import rq_kmeans
from genrec.semantic_ids.rqvae import rq_vae


@dataclass(frozen=True)
class Quantizer:
    name: str
    quantize: Callable[..., Quantization]  # (config, ItemVectors) -> Quantization
    keep: Callable[..., FrozenQuantizer]  # (config, ItemVectors, Quantization) -> FrozenQuantizer
    settings: Callable[..., dict] = lambda config: {}  # (config) -> what else of the config changes its codes


QUANTIZERS: dict[str, Quantizer] = {}
GROUP = "genrec.quantizers"  # entry points of quantizers in other packages (genrec.registry)


def register(quantizer: Quantizer) -> Quantizer:
    """Make ``quantizer`` a ``vq_method`` under its name (genrec's own call this at import)."""
    QUANTIZERS[quantizer.name] = quantizer
    return quantizer


def installed() -> dict[str, Quantizer]:
    """The registered quantizers and those installed packages declare under ``genrec.quantizers``
    (each entry point a :class:`Quantizer` of the entry's name), loaded when first asked for."""
    found = dict(QUANTIZERS)
    for name, entry in plugins(GROUP).items():
        if name in BUILTIN:
            raise GenrecError(
                f"the {GROUP} plug-in {name!r} from {origin(entry)} takes the name of genrec's own quantizer: "
                "rename its entry point"
            )
        if name not in found:
            try:
                quantizer = entry.load()
            except (ImportError, AttributeError) as exc:
                raise GenrecError(f"the {GROUP} plug-in {name!r} ({origin(entry)}) cannot be loaded: {exc}") from None
            if not isinstance(quantizer, Quantizer) or quantizer.name != name:
                raise GenrecError(
                    f"the {GROUP} plug-in {name!r} ({origin(entry)}) must be a "
                    f"genrec.semantic_ids.methods.Quantizer named {name!r}"
                )
            found[name] = quantizer
    return found


def names() -> list[str]:
    return sorted(installed())


def get(name: str) -> Quantizer:
    return installed()[name]


def levels(config) -> dict:
    return dict(n_levels=config.vq_n_codebooks, codebook_size=config.vq_codebook_size)


def residual_codebooks(config, vectors: ItemVectors, quantization: Quantization) -> FrozenQuantizer:
    """Codebooks applied to the vectors as they are (residually, or one block per level)."""
    return FrozenQuantizer(
        config.vq_method, list(quantization.info["codebooks"]), config.vq_codebook_size, vectors.part_dims
    )


register(
    Quantizer(
        "rqkmeans",
        lambda config, v: rq_kmeans(v.vectors, iters=config.vq_kmeans_iters, seed=config.seed, **levels(config)),
        residual_codebooks,
    )
)
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
RQVAE_KEYS = ("rqvae_hidden_dims", "rqvae_latent_dim", "rqvae_epochs", "rqvae_batch_size", "rqvae_lr", "rqvae_beta")
register(
    Quantizer(
        "rqvae",
        lambda config, v: rq_vae(
            v.vectors,
            hidden=list(config.rqvae_hidden_dims),
            latent_dim=config.rqvae_latent_dim,
            epochs=config.rqvae_epochs,
            batch_size=config.rqvae_batch_size,
            lr=config.rqvae_lr,
            beta=config.rqvae_beta,
            kmeans_iters=config.vq_kmeans_iters,
            seed=config.seed,
            device=str(resolve_device(config.device)),
            **levels(config),
        ),
        lambda config, v, q: FrozenQuantizer(
            "rqvae", list(q.info["codebooks"]), config.vq_codebook_size, (), dict(q.info["encoder"])
        ),
        lambda config: {"rqvae": {name: getattr(config, name) for name in RQVAE_KEYS}},
    )
)
BUILTIN = frozenset(QUANTIZERS)  # genrec's own: a plug-in may not take their names
