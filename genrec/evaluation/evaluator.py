"""Run a recommender over (history, target) examples and score its ranked lists."""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm import tqdm

from genrec.data import Examples
from genrec.evaluation.metrics import ranking_metrics


def recommend_all(model, examples: Examples, batch_size: int, k: int, num_beams: int, autocast: bool = False) -> np.ndarray:
    model.eval()
    device_type = "cuda" if autocast else "cpu"
    ranked = []
    for start in tqdm(range(0, len(examples), batch_size), desc="evaluate", leave=False):
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
            ranked.append(model.recommend(examples.histories[start : start + batch_size], k, num_beams).cpu().numpy())
    return np.concatenate(ranked)


def evaluate(model, examples: Examples, n_items: int, batch_size: int, num_beams: int, autocast: bool = False) -> dict[str, float]:
    """Full-ranking metrics (see :func:`ranking_metrics`) plus users per second."""
    start = time.perf_counter()
    ranked = recommend_all(model, examples, batch_size, 10, num_beams, autocast)
    seconds = time.perf_counter() - start
    metrics = ranking_metrics(ranked, examples.targets, n_items)
    metrics["users_per_s"] = len(examples) / seconds
    return metrics
