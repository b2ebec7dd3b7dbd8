"""What the beam costs and hides: a trained beam model tested at several beam widths.

Per width: the test metrics, the share of targets the beam pruned, the distinct items its final beam
holds (Latte spends several beams on one item) and the share of users whose list is shorter than 10
(each width is decoded as asked, never widened as evaluation widens it: this is the analysis of
narrow beams), seconds per 1,000 users (each width timed alone), and
how much of each user's top 10 is the same as at the widest width tested (does widening the beam
change the list a user sees?). Comparing models at equal seconds rather than equal width is what
makes Latte's shared beam a fair fight.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from genrec.errors import ConfigError
from genrec.evaluation import Catalogue, list_metrics, recommend_all


def top10_overlap(first: np.ndarray, second: np.ndarray) -> float:
    """Mean over users of ``|top10(first) & top10(second)| / 10`` (empty slots never match)."""
    shared = [len(set(a[a >= 0]) & set(b[b >= 0])) for a, b in zip(first[:, :10], second[:, :10])]
    return float(np.mean(shared)) / 10


def beam_sweep(run, beams: list[int], aggregation: str | None = None) -> list[dict]:
    """One row per width (ascending) for a finished beam run (:class:`genrec.run.Run`);
    ``aggregation`` rescores a latent-token run's beams (the checkpoint was selected under its own)."""
    model, config, test = run.model, run.config, run.split.test
    if not model.returns_beams:
        raise ConfigError(f"{run.directory} is a {config.model} run: it ranks every item and has no beam")
    if aggregation:
        model.aggregation = aggregation
    catalogue = Catalogue.of(run.interactions, config.category_level)
    autocast = next(model.parameters()).device.type == "cuda"
    widths = sorted({min(beam, model.max_beams) for beam in beams})
    lists, rows = {}, []
    for width in widths:
        start = time.perf_counter()
        ranked = recommend_all(
            model, test, config.eval_batch_size, max(10, width), width, autocast, config.exclude_seen
        )
        seconds = time.perf_counter() - start
        metrics, _ = list_metrics(ranked, test, catalogue, beams=True, exclude_seen=config.exclude_seen)
        lists[width] = ranked
        rows.append(
            {
                "run": run.directory.name,
                "label": run.label,
                "model": config.model,
                "seed": config.seed,
                "latent_tokens": getattr(config, "n_latent_tokens", None),
                "aggregation": model.aggregation if model.latent_tokens else None,
                "beam": width,
                "users": len(test),
                "threads": torch.get_num_threads(),
                "device": str(next(model.parameters()).device),
                "s_per_1k_users": round(1000 * seconds / len(test), 4),
                "recall@10": round(metrics["recall@10"], 5),
                "ndcg@10": round(metrics["ndcg@10"], 5),
                "pruned": round(metrics["pruned"], 4),
                "beam_items": round(metrics["beam_items"], 1),
                "short_lists": round(metrics["short_lists"], 4),
            }
        )
    for row in rows:
        row["top10_overlap_widest"] = round(top10_overlap(lists[row["beam"]], lists[widths[-1]]), 4)
    return rows
