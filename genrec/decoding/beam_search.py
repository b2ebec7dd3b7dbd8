"""Batched beam search over semantic IDs, constrained by an :class:`SIDTrie`.

The model side is a ``step`` callable: ``step(level, tokens, parents) -> log_probs`` where
``tokens`` is ``[B, W, level]`` (the local codes of each beam so far), ``parents`` is ``[B, W]``
(which beam of the previous step each beam extends: the model reorders its key/value cache with
it) and ``log_probs`` is ``[B, W, level_size]``: log-probabilities of the level's tokens under the
model's full distribution. Invalid continuations get ``-inf``, so every finished beam is a real item
and its score is the exact sum of its token log-probabilities. With ``constrained=False`` (an
ablation: how many IDs would a model invent without the trie?) every code of the level is allowed,
and a finished beam whose ID is no item comes back as :data:`INVALID`.

Diverse beam search (Vijayakumar et al., 2018, with the ID tree's prefixes in place of tokens) splits
the beam into groups searched one after another at every level: a candidate of a later group loses
``penalty`` log-probability units for every beam of an earlier group that took the same prefix at
this level, and may not end in an item an earlier group already holds. The first group is a plain
beam search of its width; the later ones are pushed into other branches of the tree. Finished beams
keep their true scores and are returned best first.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from genrec.decoding.trie import SIDTrie
from genrec.ranking import EMPTY, INVALID, top_k

Step = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


def beam_search(
    step: Step,
    trie: SIDTrie,
    batch_size: int,
    num_beams: int,
    device: torch.device | str = "cpu",
    constrained: bool = True,
    allowed: torch.Tensor | None = None,
    groups: int = 1,
    penalty: float = 0.0,
):
    """Returns ``(items [B, W], scores [B, W], tokens [B, W, depth])``, best first; ``W <= num_beams``;
    an item of ``EMPTY`` (score ``-inf``) marks a slot for which fewer valid IDs existed, ``INVALID``
    an unconstrained beam that left the trie (its node is ``-1`` from then on). No level keeps more
    beams than there are valid prefixes of its length, so an over-wide ``num_beams`` costs nothing
    and changes nothing. ``allowed`` (``[B, n_items]``, constrained search only) restricts each row to
    those items: a transition is masked unless an allowed item lies below it. ``groups > 1`` is a
    diverse beam search (module docstring) of ``groups`` groups sharing ``num_beams``."""
    if allowed is not None and not constrained:
        raise ValueError("restricting a search to allowed items needs the trie constraint")
    if groups > 1 and not constrained:
        raise ValueError("diverse beam search compares trie prefixes, so it needs the trie constraint")
    if not 1 <= groups <= num_beams:
        raise ValueError(f"groups must be between 1 and num_beams ({num_beams}), got {groups}")
    group_widths = [num_beams // groups + (g < num_beams % groups) for g in range(groups)]
    current = [1] * groups  # beams each group holds; at the root all groups extend the one empty beam
    reachable = trie.reachable(allowed) if allowed is not None else None
    nodes = torch.zeros(batch_size, 1, dtype=torch.long, device=device)
    scores = torch.zeros(batch_size, 1, device=device)
    tokens = torch.zeros(batch_size, 1, 0, dtype=torch.long, device=device)
    parents = torch.zeros(batch_size, 1, dtype=torch.long, device=device)
    for level in range(trie.depth):
        prefixes = trie.n_prefixes[level] if constrained else math.prod(trie.level_sizes[: level + 1])
        log_probs = step(level, tokens, parents).float()
        children = trie.children(level, nodes.clamp_min(0)).masked_fill(nodes.unsqueeze(-1) < 0, -1)  # [B, W, V]
        candidates = scores.unsqueeze(-1) + log_probs
        if constrained:
            invalid = children < 0
            if reachable is not None:
                flat = children.clamp_min(0).view(batch_size, -1)
                invalid |= ~reachable[level].gather(1, flat).view_as(children)
            candidates = candidates.masked_fill(invalid, float("-inf"))
        width, vocab = candidates.shape[1], candidates.shape[2]
        if groups == 1:
            scores, index = candidates.view(batch_size, -1).topk(min(num_beams, prefixes, width * vocab), dim=1)
        else:
            scores, index, current = diverse_select(
                candidates, children, current, group_widths, prefixes, penalty, last=level + 1 == trie.depth
            )
        parents, token = index // vocab, index % vocab
        nodes = children.view(batch_size, -1).gather(1, index)
        tokens = torch.cat([tokens.gather(1, parents.unsqueeze(-1).expand(-1, -1, level)), token.unsqueeze(-1)], dim=-1)
    if groups > 1:  # best first over all groups
        order = scores.argsort(dim=1, descending=True, stable=True)
        scores, nodes, tokens = (
            scores.gather(1, order),
            nodes.gather(1, order),
            tokens.gather(1, order.unsqueeze(-1).expand_as(tokens)),
        )
    items = torch.where(nodes >= 0, nodes, torch.full_like(nodes, INVALID))
    return torch.where(torch.isfinite(scores), items, torch.full_like(items, EMPTY)), scores, tokens


def diverse_select(
    candidates: torch.Tensor,
    children: torch.Tensor,
    current: list[int],
    widths: list[int],
    prefixes: int,
    penalty: float,
    last: bool,
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """One level of diverse beam search: each group in turn takes its best candidates (from its own
    beams; at the root every group extends the single empty beam) after the penalty for prefixes
    that earlier groups took. Returns the true ``scores`` and flat ``index`` into ``[W * V]`` of the
    kept beams, group after group, and how many each group kept."""
    batch, width, vocab = candidates.shape
    nodes = children.clamp_min(0).view(batch, -1)
    taken = torch.zeros(batch, int(nodes.max()) + 1, device=candidates.device)  # earlier groups' beams per prefix
    scores, index, kept, start = [], [], [], 0
    for group, size in enumerate(widths):
        slots = (
            torch.arange(start, start + current[group], device=candidates.device)
            if width > 1
            else torch.zeros(1, dtype=torch.long, device=candidates.device)
        )
        start += current[group] if width > 1 else 0
        flat = (slots.unsqueeze(-1) * vocab + torch.arange(vocab, device=candidates.device)).view(-1)  # [n * V]
        own, own_nodes = candidates.view(batch, -1)[:, flat], nodes[:, flat]
        repeats = taken.gather(1, own_nodes)
        penalised = own.masked_fill(repeats > 0, float("-inf")) if last else own - penalty * repeats
        top, position = penalised.topk(min(size, prefixes, flat.numel()), dim=1)
        true = own.gather(1, position).masked_fill(~torch.isfinite(top), float("-inf"))
        chosen = flat[position]
        taken.scatter_add_(1, nodes.gather(1, chosen), torch.isfinite(true).float())
        scores.append(true), index.append(chosen), kept.append(chosen.shape[1])
    return torch.cat(scores, dim=1), torch.cat(index, dim=1), kept


def aggregate_beams(items: torch.Tensor, scores: torch.Tensor, n_items: int, k: int, method: str):
    """Merge beams that end in the same item (Latte: one per latent token) and rank items.

    ``agg_sum`` adds the path probabilities (log-sum-exp of the scores), ``agg_max`` keeps the best
    path. Returns ``(items [B, k], scores [B, k])``, ties to the lower item index, ``EMPTY`` for empty
    slots. Beams that are no item (``INVALID``, unconstrained decoding) are not merged: each keeps its
    own slot, ranked by its score among the items.
    """
    if method not in ("agg_sum", "agg_max"):
        raise ValueError(f"unknown aggregation method {method!r}")
    valid = items >= 0
    index = items.clamp_min(0)
    neg_inf = torch.full((items.shape[0], n_items), float("-inf"), device=items.device)
    best = neg_inf.scatter_reduce(1, index, scores.masked_fill(~valid, float("-inf")), reduce="amax")
    if method == "agg_sum":
        shift = best.gather(1, index)
        weights = torch.where(valid, torch.exp(scores - shift), torch.zeros_like(scores))
        total = torch.zeros_like(best).scatter_add(1, index, weights)
        best = torch.where(torch.isfinite(best), best + torch.log(total), best)
    invalid = items == INVALID
    candidates = torch.cat(
        [torch.arange(n_items, device=items.device).expand_as(best), torch.where(invalid, items, EMPTY)], dim=1
    )
    best = torch.cat([best, scores.masked_fill(~invalid, float("-inf"))], dim=1)
    order = top_k(best, k)
    top = best.gather(1, order)
    return torch.where(torch.isfinite(top), candidates.gather(1, order), torch.full_like(order, EMPTY)), top
