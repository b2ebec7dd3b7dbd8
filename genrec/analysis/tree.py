"""Does the decoding tree tie the probabilities of nearby items together (the Latte paper, §3.2-3.3)?

Two items' *tree distance* is ``2 x (ID length - longest common prefix)``: the number of edges between
their leaves in the tree of semantic IDs. For item pairs sampled at each distance, the generation
probabilities of the two items over the same users are compared: their Pearson correlation over
users, and the share of user pairs that order the two items differently (*rank reversal*: a model
whose probabilities move together for neighbours rarely lets one user prefer ``i`` and another ``j``).
Kendall's tau between distance and correlation over all pairs summarizes the tie in one number.

Probabilities are exact: every item's for every sampled user (:func:`item_log_probs`). Item-ID and
full-ranking models give the softmax over the catalogue, with distances from the semantic IDs their
configuration would build, so their numbers show how much of the tie the data itself carries.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import kendalltau


def common_prefix_lengths(codes: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Length of the longest common prefix of the IDs of ``first[k]`` and ``second[k]``."""
    return np.cumprod(codes[first] == codes[second], axis=1).sum(axis=1)


def tree_distances(codes: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return 2 * (codes.shape[1] - common_prefix_lengths(codes, first, second))


def sample_pairs(
    codes: np.ndarray, per_distance: int, rng: np.random.Generator
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{distance: (first, second)}``: ``per_distance`` item pairs drawn uniformly, with replacement,
    from all unordered pairs at each tree distance that occurs. Items are sorted by ID, so the items
    sharing a prefix are one contiguous range: the partners of an item at common prefix ``l`` are its
    ``l``-prefix range without its ``l + 1``-prefix range; drawing an item in proportion to its number
    of partners, then a partner uniformly, makes every pair equally likely."""
    order = np.lexsort(codes.T[::-1])
    ranked = codes[order]
    n, depth = ranked.shape
    pairs = {}
    for prefix in range(depth):
        outer_start, outer_end = group_bounds(ranked, prefix)
        inner_start, inner_end = group_bounds(ranked, prefix + 1)
        partners = (outer_end - outer_start) - (inner_end - inner_start)
        if not partners.any():
            continue
        first = rng.choice(n, size=per_distance, p=partners / partners.sum())
        offset = rng.integers(0, partners[first])
        second = outer_start[first] + offset
        second = np.where(second >= inner_start[first], second + inner_end[first] - inner_start[first], second)
        pairs[2 * (depth - prefix)] = (order[first], order[second])
    return pairs


def group_bounds(ranked: np.ndarray, prefix: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row of lexicographically sorted IDs: ``[start, end)`` of the rows sharing its first
    ``prefix`` codes."""
    n = len(ranked)
    changes = np.any(ranked[1:, :prefix] != ranked[:-1, :prefix], axis=1) if prefix else np.zeros(n - 1, dtype=bool)
    group = np.concatenate([[0], np.cumsum(changes)])
    starts = np.searchsorted(group, group, side="left")
    ends = np.searchsorted(group, group, side="right")
    return starts, ends


def pairwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of the columns ``x[:, k]`` and ``y[:, k]`` (``nan`` where one is constant)."""
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    norm = np.sqrt((x * x).sum(axis=0) * (y * y).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, (x * y).sum(axis=0) / norm, np.nan)


def rank_reversals(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per column pair: the share of user pairs ``(u, v)`` for which one user prefers ``x`` and the
    other ``y`` (ties count as agreement)."""
    users = x.shape[0]
    first, second = (x > y).sum(axis=0), (x < y).sum(axis=0)
    return first * second / (users * (users - 1) / 2)


def aggregate_paths(path_log_probs: torch.Tensor, method: str) -> torch.Tensor:
    """``[B, n_items]`` from per-latent-token log-probabilities ``[B, paths, n_items]`` exactly as a
    full beam is aggregated (:func:`genrec.decoding.aggregate_beams`)."""
    if method == "agg_sum":
        return torch.logsumexp(path_log_probs, dim=1)
    if method == "agg_max":
        return path_log_probs.max(dim=1).values
    raise ValueError(f"unknown aggregation method {method!r}")


@torch.no_grad()
def item_log_probs(model, histories: list[np.ndarray], batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``([U, n_items], [U, paths, n_items] or None)``: each user's log-probability of every item,
    and for a latent-token model (Latte) the same per latent token before aggregation."""
    model.eval()
    if not model.returns_beams:
        scores = [
            torch.log_softmax(model.scores(histories[s : s + batch_size]).float(), dim=-1).cpu()
            for s in range(0, len(histories), batch_size)
        ]
        return torch.cat(scores).double().numpy(), None
    paths = torch.cat(
        [model.path_log_probs(histories[s : s + batch_size]).cpu() for s in range(0, len(histories), batch_size)]
    )
    items = paths[:, 0] if paths.shape[1] == 1 else aggregate_paths(paths, model.aggregation)
    return items.double().numpy(), (paths.double().numpy() if paths.shape[1] > 1 else None)


def analyze(
    log_probs: np.ndarray,
    codes: np.ndarray,
    pairs: dict[int, tuple[np.ndarray, np.ndarray]],
    paths: np.ndarray | None = None,
) -> tuple[list[dict], dict]:
    """Per-pair rows (distance, correlation, rank reversal; with ``paths`` the share of users whose
    dominant latent tokens of the two items differ and the mean *effective* distance) and a summary:
    Kendall's tau between distance and correlation, and for a latent-token model how evenly its
    latent tokens are used."""
    probs = np.exp(log_probs)
    dominant = paths.argmax(axis=1) if paths is not None else None  # [U, n_items]
    depth = codes.shape[1]
    rows = []
    for distance, (first, second) in sorted(pairs.items()):
        correlation = pairwise_pearson(probs[:, first], probs[:, second])
        reversal = rank_reversals(probs[:, first], probs[:, second])
        split = dominant[:, first] != dominant[:, second] if dominant is not None else None
        for k in range(len(first)):
            row = {
                "distance": int(distance),
                "first": int(first[k]),
                "second": int(second[k]),
                "correlation": float(correlation[k]),
                "rank_reversal": float(reversal[k]),
            }
            if split is not None:
                # Under different latent tokens two items' paths part at the root of the extended tree.
                apart = float(split[:, k].mean())
                row["latent_split"] = apart
                row["effective_distance"] = apart * 2 * (depth + 1) + (1 - apart) * distance
            rows.append(row)
    finite = [row for row in rows if np.isfinite(row["correlation"])]
    tau = kendalltau([r["distance"] for r in finite], [r["correlation"] for r in finite])
    summary = {
        "kendall_tau": float(tau.statistic),
        "kendall_p": float(tau.pvalue),
        "pairs": len(rows),
        "constant_pairs": len(rows) - len(finite),
    }
    if dominant is not None:
        summary["latent_usage_all"] = usage(dominant.ravel(), paths.shape[1])
        top = np.argsort(-log_probs, axis=1)[:, :10]
        summary["latent_usage_top10"] = usage(np.take_along_axis(dominant, top, axis=1).ravel(), paths.shape[1])
    return rows, summary


def usage(tokens: np.ndarray, n: int) -> dict:
    """Share of each latent token and the entropy of the shares relative to uniform (1: even use)."""
    shares = np.bincount(tokens, minlength=n) / len(tokens)
    nonzero = shares[shares > 0]
    return {
        "shares": [round(float(s), 4) for s in shares],
        "relative_entropy": float(-(nonzero * np.log(nonzero)).sum() / np.log(n)),
    }


def summarize_distances(rows: list[dict]) -> list[dict]:
    """Per distance: pairs, mean / median correlation, mean rank reversal (and the latent columns)."""
    summary = []
    for distance in sorted({row["distance"] for row in rows}):
        at = [row for row in rows if row["distance"] == distance]
        correlation = np.array([row["correlation"] for row in at])
        entry = {
            "distance": distance,
            "pairs": len(at),
            "mean_correlation": float(np.nanmean(correlation)),
            "median_correlation": float(np.nanmedian(correlation)),
            "rank_reversal": float(np.mean([row["rank_reversal"] for row in at])),
        }
        for key in ("latent_split", "effective_distance"):
            if key in at[0]:
                entry[key] = float(np.mean([row[key] for row in at]))
        summary.append(entry)
    return summary


def tree_analysis(run, n_users: int, per_distance: int, seed: int) -> tuple[list[dict], list[dict], dict]:
    """One finished run (:class:`genrec.run.Run`): ``(pair rows, per-distance summary,
    run summary)`` over ``n_users`` test users and ``per_distance`` pairs per distance, both drawn
    with ``seed`` (the same users and, for the same semantic IDs, the same pairs for every run)."""
    rng = np.random.default_rng(seed)
    test = run.split.test
    users = np.sort(rng.choice(len(test), size=min(n_users, len(test)), replace=False))
    pairs = sample_pairs(run.semantic_ids.codes, per_distance, rng)
    log_probs, paths = item_log_probs(run.model, [test.histories[u] for u in users], run.config.eval_batch_size)
    rows, summary = analyze(log_probs, run.semantic_ids.codes, pairs, paths)
    summary.update({"users": len(users), "id_length": run.semantic_ids.n_levels})
    if paths is not None:
        summary["aggregation"] = run.model.aggregation
        if run.model.vocab.permutations:  # latent_mode=permutation: the usage shares are the orders' shares
            summary["latent_orders"] = [list(order) for order in run.model.vocab.permutations]
    return rows, summarize_distances(rows), summary
