"""One embedding table of semantic-ID tokens (``0`` padding, then one range per level) shared by
the full-ranking models that read and score items through their IDs (SimGR, ParallelSID)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from genrec.semantic_ids import SemanticIDs


class SIDTokenTable(nn.Module):
    def __init__(self, sids: SemanticIDs, dim: int):
        super().__init__()
        sizes = list(sids.level_sizes)
        self.offsets = [1 + sum(sizes[:level]) for level in range(len(sizes))]
        self.level_sizes = sizes
        self.embedding = nn.Embedding(1 + sum(sizes), dim, padding_idx=0)
        nn.init.normal_(self.embedding.weight, std=dim**-0.5)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        codes = torch.as_tensor(np.asarray(sids.codes), dtype=torch.long)
        self.register_buffer("codes", codes, persistent=False)  # [n_items, levels] local codes
        self.register_buffer("item_tokens", codes + torch.tensor(self.offsets), persistent=False)

    @property
    def n_levels(self) -> int:
        return len(self.level_sizes)

    def level_rows(self, level: int) -> torch.Tensor:
        """``[level_size, d]``: the embeddings of level ``level``'s codes."""
        start = self.offsets[level]
        return self.embedding.weight[start : start + self.level_sizes[level]]

    def item_token_embeddings(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """``[..., levels, d]`` for item indices (``-1``: padding -> zeros); all items when None."""
        if items is None:
            return self.embedding(self.item_tokens)
        tokens = self.item_tokens[items.clamp_min(0)].masked_fill((items < 0).unsqueeze(-1), 0)
        return self.embedding(tokens)

    def add_items(self, codes: torch.Tensor) -> None:
        """New items (their local ``codes``, ``[n, levels]``) read and are scored through the existing
        token rows."""
        codes = torch.as_tensor(codes, dtype=torch.long, device=self.codes.device)
        self.codes = torch.cat([self.codes, codes])
        self.item_tokens = torch.cat([self.item_tokens, codes + torch.tensor(self.offsets, device=codes.device)])
