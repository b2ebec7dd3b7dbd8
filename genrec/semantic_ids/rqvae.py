"""RQ-VAE (as in TIGER): an MLP auto-encoder whose latent is quantized by residual codebooks.

Training minimises reconstruction MSE plus, per level, the VQ codebook loss
``||sg(r) - e||^2`` and ``beta`` times the commitment loss ``||r - sg(e)||^2``, with a
straight-through estimator around the quantizer. Codebooks start from residual k-means on the
initial latents (so no code starts dead), and codes left unused in an epoch are reset to random
current residuals, except during the last tenth of training so the final codebooks settle.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import nn

from genrec.runtime import deterministic, progress, resolve_device
from genrec.schema import StrictModel, comma_separated
from genrec.semantic_ids.frozen import FrozenQuantizer
from genrec.semantic_ids.methods import Quantizer, levels, register
from genrec.semantic_ids.quantization import Quantization, check_size
from genrec.semantic_ids.rqkmeans import rq_kmeans

CHUNK = 65_536  # items encoded and assigned at once outside training


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    def __init__(self, in_dim: int, hidden: list[int], latent_dim: int, n_levels: int, codebook_size: int):
        super().__init__()
        self.encoder = mlp([in_dim, *hidden, latent_dim])
        self.decoder = mlp([latent_dim, *reversed(hidden), in_dim])
        self.codebooks = nn.Parameter(torch.zeros(n_levels, codebook_size, latent_dim))

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Greedy residual assignment: (codes [B, L], quantized latent [B, D], distances [B, L, K],
        residual entering each level)."""
        residual = z
        codes, dists, residuals = [], [], []
        quantized = torch.zeros_like(z)
        for codebook in self.codebooks:
            # always through the matrix product: torch computes 25 rows or fewer directly otherwise,
            # which would make an item's code depend on the size of its batch
            d = torch.cdist(residual, codebook, compute_mode="use_mm_for_euclid_dist").pow(2)
            code = d.argmin(dim=1)
            chosen = codebook[code]
            residuals.append(residual)
            codes.append(code)
            dists.append(d)
            quantized = quantized + chosen
            residual = residual - chosen.detach()
        return torch.stack(codes, 1), quantized, torch.stack(dists, 1), residuals

    def loss(
        self, x: torch.Tensor, beta: float, regularizer: Regularizer | None = None, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The training loss of items ``x`` (rows ``rows`` of the catalogue) and their codes."""
        z = self.encoder(x)
        codes, quantized, _, residuals = self.quantize(z)
        vq = z.new_zeros(())
        for level, residual in enumerate(residuals):
            chosen = self.codebooks[level][codes[:, level]]
            vq = (
                vq
                + (residual.detach() - chosen).pow(2).sum(1).mean()
                + beta * (residual - chosen.detach()).pow(2).sum(1).mean()
            )
        z_q = z + (quantized - z).detach()  # straight-through
        reconstruction = (self.decoder(z_q) - x).pow(2).sum(1).mean()
        loss = reconstruction + vq
        if regularizer is not None:
            loss = loss + regularizer(self, rows, z_q, codes)
        return loss, codes


class Regularizer(nn.Module):
    """A term without parameters of its own added to RQ-VAE's loss (LETTER's,
    :mod:`genrec.semantic_ids.letter`): called with the model, the batch's catalogue rows, their
    quantized latents (straight-through: the gradient reaches the encoder) and their codes.
    :meth:`start_epoch` is called before each epoch."""

    def start_epoch(self, model: RQVAE) -> None:
        """Refresh what the term keeps between batches (nothing unless overridden)."""


@deterministic()
def rq_vae(
    x: np.ndarray,
    n_levels: int,
    codebook_size: int,
    hidden: list[int],
    latent_dim: int,
    epochs: int,
    batch_size: int,
    lr: float,
    beta: float,
    kmeans_iters: int,
    seed: int,
    device: str = "cpu",
    make_regularizer: Callable[[int], Regularizer] | None = None,
) -> Quantization:
    """RQ-VAE's codes of items ``x``, trained with deterministic kernels; ``make_regularizer``, given
    the latent size, makes a term to add to its loss (LETTER's)."""
    check_size(len(x), codebook_size)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    data = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device=device)
    model = RQVAE(data.shape[1], hidden, latent_dim, n_levels, codebook_size).to(device)
    regularizer = make_regularizer(latent_dim).to(device) if make_regularizer is not None else None
    with torch.no_grad():
        latents = torch.cat([model.encoder(chunk) for chunk in data.split(CHUNK)]).cpu().numpy()
        codebooks = rq_kmeans(latents, n_levels, codebook_size, kmeans_iters, seed).info["codebooks"]
        model.codebooks.copy_(torch.as_tensor(codebooks, device=device))
        del latents
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    reset_until = int(epochs * 0.9)
    for epoch in progress(range(epochs), desc="RQ-VAE", leave=False):
        if regularizer is not None:
            regularizer.start_epoch(model)
        used = torch.zeros(n_levels, codebook_size, dtype=torch.bool, device=device)
        for batch in torch.randperm(len(data), generator=generator).split(batch_size):
            rows = batch.to(device)
            loss, codes = model.loss(data[rows], beta, regularizer, rows)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            used[torch.arange(n_levels, device=device)[None, :].expand_as(codes), codes] = True
        if epoch < reset_until and not used.all():
            reset_dead_codes(model, data, used, generator)
    model.eval()
    codes, distances, errors, reconstruction = assign(model, data)
    encoder = {
        f"encoder_{name.replace('.', '_')}": value.cpu().numpy() for name, value in model.encoder.state_dict().items()
    }
    return Quantization(
        codes,
        distances,
        errors,
        {
            "decoder_relative_error": reconstruction,
            "codebooks": model.codebooks.detach().cpu().numpy(),
            "encoder": encoder,
        },
    )  # what a new item's ID needs (cold start)


@torch.no_grad()
def assign(model: RQVAE, data: torch.Tensor) -> tuple[np.ndarray, np.ndarray, list[float], float]:
    """Every item's codes and distances, the relative error left after each level and the decoder's
    relative reconstruction error, computed ``CHUNK`` items at a time: the whole catalogue's hidden
    activations and per-level distance tables at once are several times the 3 GiB of distances
    returned at a million items (see ``reset_dead_codes`` for the peak measured)."""
    n_levels, codebook_size, _ = model.codebooks.shape
    codes = np.empty((len(data), n_levels), np.int64)
    distances = np.empty((len(data), n_levels, codebook_size), np.float32)
    left = np.zeros(n_levels)  # squared error left after levels 0..l
    latent_energy = reconstruction_error = data_energy = 0.0
    for start in range(0, len(data), CHUNK):
        x = data[start : start + CHUNK]
        z = model.encoder(x)
        chunk_codes, quantized, chunk_distances, residuals = model.quantize(z)
        codes[start : start + len(x)] = chunk_codes.cpu().numpy()
        distances[start : start + len(x)] = chunk_distances.cpu().numpy()
        for level in range(n_levels):
            rest = residuals[level + 1] if level + 1 < n_levels else z - quantized
            left[level] += float(rest.double().pow(2).sum())
        latent_energy += float(z.double().pow(2).sum())
        reconstruction_error += float((model.decoder(quantized) - x).double().pow(2).sum())
        data_energy += float(x.double().pow(2).sum())
    return codes, distances, [float(e / latent_energy) for e in left], reconstruction_error / data_energy


@torch.no_grad()
def reset_dead_codes(model: RQVAE, data: torch.Tensor, used: torch.Tensor, generator: torch.Generator) -> None:
    """Set each level's unused codes to the residuals, entering that level, of random items.

    The items are drawn first and only their residuals computed, under the codebooks before any
    reset: the same residuals as encoding the whole catalogue every epoch (up to the rounding of a
    smaller matrix product), at a fraction of its time and memory: with this and ``assign``, two
    epochs on a million 64-d items peak at 6.7 GiB, against 10.8 GiB when every reset and the final
    pass encoded the whole catalogue at once (same level errors)."""
    n_levels = model.codebooks.shape[0]
    dead = [(~used[level]).nonzero().flatten() for level in range(n_levels)]
    picks = [
        torch.randint(len(data), (len(codes),), generator=generator).to(data.device) if len(codes) else None
        for codes in dead
    ]
    drawn = [pick for pick in picks if pick is not None]
    if not drawn:
        return
    rows, position = torch.unique(torch.cat(drawn), return_inverse=True)
    _, _, _, residuals = model.quantize(model.encoder(data[rows]))
    offset = 0
    for level, pick in enumerate(picks):
        if pick is not None:
            model.codebooks[level, dead[level]] = residuals[level][position[offset : offset + len(pick)]]
            offset += len(pick)


class Settings(StrictModel):
    """RQ-VAE's own keys (defaults in ``genrec/default.yaml``); all of them change its codes, so all
    join the semantic-ID cache key."""

    rqvae_hidden_dims: list[int] = Field(description="RQ-VAE encoder widths (the decoder mirrors them)")
    rqvae_latent_dim: int = Field(ge=1, description="RQ-VAE latent size, the vectors its codebooks quantize")
    rqvae_epochs: int = Field(ge=1, description="RQ-VAE training epochs")
    rqvae_batch_size: int = Field(ge=1, description="RQ-VAE training batch")
    rqvae_lr: float = Field(gt=0, description="RQ-VAE learning rate")
    rqvae_beta: float = Field(ge=0, description="RQ-VAE commitment loss weight")

    split_hidden_dims = field_validator("rqvae_hidden_dims", mode="before")(comma_separated)


def keep_encoder(config, vectors, quantization: Quantization) -> FrozenQuantizer:
    """What places a new item as training placed the catalogue's: the encoder and the codebooks."""
    return FrozenQuantizer(
        config.vq_method,
        list(quantization.info["codebooks"]),
        config.vq_codebook_size,
        (),
        dict(quantization.info["encoder"]),
    )


def configured_rq_vae(
    config, vectors: np.ndarray, make_regularizer: Callable[[int], Regularizer] | None = None
) -> Quantization:
    """:func:`rq_vae` of ``vectors`` with the configuration's ``rqvae_*`` and shared settings."""
    return rq_vae(
        vectors,
        hidden=list(config.rqvae_hidden_dims),
        latent_dim=config.rqvae_latent_dim,
        epochs=config.rqvae_epochs,
        batch_size=config.rqvae_batch_size,
        lr=config.rqvae_lr,
        beta=config.rqvae_beta,
        kmeans_iters=config.vq_kmeans_iters,
        seed=config.seed,
        device=str(resolve_device(config.device)),
        make_regularizer=make_regularizer,
        **levels(config),
    )


register(
    Quantizer(
        "rqvae",
        lambda config, v: configured_rq_vae(config, v.vectors),
        keep_encoder,
        lambda config: {"rqvae": {name: getattr(config, name) for name in Settings.model_fields}},
        Settings,
    )
)
