"""BERT4Rec (Sun et al. 2019): a bidirectional transformer trained to recover masked items (cloze);
to recommend, a mask token is appended to the history and its output scores every item.

Training examples are the shared leave-one-out prefixes with their target appended: every position
is masked with probability ``mask_prob`` (at least one per sequence; the target when none was
drawn), and a masked position's input is the mask token, so the model never sees what it predicts.
"""

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from genrec.models.full_ranking import PAD, ItemIDRecommender, PositionalEncoder, TransformerSettings, right_aligned


class Settings(TransformerSettings):
    mask_prob: float = Field(gt=0, lt=1, description="share of a training sequence's items masked for the cloze task")


class BERT4Rec(ItemIDRecommender):
    def __init__(self, n_items: int, max_len: int, settings: Settings):
        super().__init__(n_items, settings.hidden_size, extra_tokens=1)
        d = settings.hidden_size
        self.mask_token, self.length, self.mask_prob = n_items + 1, max_len + 1, settings.mask_prob
        self.trunk = PositionalEncoder(self.length, settings, causal=False)
        self.head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d))
        self.item_bias = nn.Parameter(torch.zeros(n_items))

    def hidden_states(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.item_emb(tokens), tokens != PAD)

    def item_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden) @ self.item_vectors().T + self.item_bias

    def history_batch(self, histories: list[np.ndarray]) -> tuple[torch.Tensor]:
        """The history with the mask token appended: its output scores the next item."""
        tokens = right_aligned([h[-(self.length - 1) :] for h in histories], self.length - 1)
        return (torch.cat([tokens, torch.full_like(tokens[:, :1], self.mask_token)], dim=1),)

    def user_vectors(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.hidden_states(tokens)[:, -1]

    def scores_of(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.item_logits(self.user_vectors(tokens))

    def training_batch(
        self, histories, targets, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(inputs, masked, labels)``: history + target with masked positions replaced by the mask
        token, the boolean mask, and the item at each masked position."""
        tokens = right_aligned([np.append(h, t) for h, t in zip(histories, targets)], self.length)
        real = tokens != 0
        masked = (torch.rand(tokens.shape, generator=generator) < self.mask_prob) & real
        masked[:, -1] |= ~masked.any(dim=1)  # at least one: the target
        return tokens.masked_fill(masked, self.mask_token), masked, tokens[masked] - 1

    def batch_loss(self, inputs: torch.Tensor, masked: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.item_logits(self.hidden_states(inputs)[masked]).float(), labels)


def build(config, interactions, split) -> BERT4Rec:
    return BERT4Rec(interactions.n_items, config.max_item_seq_len, config)


__all__ = ["BERT4Rec", "Settings", "build"]
