"""Rewards for a group of generated candidates (``[B, G]`` items, ``INVALID`` where a generated ID is
no item), each a plain function returning ``[B, G]`` floats, combined with weights by :func:`reward`.

- ``relevance``: 1 for the held-out next item; otherwise partial credit ``partial * shared / levels``
  for the length of the ID prefix shared with it. The prefix, not content-vector similarity, because
  the ID tree is what the model generates (the credit guides each token choice) and it is defined for
  invalid IDs too.
- ``validity``: 1 when the generated ID is a real item (with the trie switched off, this teaches
  validity instead of masking it).
- ``unseen``: 1 when the item is not in the user's history (0 for invalid IDs).
- ``diversity``: minus the share of the group's *better* candidates (higher model log-probability)
  that share the candidate's first ID token: a candidate repeating a better one's branch is pushed down.
- ``novelty``: ``1 - log(1 + popularity) / log(1 + max popularity)`` over training interactions (0
  for invalid IDs): rarer items earn more.
"""

from __future__ import annotations

import numpy as np
import torch

REWARDS = ("relevance", "validity", "unseen", "diversity", "novelty")


def relevance(
    items: torch.Tensor, codes: torch.Tensor, targets: torch.Tensor, target_codes: torch.Tensor, partial: float = 0.5
) -> torch.Tensor:
    """``codes`` ``[B, G, L]`` the candidates' generated IDs, ``target_codes`` ``[B, L]``."""
    agree = (codes == target_codes.unsqueeze(1)).long().cumprod(dim=2).sum(dim=2)  # shared prefix length
    credit = partial * agree.float() / codes.shape[2]
    return torch.where(items == targets.unsqueeze(1), torch.ones_like(credit), credit)


def validity(items: torch.Tensor) -> torch.Tensor:
    return (items >= 0).float()


def unseen(items: torch.Tensor, seen: list[np.ndarray]) -> torch.Tensor:
    known = torch.stack(
        [torch.isin(row, torch.as_tensor(history, dtype=torch.long)) for row, history in zip(items, seen)]
    )
    return ((items >= 0) & ~known).float()


def diversity(codes: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """``log_probs`` ``[B, G]``: the model's sequence log-probability of each candidate."""
    group = codes.shape[1]
    same_branch = codes[:, :, None, 0] == codes[:, None, :, 0]  # [B, G, G]
    better = log_probs[:, None, :] > log_probs[:, :, None]  # [b, g, h]: h better than g
    return -(same_branch & better).sum(dim=2).float() / max(1, group - 1)


def novelty(items: torch.Tensor, popularity: torch.Tensor) -> torch.Tensor:
    """``popularity`` ``[n_items]``: training interactions per item."""
    scale = torch.log1p(popularity.max().float()).clamp_min(1e-12)
    value = 1 - torch.log1p(popularity[items.clamp_min(0)].float()) / scale
    return torch.where(items >= 0, value, torch.zeros_like(value))


def reward(
    weights: dict[str, float],
    items: torch.Tensor,
    codes: torch.Tensor,
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    target_codes: torch.Tensor,
    seen: list[np.ndarray],
    popularity: torch.Tensor,
    partial: float = 0.5,
) -> torch.Tensor:
    """``sum(weight * reward)`` over the named rewards (:data:`REWARDS`)."""
    parts = {
        "relevance": lambda: relevance(items, codes, targets, target_codes, partial),
        "validity": lambda: validity(items),
        "unseen": lambda: unseen(items, seen),
        "diversity": lambda: diversity(codes, log_probs),
        "novelty": lambda: novelty(items, popularity),
    }
    total = torch.zeros(items.shape, dtype=torch.float32)
    for name, weight in weights.items():
        total = total + weight * parts[name]()
    return total
