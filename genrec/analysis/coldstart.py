"""Cold-start evaluation of a run trained with ``cold_items`` > 0 (:mod:`genrec.data.cold`).

The held-out items are added to the trained run without retraining (:meth:`genrec.run.Run.add_items`:
embedded, quantized by the run's quantizer, made unique, inserted into the trie or the scored
catalogue). Then, on the users whose test target is a held-out item (*cold* users) and on the run's
own test users (*warm* users, now ranked over the larger catalogue), three rankers are scored:

- ``model``: the run itself. An item-ID model (SASRec ...) cannot add items: it ranks the warm
  catalogue only, so it never reaches a cold target (its cold scores are 0 by construction).
- ``hybrid``: the LIGER-style fix (Yang et al., 2024): the model's top ``candidates`` plus every
  held-out item, re-ranked by a dense score, the cosine between an item's content vector and the
  mean of the history's.
- ``content``: that dense score over the whole catalogue (no model): what content alone finds.
"""

from __future__ import annotations

import numpy as np
import torch

from genrec import datasets
from genrec.data import Examples
from genrec.data.cold import hold_out_items
from genrec.embeddings import unit_rows
from genrec.errors import ConfigError
from genrec.evaluation import ranking_metrics
from genrec.ranking import top_k

RANKERS = ("model", "hybrid", "content")


def user_vectors(histories: list[np.ndarray], vectors: torch.Tensor) -> torch.Tensor:
    """``[B, d]``: each history's mean content vector, unit norm."""
    means = torch.stack([vectors[torch.as_tensor(history)].mean(0) for history in histories])
    return means / means.norm(dim=1, keepdim=True).clamp_min(1e-12)


def dense_rank(
    histories: list[np.ndarray],
    vectors: torch.Tensor,
    k: int,
    candidates: torch.Tensor | None = None,
    exclude: list[np.ndarray] | None = None,
) -> np.ndarray:
    """``[B, k]`` items by cosine to the history's mean content vector, among ``candidates[b]``
    (``[B, C]`` items, negative: none) or the whole catalogue; never an item of ``exclude[b]``."""
    users = user_vectors(histories, vectors)
    if candidates is None:
        scores = users @ vectors.T
        if exclude is not None:
            for row, items in enumerate(exclude):
                scores[row, torch.as_tensor(items, dtype=torch.long)] = float("-inf")
        return top_k(scores, k).numpy()
    valid = candidates >= 0
    scores = torch.einsum("bd,bcd->bc", users, vectors[candidates.clamp_min(0)]).masked_fill(~valid, float("-inf"))
    if exclude is not None:
        for row, items in enumerate(exclude):
            scores[row, torch.isin(candidates[row], torch.as_tensor(items, dtype=torch.long))] = float("-inf")
    order = top_k(scores, k)
    ranked = candidates.gather(1, order)
    return ranked.masked_fill(~torch.isfinite(scores.gather(1, order)), -1).numpy()


def evaluate_rankers(
    run, examples: Examples, cold: np.ndarray, candidates: int, batch_size: int = 256
) -> dict[str, dict]:
    """Recall / NDCG@10 of :data:`RANKERS` on ``examples`` (item indices of the run's catalogue,
    which holds the ``cold`` items when the model could add them)."""
    exclude = examples.seen if run.config.exclude_seen else None
    vectors = run.content_vectors
    lists = {ranker: [] for ranker in RANKERS}
    for start in range(0, len(examples), batch_size):
        rows = slice(start, start + batch_size)
        histories = examples.histories[rows]
        seen = None if exclude is None else exclude[rows]
        items, _ = run.rank(histories, max(10, candidates), candidates, seen)
        lists["model"].append(items[:, :10])
        pool = torch.cat([torch.as_tensor(items), torch.as_tensor(cold).expand(len(histories), -1)], dim=1)
        lists["hybrid"].append(dense_rank(histories, vectors, 10, deduplicated(pool), seen))
        lists["content"].append(dense_rank(histories, vectors, 10, None, seen))
    n_items = len(vectors)
    return {
        ranker: ranking_metrics(np.concatenate(parts), examples.targets, n_items) for ranker, parts in lists.items()
    }


def deduplicated(pool: torch.Tensor) -> torch.Tensor:
    """Each row's items once (later repeats set to ``-1``)."""
    sorted_items, order = pool.sort(dim=1, stable=True)
    repeat = torch.zeros_like(pool, dtype=torch.bool)
    repeat[:, 1:] = (sorted_items[:, 1:] == sorted_items[:, :-1]) & (sorted_items[:, 1:] >= 0)
    return pool.masked_fill(torch.zeros_like(repeat).scatter(1, order, repeat), -1)


def cold_start_evaluation(run, candidates: int | None = None) -> list[dict]:
    """One row per ranker and user group (``cold``, ``warm``) for a run trained with ``cold_items``."""
    config = run.config
    if not config.cold_items:
        raise ConfigError(
            f"{run.directory} was trained on every item (cold_items=0); train with --cold_items=0.05 "
            "to hold items out for a cold-start evaluation"
        )
    held = hold_out_items(datasets.get(config.dataset).load(config), config.cold_items, config.cold_items_seed)
    if held.warm.item_ids != run.interactions.item_ids:
        raise ConfigError(
            f"{run.directory}: the held-out split of {config.dataset} no longer matches the run's catalogue"
        )
    cold_test = held.cold_test(config.max_item_seq_len)
    n_warm = run.interactions.n_items
    added = run.model.adds_items
    if added:
        run.add_items([{"id": item, **text} for item, text in zip(held.cold_ids, held.cold_text)])
    else:  # an item-ID model: the content vectors still cover the held-out items, for the hybrid
        fresh = run.new_item_encoder(held.cold_text)
        run.content_vectors = torch.cat([run.content_vectors, torch.as_tensor(unit_rows(fresh))])
    cold = np.arange(n_warm, n_warm + len(held.cold))
    width = candidates or config.test_num_beams
    head = {
        "run": run.directory.name,
        "label": run.label,
        "model": config.model,
        "seed": config.seed,
        "cold_items": len(cold),
        "adds_items": added,
        "candidates": width,
    }
    rows = []
    for group, examples in (("cold", cold_test), ("warm", run.split.test)):
        for ranker, metrics in evaluate_rankers(run, examples, cold, width).items():
            rows.append(
                {
                    **head,
                    "users": group,
                    "n_users": len(examples),
                    "ranker": ranker,
                    "recall@10": round(metrics["recall@10"], 5),
                    "ndcg@10": round(metrics["ndcg@10"], 5),
                }
            )
    return rows
