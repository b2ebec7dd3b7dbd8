"""Deterministic top-k, shared by the evaluator, the ID models and beam aggregation."""

from __future__ import annotations

import torch


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` best scores per row; ties go to the lower item index (deterministic,
    unlike ``torch.topk``). Selects with ``topk`` and sorts only the ``k`` chosen: a full stable
    sort of a large catalogue is about 40x slower."""
    k = min(k, scores.shape[1])
    threshold = scores.topk(k, dim=1).values[:, -1:]
    above, tied = scores > threshold, scores == threshold
    needed = k - above.sum(dim=1, keepdim=True)
    chosen = (above | (tied & (tied.cumsum(dim=1) <= needed))).nonzero()[:, 1].view(-1, k)  # ascending index
    order = torch.sort(scores.gather(1, chosen), dim=1, descending=True, stable=True).indices
    return chosen.gather(1, order)
