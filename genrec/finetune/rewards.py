"""Rewards for a group of generated candidates (``[B, G]`` items, ``INVALID`` where a generated ID is
no item): each a function of the :class:`Candidates` returning ``[B, G]`` floats, registered under
its name by :func:`register_reward` (so ``--reward=name:weight`` accepts it), combined with weights
by :func:`reward`. A new reward is one decorated function here.

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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Candidates:
    """What a reward may look at, for ``B`` users with ``G`` generated candidates each."""

    items: torch.Tensor  # [B, G] item indices, INVALID where the generated ID is no item
    codes: torch.Tensor  # [B, G, L] the generated IDs
    log_probs: torch.Tensor  # [B, G] the model's sequence log-probability of each candidate
    targets: torch.Tensor  # [B] the held-out next items
    target_codes: torch.Tensor  # [B, L] their IDs
    seen: list[np.ndarray]  # each user's history (item indices)
    popularity: torch.Tensor  # [n_items] training interactions per item
    partial: float = 0.5  # relevance's credit for a whole shared prefix short of the item


REWARDS: dict[str, Callable[[Candidates], torch.Tensor]] = {}


def register_reward(function: Callable[[Candidates], torch.Tensor]) -> Callable[[Candidates], torch.Tensor]:
    """Make ``function`` a reward named after it (``--reward=<name>:<weight>``)."""
    REWARDS[function.__name__] = function
    return function


@register_reward
def relevance(c: Candidates) -> torch.Tensor:
    """1 for the target; else ``partial`` times the share of its ID prefix a candidate shares."""
    agree = (c.codes == c.target_codes.unsqueeze(1)).long().cumprod(dim=2).sum(dim=2)  # shared prefix length
    credit = c.partial * agree.float() / c.codes.shape[2]
    return torch.where(c.items == c.targets.unsqueeze(1), torch.ones_like(credit), credit)


@register_reward
def validity(c: Candidates) -> torch.Tensor:
    """1 for a real item."""
    return (c.items >= 0).float()


@register_reward
def unseen(c: Candidates) -> torch.Tensor:
    """1 for a real item not in the user's history."""
    known = torch.stack(
        [torch.isin(row, torch.as_tensor(history, dtype=torch.long)) for row, history in zip(c.items, c.seen)]
    )
    return ((c.items >= 0) & ~known).float()


@register_reward
def diversity(c: Candidates) -> torch.Tensor:
    """Minus the share of the group's better candidates on the same first ID token."""
    group = c.codes.shape[1]
    same_branch = c.codes[:, :, None, 0] == c.codes[:, None, :, 0]  # [B, G, G]
    better = c.log_probs[:, None, :] > c.log_probs[:, :, None]  # [b, g, h]: h better than g
    return -(same_branch & better).sum(dim=2).float() / max(1, group - 1)


@register_reward
def novelty(c: Candidates) -> torch.Tensor:
    """Rarer items earn more: ``1 - log(1 + popularity) / log(1 + max popularity)``."""
    scale = torch.log1p(c.popularity.max().float()).clamp_min(1e-12)
    value = 1 - torch.log1p(c.popularity[c.items.clamp_min(0)].float()) / scale
    return torch.where(c.items >= 0, value, torch.zeros_like(value))


def reward(weights: dict[str, float], candidates: Candidates) -> torch.Tensor:
    """``sum(weight * reward)`` over the named rewards (:data:`REWARDS`)."""
    total = torch.zeros(candidates.items.shape, dtype=torch.float32)
    for name, weight in weights.items():
        total = total + weight * REWARDS[name](candidates)
    return total
