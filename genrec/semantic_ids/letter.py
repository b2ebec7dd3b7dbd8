"""LETTER (Wang et al., 2024, "Learnable Item Tokenization for Generative Recommendation"): an RQ-VAE
whose codes are trained for three things at once.

- **Semantics**: RQ-VAE's own loss (reconstruction of the item's text vector, codebook and
  commitment terms; :mod:`genrec.semantic_ids.rqvae`).
- **Collaborative alignment**: the quantized latent of an item (straight-through, so the encoder
  learns from it) must pick out that item's collaborative vector among the batch's (in-batch
  InfoNCE, cosine similarities over ``letter_temperature``; weight ``letter_cf_weight``). The
  collaborative vectors are genrec's PPMI + SVD item vectors of the training sequences, reduced to
  the latent's width by PCA. The latent itself must carry them (no learned projection, which could
  align a subspace the codes never look at), so items that users consume together move towards the
  same codes even when their texts differ, which text-only codes cannot know.
- **Code diversity**: each level's codes are clustered into ``letter_clusters`` groups (k-means,
  refreshed every epoch); the code an item is assigned is pulled towards another code of its group
  and pushed from the level's other codes (a softmax over the codebook's dot products, the assigned
  code left out; weight ``letter_diversity_weight``), as the authors' code does. Codes that items
  crowd onto are moved among their neighbours, which spreads the assignments.

Differences from the authors' code (github.com/HonghuiBao2000/LETTER): the collaborative vectors are
genrec's (the paper trains a SASRec of the latent's width), reduced by PCA, with cosine similarities
instead of raw dot products; the code groups are plain k-means, not size-constrained;
and no Sinkhorn balancing of the last level's assignments (genrec's RQ-VAE has none either).

Only the encoder and codebooks decide a code, so a new item (cold start) is placed as RQ-VAE places
it, from its text vector alone: the collaborative terms shape training, not assignment.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from genrec.embeddings import ItemVectors
from genrec.errors import ConfigError
from genrec.schema import StrictModel, setting
from genrec.semantic_ids import rqvae
from genrec.semantic_ids.methods import Quantizer, register
from genrec.semantic_ids.quantization import Quantization
from genrec.semantic_ids.rqkmeans import kmeans


class LetterRegularizer(rqvae.Regularizer):
    """LETTER's collaborative and diversity terms (module docstring), for an RQ-VAE of ``latent_dim``."""

    def __init__(
        self,
        collaborative: np.ndarray,
        latent_dim: int,
        cf_weight: float,
        diversity_weight: float,
        clusters: int,
        temperature: float,
        kmeans_iters: int,
        seed: int,
    ):
        super().__init__()
        cf = np.ascontiguousarray(collaborative, dtype=np.float64)
        if cf.shape[1] < latent_dim:
            raise ConfigError(
                f"LETTER aligns the {latent_dim}-d quantized latents with the collaborative vectors: cf_emb_dim "
                f"({cf.shape[1]}) must be at least rqvae_latent_dim"
            )
        if cf.shape[1] > latent_dim:  # their principal directions, as many as the latent has
            centred = cf - cf.mean(0)
            cf = centred @ np.linalg.svd(centred, full_matrices=False)[2][:latent_dim].T
        self.register_buffer(
            "collaborative", F.normalize(torch.as_tensor(cf, dtype=torch.float32), dim=1), persistent=False
        )
        self.cf_weight, self.diversity_weight = cf_weight, diversity_weight
        self.clusters, self.temperature, self.kmeans_iters, self.seed = clusters, temperature, kmeans_iters, seed
        self.generator = torch.Generator().manual_seed(seed)
        self.siblings: list[torch.Tensor] = []  # per level [K, K]: code j is another code of code i's group
        self.epoch = 0

    @torch.no_grad()
    def start_epoch(self, model: rqvae.RQVAE) -> None:
        """Group each level's codes by k-means of their current vectors."""
        self.siblings = []
        for level, codebook in enumerate(model.codebooks):
            vectors = codebook.detach().cpu().numpy()
            k = min(self.clusters, len(np.unique(vectors, axis=0)))
            centroids = kmeans(vectors, k, self.kmeans_iters, self.seed + 1000 * self.epoch + level)
            groups = torch.as_tensor(((vectors[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1))
            same = groups[:, None] == groups[None, :]
            self.siblings.append((same & ~torch.eye(len(groups), dtype=torch.bool)).to(codebook.device))
        self.epoch += 1

    def collaborative_loss(self, rows: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
        """In-batch InfoNCE: each item's quantized latent against the batch's collaborative vectors."""
        queries = F.normalize(quantized, dim=1)
        keys = self.collaborative[rows]
        logits = queries @ keys.T / self.temperature
        return F.cross_entropy(logits, torch.arange(len(rows), device=logits.device))

    def diversity_loss(self, model: rqvae.RQVAE, codes: torch.Tensor) -> torch.Tensor:
        """Per level, a softmax over the codebook: each assigned code towards a random other code of its
        group, the level's other codes the negatives (the code itself is left out; a code alone in its
        group is its own positive)."""
        total = model.codebooks.new_zeros(())
        for level, codebook in enumerate(model.codebooks):
            code = codes[:, level]
            siblings = self.siblings[level][code]  # [B, K]
            alone = ~siblings.any(1)
            weights = siblings.float()
            weights[alone, code[alone]] = 1.0
            positive = torch.multinomial(weights.cpu(), 1, generator=self.generator).squeeze(1).to(code.device)
            logits = codebook[code] @ codebook.T
            own = F.one_hot(code, logits.shape[1]).bool() & ~alone[:, None]
            total = total + F.cross_entropy(logits.masked_fill(own, float("-inf")), positive)
        return total / len(model.codebooks)

    def forward(
        self, model: rqvae.RQVAE, rows: torch.Tensor, quantized: torch.Tensor, codes: torch.Tensor
    ) -> torch.Tensor:
        loss = self.cf_weight * self.collaborative_loss(rows, quantized)
        if self.diversity_weight:
            loss = loss + self.diversity_weight * self.diversity_loss(model, codes)
        return loss


class Settings(StrictModel):
    """LETTER's own keys (defaults in ``genrec/default.yaml``; the RQ-VAE it trains takes the
    ``rqvae_*`` keys); all of them change its codes, so all join the semantic-ID cache key."""

    letter_cf_weight: float = setting(
        since=0.01, ge=0, description="LETTER: weight of the collaborative alignment loss"
    )
    letter_diversity_weight: float = setting(
        since=0.0001, ge=0, description="LETTER: weight of the code diversity loss"
    )
    letter_clusters: int = setting(
        since=10, ge=2, description="LETTER: groups of each level's codes for the diversity loss"
    )
    letter_temperature: float = setting(
        since=0.1, gt=0, description="LETTER: temperature of the collaborative alignment's cosines"
    )


def letter(config, vectors: ItemVectors) -> Quantization:
    """LETTER's codes of the catalogue's ``vectors`` (which carry their collaborative vectors)."""
    if vectors.collaborative is None:
        raise ConfigError("vq_method=letter needs the items' collaborative vectors (genrec.embeddings.item_embeddings)")
    if config.letter_clusters > config.vq_codebook_size:
        raise ConfigError(
            f"letter_clusters={config.letter_clusters} groups more codes than a level has "
            f"(vq_codebook_size={config.vq_codebook_size})"
        )
    return rqvae.configured_rq_vae(
        config,
        vectors.vectors,
        lambda latent_dim: LetterRegularizer(
            vectors.collaborative,
            latent_dim,
            config.letter_cf_weight,
            config.letter_diversity_weight,
            config.letter_clusters,
            config.letter_temperature,
            config.vq_kmeans_iters,
            config.seed,
        ),
    )


register(
    Quantizer(
        "letter",
        letter,
        rqvae.keep_encoder,
        lambda config: {
            "letter": {name: getattr(config, name) for name in [*rqvae.Settings.model_fields, *Settings.model_fields]}
        },
        Settings,
    )
)
