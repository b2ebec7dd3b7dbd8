"""The quantizers ``vq_method`` names, found through one registry.

A quantizer says three things: how it turns item vectors into codes (``quantize``), which settings
beyond the shared ones change its codes (``settings``: they join the semantic-ID cache key), and
what of its training to keep so that new items get codes by the same rule (``keep``: a
:class:`~genrec.semantic_ids.frozen.FrozenQuantizer`). Each of genrec's registers itself at the
end of its own module (imported by :mod:`genrec.semantic_ids`), with its own settings schema if it
has keys of its own; another package's is an entry point (``genrec.quantizers``,
:mod:`genrec.registry`). The configuration accepts every registered name and its settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from genrec.errors import GenrecError
from genrec.registry import load_plugin, origin, plugins
from genrec.schema import StrictModel
from genrec.semantic_ids.quantization import Quantization


@dataclass(frozen=True)
class Quantizer:
    """A ``vq_method``: registered by its own module (``register(Quantizer(...))`` at its end)."""

    name: str
    quantize: Callable[..., Quantization]  # (config, ItemVectors) -> Quantization
    keep: Callable[..., Any]  # (config, ItemVectors, Quantization) -> FrozenQuantizer
    settings: Callable[..., dict] = lambda config: {}  # (config) -> what else of the config changes its codes
    # its own keys, which the configuration then accepts (genrec's take their defaults from default.yaml;
    # a plug-in's schema gives its own defaults)
    settings_schema: type[StrictModel] | None = None


QUANTIZERS: dict[str, Quantizer] = {}


def register(quantizer: Quantizer) -> Quantizer:
    """Make ``quantizer`` a ``vq_method`` under its name (genrec's own call this at import)."""
    QUANTIZERS[quantizer.name] = quantizer
    return quantizer


def installed() -> dict[str, Quantizer]:
    """The registered quantizers and those installed packages declare under ``genrec.quantizers``
    (each entry point a :class:`Quantizer` of the entry's name), loaded when first asked for."""
    found = dict(QUANTIZERS)
    for name, entry in plugins("quantizer", builtin()).items():
        if name not in found:
            quantizer = load_plugin(entry, "quantizer")
            if not isinstance(quantizer, Quantizer) or quantizer.name != name:
                raise GenrecError(
                    f"the quantizer plug-in {name!r} ({origin(entry)}) must be a "
                    f"genrec.semantic_ids.methods.Quantizer named {name!r}"
                )
            found[name] = quantizer
    return found


def builtin() -> set[str]:
    """genrec's own quantizers (a plug-in may not take their names)."""
    return {name for name, q in QUANTIZERS.items() if q.quantize.__module__.startswith("genrec.semantic_ids.")}


def names() -> list[str]:
    return sorted(installed())


def get(name: str) -> Quantizer:
    return installed()[name]


def levels(config) -> dict:
    """The shared settings every quantizer takes: ``n_levels`` and ``codebook_size``."""
    return dict(n_levels=config.vq_n_codebooks, codebook_size=config.vq_codebook_size)


def settings_schemas(chosen: str | None = None) -> list[type[StrictModel]]:
    """The settings schemas (their own keys, e.g. RQ-VAE's ``rqvae_*``) of genrec's quantizers, which
    every configuration has, and of the ``chosen`` one if a plug-in's: installing a plug-in must not
    add keys to the identity of every run (their checkpoints would no longer match)."""
    quantizers = installed()
    own = [name for name in sorted(builtin()) if quantizers[name].settings_schema is not None]
    if chosen in quantizers and chosen not in own and quantizers[chosen].settings_schema is not None:
        own.append(chosen)
    return [quantizers[name].settings_schema for name in own]
