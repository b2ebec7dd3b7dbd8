"""Full-ranking recommenders: every item scored for a user in one pass (no decoding). The item-ID
baselines (SASRec, GRU4Rec, BERT4Rec) score a user vector against every item's embedding in one
matrix product; SimGR and ParallelSID score items through their semantic-ID tokens.

They read the same leave-one-out examples as the generative models (every training prefix, the
same ``max_item_seq_len`` truncation), so a comparison differs only in the model. Token ``0`` is
padding and item ``i`` is token ``i + 1``; models may add tokens after the items (BERT4Rec's mask).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from genrec.models.base import Recommender
from genrec.models.sampled_softmax import SampledSoftmax, SampledSoftmaxSettings
from genrec.ranking import EMPTY, exclusion_mask, top_k
from genrec.schema import StrictModel

PAD = 0


class ItemSettings(StrictModel):
    hidden_size: int = Field(ge=1, description="item embedding and hidden size")
    dropout_rate: float = Field(ge=0, lt=1, description="dropout probability")


class TransformerSettings(ItemSettings):
    num_layers: int = Field(ge=1, description="transformer blocks")
    num_heads: int = Field(ge=1, description="attention heads per block")


class TransformerBlock(nn.Module):
    """Pre-norm self-attention + feed-forward (4x wider, GELU) with residuals."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        if d % heads:
            raise ValueError(f"hidden_size {d} is not divisible by num_heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ffn = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        batch, length, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.drop(self.out(attended.transpose(1, 2).reshape(batch, length, d)))
        return x + self.drop(self.ffn(self.norm2(x)))


class TransformerEncoder(nn.Module):
    """Blocks over ``[B, L, d]`` with padding masked out as keys; ``causal`` lets position ``t`` see
    only positions ``<= t`` (SASRec), otherwise attention is bidirectional (BERT4Rec). A padding row
    sees itself only, so no row is all-masked (which would give NaN)."""

    def __init__(self, d: int, layers: int, heads: int, dropout: float, causal: bool):
        super().__init__()
        self.causal = causal
        self.blocks = nn.ModuleList(TransformerBlock(d, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        eye = torch.eye(length, dtype=torch.bool, device=x.device)
        allowed = real[:, None, None, :].expand(-1, 1, length, -1)
        if self.causal:
            allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        allowed = allowed | eye
        for block in self.blocks:
            x = block(x, allowed)
        return self.norm(x)


def right_aligned(sequences: list[np.ndarray], max_length: int) -> torch.Tensor:
    """``[B, L]`` CPU item tokens (item ``i`` is ``i + 1``), right-aligned (the latest item last),
    ``PAD`` on the left; ``L`` is the batch's longest sequence up to ``max_length`` (positions
    count from the right, so the width changes nothing but the work)."""
    length = min(max_length, max(1, *(len(s) for s in sequences)))
    tokens = np.zeros((len(sequences), length), dtype=np.int64)
    for row, seq in enumerate(sequences):
        if len(seq):
            tokens[row, -len(seq) :] = np.asarray(seq[-length:]) + 1
    return torch.from_numpy(tokens)


class FullRankingRecommender(Recommender):
    """Scores the whole catalogue for each user in one pass: full-catalogue cross-entropy for
    training (or, after :meth:`use_sampled_softmax`, a sampled softmax over some candidates), the
    top ``k`` scores to recommend. A model turns histories into CPU tensors (:meth:`history_batch`)
    and scores those (:meth:`scores_of`)."""

    n_items: int
    sampled: SampledSoftmax | None = None

    def use_sampled_softmax(self, settings: SampledSoftmaxSettings, train_targets: np.ndarray) -> None:
        """Train with a sampled softmax when ``settings.sampled_softmax`` > 0 (the training targets
        give the in-batch negatives' frequencies and the popularity sampler)."""
        if settings.sampled_softmax:
            self.sampled = SampledSoftmax(
                train_targets, self.n_items, settings.sampled_softmax, settings.negative_sampler
            )

    def candidate_scores(self, *inputs: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[B, len(items)]``: the scores of ``items`` alone. Models that can score a few items
        without the rest (a user-item product) override this, which is what makes sampling pay."""
        return self.scores_of(*inputs)[:, items]

    def history_batch(self, histories: list[np.ndarray]) -> tuple[torch.Tensor, ...]:
        """The CPU input tensors of :meth:`scores_of` for the histories."""
        raise NotImplementedError

    def scores_of(self, *inputs: torch.Tensor) -> torch.Tensor:
        """``[B, n_items]`` from :meth:`history_batch` tensors on the model's device."""
        raise NotImplementedError

    def scores(self, histories: list[np.ndarray]) -> torch.Tensor:
        """``[B, n_items]``: every item for every user."""
        return self.scores_of(*self.on_device(self.history_batch(histories)))

    def training_batch(
        self, histories: list[np.ndarray], targets: np.ndarray, generator: torch.Generator
    ) -> tuple[torch.Tensor, ...]:
        """The history tensors and targets, plus the batch's drawn negatives under a sampled softmax."""
        batch = (*self.history_batch(histories), torch.as_tensor(targets, dtype=torch.long))
        return batch if self.sampled is None else (*batch, self.sampled.draw(generator))

    def batch_loss(self, *batch: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over the full catalogue, or the sampled softmax over the batch's candidates."""
        if self.sampled is None:
            *inputs, targets = batch
            return F.cross_entropy(self.scores_of(*inputs).float(), targets)
        *inputs, targets, negatives = batch
        scores = self.candidate_scores(*inputs, items=self.sampled.candidates(targets, negatives))
        return self.sampled.loss(scores, targets, negatives)

    @torch.no_grad()
    def recommend_scored(
        self,
        histories: list[np.ndarray],
        k: int,
        num_beams: int,
        exclude: list[np.ndarray] | None = None,
        allowed: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top ``k`` of the full ranking and the model's scores, never an item of ``exclude[b]`` for
        user ``b`` nor one outside ``allowed[b]`` (``EMPTY``, score ``-inf``, once every other item is
        listed); ``num_beams`` is for generative models and unused here."""
        scores = self.scores(histories).float()
        if exclude is None and allowed is None:
            ranked = top_k(scores, k)
            return ranked, scores.gather(1, ranked)
        excluded = (
            torch.zeros_like(scores, dtype=torch.bool)
            if exclude is None
            else exclusion_mask(exclude, self.n_items, scores.device)
        )
        if allowed is not None:
            excluded |= ~allowed.to(scores.device)
        scores = scores.masked_fill(excluded, float("-inf"))
        ranked = top_k(scores, k)
        hidden = excluded.gather(1, ranked)
        return ranked.masked_fill(hidden, EMPTY), scores.gather(1, ranked)


class ItemIDRecommender(FullRankingRecommender):
    """An embedding per item: a user vector from the history, scored against every item's
    embedding in one product."""

    def __init__(self, n_items: int, hidden_size: int, extra_tokens: int = 0):
        super().__init__()
        self.n_items = n_items
        self.item_emb = nn.Embedding(n_items + 1 + extra_tokens, hidden_size, padding_idx=PAD)
        nn.init.normal_(self.item_emb.weight, std=hidden_size**-0.5)
        with torch.no_grad():
            self.item_emb.weight[PAD].zero_()

    def item_vectors(self) -> torch.Tensor:
        return self.item_emb.weight[1 : self.n_items + 1]

    def user_vectors(self, *inputs: torch.Tensor) -> torch.Tensor:
        """``[B, d]`` from :meth:`history_batch` tensors on the model's device."""
        raise NotImplementedError

    def scores_of(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.user_vectors(*inputs) @ self.item_vectors().T

    def candidate_scores(self, *inputs: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.user_vectors(*inputs) @ self.item_emb(items + 1).T


class PositionalEncoder(nn.Module):
    """SASRec's and BERT4Rec's trunk: item embeddings scaled by sqrt(d) plus learned positions
    (counted from the right, so the latest item always has the same one), dropout, padding zeroed,
    then the transformer."""

    def __init__(self, max_len: int, settings: TransformerSettings, causal: bool):
        super().__init__()
        self.positions = nn.Embedding(max_len, settings.hidden_size)
        self.drop = nn.Dropout(settings.dropout_rate)
        self.encoder = TransformerEncoder(
            settings.hidden_size, settings.num_layers, settings.num_heads, settings.dropout_rate, causal
        )

    def forward(self, embedded: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """``embedded``: ``[B, L, d]`` right-aligned inputs; ``real``: ``[B, L]``, False at padding."""
        x = embedded * math.sqrt(embedded.shape[-1]) + self.positions.weight[-embedded.shape[1] :]
        return self.encoder(self.drop(x) * real.unsqueeze(-1), real)
