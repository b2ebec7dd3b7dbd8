"""Item vectors from an item's SID-token embeddings (the SimGR paper's aggregator study)."""

from __future__ import annotations

import math

import torch
from torch import nn

AGGREGATORS = ("mean", "concat", "proj", "attention", "gating")


class ItemAggregator(nn.Module):
    """``[..., levels, d] -> [..., d]``.

    ``mean``: the plain mean (no parameters). ``concat``: the tokens concatenated, then a linear
    projection back to ``d``. ``proj``: a shared linear projection of each token, then the mean.
    ``attention``: a learned query attends over the item's tokens. ``gating``: each token scaled by
    a learned sigmoid gate computed from itself, then the mean.
    """

    def __init__(self, kind: str, dim: int, levels: int):
        super().__init__()
        if kind not in AGGREGATORS:
            raise ValueError(f"unknown item aggregator {kind!r}; one of {', '.join(AGGREGATORS)}")
        self.kind = kind
        if kind == "concat":
            self.project = nn.Linear(levels * dim, dim)
        elif kind in ("proj", "gating"):
            self.project = nn.Linear(dim, dim)
        elif kind == "attention":
            self.query = nn.Parameter(torch.randn(dim) / math.sqrt(dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.kind == "mean":
            return tokens.mean(dim=-2)
        if self.kind == "concat":
            return self.project(tokens.flatten(-2))
        if self.kind == "proj":
            return self.project(tokens).mean(dim=-2)
        if self.kind == "attention":
            weights = torch.softmax(tokens @ self.query / math.sqrt(tokens.shape[-1]), dim=-1)
            return (weights.unsqueeze(-1) * tokens).sum(dim=-2)
        return (torch.sigmoid(self.project(tokens)) * tokens).mean(dim=-2)
