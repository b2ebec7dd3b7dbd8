"""SASRec (Kang & McAuley 2018): causal self-attention over the history's item embeddings; the
last position's output is the user vector.

``loss_type=ce`` is full-catalogue cross-entropy (the strong modern variant; with
``sampled_softmax`` > 0 a logQ-corrected sampled softmax, for large catalogues); ``bce`` is the
original paper's binary cross-entropy with one uniformly sampled negative per example (the setting
of the TIGER-line tables).
"""

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from genrec.errors import ConfigError
from genrec.models.full_ranking import PAD, ItemIDRecommender, PositionalEncoder, TransformerSettings, right_aligned
from genrec.models.sampled_softmax import SampledSoftmaxSettings


class Settings(TransformerSettings, SampledSoftmaxSettings):
    loss_type: Literal["ce", "bce"] = Field(
        description="ce: cross-entropy (over the catalogue, or sampled: sampled_softmax); bce: the paper's "
        "binary loss with one sampled negative"
    )


class SASRec(ItemIDRecommender):
    def __init__(self, n_items: int, max_len: int, settings: Settings):
        super().__init__(n_items, settings.hidden_size)
        self.max_len, self.loss_type = max_len, settings.loss_type
        self.trunk = PositionalEncoder(max_len, settings, causal=True)

    def hidden_states(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, L, d]`` outputs for right-aligned ``tokens``; position ``t`` sees items ``<= t`` only."""
        return self.trunk(self.item_emb(tokens), tokens != PAD)

    def history_batch(self, histories: list[np.ndarray]) -> tuple[torch.Tensor]:
        return (right_aligned(histories, self.max_len),)

    def user_vectors(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.hidden_states(tokens)[:, -1]

    def training_batch(self, histories, targets, generator):
        """``(tokens, targets)`` (and a sampled softmax's negatives), or for ``bce`` one negative per
        example, uniform over the other items."""
        if self.loss_type == "ce":
            return super().training_batch(histories, targets, generator)
        tokens, positive = super().training_batch(histories, targets, generator)
        negative = torch.randint(self.n_items - 1, positive.shape, generator=generator)
        return tokens, positive, negative + (negative >= positive).long()

    def batch_loss(self, *batch):
        if self.loss_type == "ce":
            return super().batch_loss(*batch)
        tokens, positive, negative = batch
        users = self.user_vectors(tokens)
        items = self.item_vectors()
        pos_score = (users * items[positive]).sum(-1).float()
        neg_score = (users * items[negative]).sum(-1).float()
        return F.softplus(-pos_score).mean() + F.softplus(neg_score).mean()


def build(config, interactions, split) -> SASRec:
    if config.loss_type == "bce" and config.sampled_softmax:
        raise ConfigError("sampled_softmax is a cross-entropy: use it with loss_type=ce (bce samples its own negative)")
    model = SASRec(interactions.n_items, config.max_item_seq_len, config)
    model.use_sampled_softmax(config, split.train.targets)
    return model


__all__ = ["SASRec", "Settings", "build"]
