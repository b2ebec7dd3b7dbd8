"""GRU4Rec (Hidasi et al. 2016, in its cross-entropy form: full-catalogue, or sampled with
``sampled_softmax``): a GRU over the history's item embeddings; its last state, projected to the
embedding size, is the user vector."""

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from genrec.models.full_ranking import ItemIDRecommender, ItemSettings, right_aligned
from genrec.models.sampled_softmax import SampledSoftmaxSettings


class Settings(ItemSettings, SampledSoftmaxSettings):
    num_layers: int = Field(ge=1, description="stacked GRU layers")


class GRU4Rec(ItemIDRecommender):
    def __init__(self, n_items: int, settings: Settings):
        super().__init__(n_items, settings.hidden_size)
        d = settings.hidden_size
        self.drop = nn.Dropout(settings.dropout_rate)
        self.gru = nn.GRU(
            d,
            d,
            settings.num_layers,
            batch_first=True,
            dropout=settings.dropout_rate if settings.num_layers > 1 else 0.0,
        )
        self.project = nn.Linear(d, d)

    def history_batch(self, histories: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens, lengths)``: left-aligned tokens (oldest first) and each history's length."""
        lengths = torch.tensor([max(1, len(h)) for h in histories])
        return right_aligned([h[::-1] for h in histories], int(lengths.max())).flip(1), lengths

    def user_vectors(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(
            self.drop(self.item_emb(tokens)), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, last = self.gru(packed)
        return self.project(last[-1])


def build(config, interactions, split) -> GRU4Rec:
    model = GRU4Rec(interactions.n_items, config)
    model.use_sampled_softmax(config, split.train.targets)
    return model


__all__ = ["GRU4Rec", "Settings", "build"]
