"""Ways to spread a recommended list over the catalogue instead of listing near-twins.

Semantic IDs make near-twins visible: items sharing an ID prefix are close in content, and a beam
search tends to fill its list with one branch of the tree. Three levers, combinable:

- ``groups`` / ``penalty``: diverse beam search (:func:`genrec.decoding.beam_search`), beam models only;
- ``prefix_cap``: at most ``prefix_cap`` items per ID prefix of ``prefix_length`` tokens in the list
  (:func:`cap_per_prefix`);
- ``mmr``: maximal marginal relevance with content vectors (:func:`mmr`): ``mmr`` weighs relevance
  against similarity to the items already listed (1: relevance only).

The re-rankers pick ``k`` items from a longer candidate list (the final beam, or a full-ranking
model's top ``num_beams``) and keep the model's scores, so a re-ranked list still reads as the model
scored it.
"""

from __future__ import annotations

import torch
from pydantic import Field

from genrec.ranking import keep_slots
from genrec.schema import StrictModel


class Diversity(StrictModel):
    """How to diversify a list (every lever off by default; see the module docstring)."""

    groups: int = Field(1, ge=1)
    penalty: float = Field(1.0, ge=0)
    prefix_cap: int | None = Field(None, ge=1)
    prefix_length: int = Field(1, ge=1)
    mmr: float | None = Field(None, ge=0, le=1)

    @property
    def reranks(self) -> bool:
        return self.prefix_cap is not None or self.mmr is not None

    def label(self) -> str:
        """A short name for tables and figures, e.g. ``groups=4,penalty=1`` or ``plain``."""
        parts = []
        if self.groups > 1:
            parts.append(f"groups={self.groups},penalty={self.penalty:g}")
        if self.prefix_cap is not None:
            parts.append(f"cap={self.prefix_cap}/prefix{self.prefix_length}")
        if self.mmr is not None:
            parts.append(f"mmr={self.mmr:g}")
        return ";".join(parts) or "plain"


def cap_per_prefix(
    items: torch.Tensor, scores: torch.Tensor, codes: torch.Tensor, prefix_length: int, cap: int, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Walk each candidate list (``[B, C]`` items best first, ``codes`` ``[n_items, levels]``) and keep
    an item unless ``cap`` items already kept share its first ``prefix_length`` ID tokens; the first
    ``k`` kept. Candidates that are no item (``EMPTY`` / ``INVALID``) are passed over."""
    real = items >= 0
    prefixes = codes[:, :prefix_length].long()
    radix = int(prefixes.max()) + 1
    keys = (prefixes * radix ** torch.arange(prefixes.shape[1] - 1, -1, -1)).sum(1)  # one integer per prefix
    key = keys[items.clamp_min(0)]
    same = (key.unsqueeze(2) == key.unsqueeze(1)) & real.unsqueeze(1) & real.unsqueeze(2)
    earlier = torch.ones(items.shape[1], items.shape[1], dtype=torch.bool, device=items.device).tril(-1)
    # A candidate is kept iff fewer than `cap` earlier ones with its prefix are kept. Dropped
    # candidates do not count, but a candidate is only dropped once `cap` earlier ones are kept, so
    # counting the earlier same-prefix candidates (kept or not) gives the same answer.
    before = (same & earlier).sum(-1)
    return keep_slots(items, scores, real & (before < cap), k)


def mmr(
    items: torch.Tensor, scores: torch.Tensor, vectors: torch.Tensor, weight: float, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximal marginal relevance (Carbonell & Goldstein, 1998): repeatedly list the candidate with the
    best ``weight * relevance - (1 - weight) * max cosine similarity to the items listed so far``.
    Relevance is the model's score min-max scaled over the row's candidates (log-probabilities and
    logits have no common scale); ``vectors`` ``[n_items, d]`` are the items' content vectors, of
    unit norm. ``weight=1`` keeps the model's order."""
    real = items >= 0
    finite = scores.masked_fill(~real, float("nan"))
    low, high = (
        finite.nan_to_num(float("inf")).amin(1, keepdim=True),
        finite.nan_to_num(float("-inf")).amax(1, keepdim=True),
    )
    relevance = ((scores - low) / (high - low).clamp_min(1e-12)).masked_fill(~real, 0.0)
    candidates = vectors[items.clamp_min(0)]  # [B, C, d]
    closest = torch.zeros_like(relevance)  # max similarity to the listed items (none yet: no penalty)
    free = real.clone()
    rows = torch.arange(len(items), device=items.device)
    picks, found = [], []
    for step in range(min(k, items.shape[1])):
        value = (weight * relevance - (1 - weight) * closest).masked_fill(~free, float("-inf"))
        best, pick = value.max(1)  # ties to the better-ranked candidate
        picks.append(pick), found.append(torch.isfinite(best))
        free[rows, pick] = False
        similarity = (candidates @ candidates[rows, pick].unsqueeze(-1)).squeeze(-1)
        closest = similarity if step == 0 else torch.maximum(closest, similarity)
    order = torch.stack(picks, dim=1)
    return keep_slots(items.gather(1, order), scores.gather(1, order), torch.stack(found, dim=1), k)


def rerank(
    items: torch.Tensor,
    scores: torch.Tensor,
    diversity: Diversity,
    k: int,
    codes: torch.Tensor | None = None,
    vectors: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` of each candidate list by ``diversity``'s prefix cap (``codes``: the items' semantic IDs),
    then its MMR (``vectors``: their content vectors)."""
    if diversity.prefix_cap is not None:
        last = k if diversity.mmr is None else items.shape[1]
        items, scores = cap_per_prefix(items, scores, codes, diversity.prefix_length, diversity.prefix_cap, last)
    if diversity.mmr is not None:
        items, scores = mmr(items, scores, vectors, diversity.mmr, k)
    return items, scores
