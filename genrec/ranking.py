"""Ranked lists of item indices, shared by the evaluator, the ID models and the generative models:
deterministic top-k, the beam width that fills a list, and removing the items a user must not be
shown (``exclude_seen``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

EMPTY, INVALID = -1, -2  # ranked-list slots: nothing to recommend / a generated ID that is no item


def list_length(ks: tuple[int, ...]) -> int:
    """How many items an evaluated list holds: the largest cutoff, and at least the 10 that the
    coverage and diversity metrics read."""
    return max(10, *ks)


def search_width(model, num_beams: int, k: int) -> int:
    """The beam width that decodes ``k`` distinct items: at least ``num_beams``, at least
    ``model.beams_per_item * k``, at most the catalogue's width (``model.max_beams``); ``num_beams``
    for a model without a beam.

    Why: a final beam of ``W`` holds an item at most ``beams_per_item`` times (Latte: once per latent
    token), so ``W >= beams_per_item * k`` is the narrowest beam *guaranteed* to hold ``k`` items. A
    narrower one can return lists shorter than ``k``: Latte with 4 latent tokens holds about 6 items in
    a beam of 20, and Recall@10 / NDCG@10 on such lists handicap it against models whose beams are
    all distinct items, in early stopping and checkpoint selection as much as in the test."""
    if not model.returns_beams:
        return num_beams
    return min(max(num_beams, model.beams_per_item * k), model.max_beams)


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` best scores per row; ties go to the lower item index (deterministic,
    unlike ``torch.topk``). ``topk`` picks the set; it can pick wrongly only in a row where the k-th
    score is tied with an item left out, which the (k+1)-th best score tells (equal to the k-th), and
    only those rows are chosen again by index (:func:`ties_by_index`). The ``k`` chosen are then
    ordered by score, ties by index. A full stable sort of a large catalogue is about 40x slower."""
    k = min(k, scores.shape[1])
    values, chosen = scores.topk(min(k + 1, scores.shape[1]), dim=1)
    threshold = values[:, k - 1 : k]
    crossing = (
        values[:, k] == threshold[:, 0] if values.shape[1] > k else torch.zeros_like(threshold[:, 0], dtype=torch.bool)
    )
    chosen = chosen[:, :k]
    if crossing.any():
        rows = crossing.nonzero()[:, 0]
        chosen[rows] = ties_by_index(scores[rows], threshold[rows], k)
    chosen = chosen.sort(dim=1).values  # ascending index, so that the stable sort below breaks ties by it
    order = torch.sort(scores.gather(1, chosen), dim=1, descending=True, stable=True).indices
    return chosen.gather(1, order)


def ties_by_index(scores: torch.Tensor, threshold: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` best of each row, ascending by index, where the ``k``-th best score (``threshold``)
    is shared by more items than fit: every item above it and the lowest-indexed tied ones."""
    above, tied = scores > threshold, scores == threshold
    needed = k - above.sum(dim=1, keepdim=True)
    return (above | (tied & (tied.cumsum(dim=1) <= needed))).nonzero()[:, 1].view(-1, k)


def exclusion_mask(exclude: Sequence[np.ndarray], n_items: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``[B, n_items]`` booleans, true where row ``b`` must not recommend the item."""
    rows = np.repeat(np.arange(len(exclude)), [len(items) for items in exclude])
    cols = np.concatenate([np.asarray(items, dtype=np.int64) for items in exclude]) if len(rows) else rows
    mask = torch.zeros(len(exclude), n_items, dtype=torch.bool, device=device)
    mask[torch.as_tensor(rows, device=device), torch.as_tensor(cols, device=device)] = True
    return mask


def pad_ranked(ranked: torch.Tensor, scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``k`` slots of ranked items and their scores; ``EMPTY`` (score ``-inf``) where a row
    has fewer."""
    ranked, scores = ranked[:, :k], scores[:, :k]
    missing = k - ranked.shape[1]
    if not missing:
        return ranked, scores
    return (
        torch.cat([ranked, ranked.new_full((ranked.shape[0], missing), EMPTY)], dim=1),
        torch.cat([scores, scores.new_full((scores.shape[0], missing), float("-inf"))], dim=1),
    )


def keep_slots(
    ranked: torch.Tensor, scores: torch.Tensor, keep: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``k`` slots of ranked lists where ``keep`` (``[B, C]``) is true, in their order, and
    their scores (``EMPTY``-padded)."""
    order = torch.sort((~keep).int(), dim=1, stable=True).indices
    dropped = ~keep.gather(1, order)
    return pad_ranked(
        ranked.gather(1, order).masked_fill(dropped, EMPTY),
        scores.gather(1, order).masked_fill(dropped, float("-inf")),
        k,
    )


def drop_excluded(
    ranked: torch.Tensor, scores: torch.Tensor, excluded: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove the excluded items (``excluded`` from :func:`exclusion_mask`) from ranked lists and
    their scores, the others keeping their order, and return the first ``k`` slots (``EMPTY``-padded).
    A generative model filters its final beam this way, so a list can come back shorter than ``k``."""
    return keep_slots(ranked, scores, ~((ranked >= 0) & excluded.gather(1, ranked.clamp_min(0))), k)
