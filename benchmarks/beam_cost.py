"""Accuracy against decoding cost: each trained beam model tested at several beam widths, so models
can be compared at equal wall-clock per user rather than at equal beam (Latte's beam is shared by
its latent tokens, so the same width costs it more and covers fewer items). One JSON line per run
and beam; with ``--figure=STEM`` also STEM.png / STEM.svg (test NDCG@10 against seconds per 1,000
users, a line per run, each point labelled with its beam).

    python benchmarks/beam_cost.py RUN_DIR [RUN_DIR ...] [--beams=10,20,50,100,200,500]
        [--aggregations=agg_sum,agg_max] [--threads=1] [--figure=docs/figures/beam_cost] [--key=value ...]

A run folder is one that ``genrec train`` or ``genrec compare`` wrote; flags override its
configuration (e.g. ``--data_dir``, ``--eval_batch_size``); ``--aggregations`` tests each latent-token
run (Latte) under every listed way of scoring an item's beams (the weights are the same; only the
checkpoint was selected under the run's own method). Each evaluation covers every test user
and is timed alone; a beam wider than the catalogue decodes at the catalogue's width (reported).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import torch
from matplotlib.ticker import FuncFormatter

from genrec.config import load_config, parse_flags, read_yaml
from genrec.evaluation import Catalogue, evaluate
from genrec.figures import plt, save_figure
from genrec.pipeline import load_trained


def measure(directory: Path, beams: list[int], overrides: dict) -> list[dict]:
    config = load_config([f"--config={directory / 'config.yaml'}"], **overrides)
    model, interactions, split = load_trained(config, directory / "best.pt")
    catalogue = Catalogue.of(interactions, config.category_level)
    autocast = next(model.parameters()).device.type == "cuda"
    rows = []
    for beam in beams:
        metrics = evaluate(model, split.test, catalogue, config.eval_batch_size, beam, autocast, config.exclude_seen)
        rows.append({"run": directory.name, "model": config.model, "seed": config.seed,
                     "latent_tokens": getattr(config, "n_latent_tokens", None),
                     "aggregation": getattr(config, "aggregation_method", None), "beam": min(beam, model.max_beams),
                     "users": len(split.test), "threads": torch.get_num_threads(), "device": str(next(model.parameters()).device),
                     "s_per_1k_users": round(1000 / metrics["users_per_s"], 4), "ndcg@10": round(metrics["ndcg@10"], 5),
                     "recall@10": round(metrics["recall@10"], 5), "pruned": round(metrics["pruned"], 4),
                     "beam_items": round(metrics["beam_items"], 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def figure(rows: list[dict], stem: Path) -> None:
    fig, axes = plt.subplots(figsize=(6.5, 4.2))
    for run, aggregation in dict.fromkeys((row["run"], row["aggregation"]) for row in rows):
        points = [row for row in rows if (row["run"], row["aggregation"]) == (run, aggregation)]
        first = points[0]
        latte = f", n={first['latent_tokens']}, {aggregation}" if aggregation else ""
        label = f"{first['model']} (seed {first['seed']}{latte})"
        axes.plot([p["s_per_1k_users"] for p in points], [p["ndcg@10"] for p in points], marker="o", label=label)
        for p in points:
            axes.annotate(str(p["beam"]), (p["s_per_1k_users"], p["ndcg@10"]), textcoords="offset points", xytext=(3, -10), fontsize=7)
    axes.set(xscale="log", xlabel="seconds per 1,000 test users (log scale)", ylabel="test NDCG@10",
             title="Accuracy at equal decoding cost (labels: beam width)")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    axes.xaxis.set_major_formatter(plain)
    axes.xaxis.set_minor_formatter(plain)
    axes.tick_params(axis="x", which="minor", labelsize=7)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    save_figure(fig, stem)


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING)
    directories = [Path(arg) for arg in argv if not arg.startswith("--")]
    _, flags = parse_flags([arg for arg in argv if arg.startswith("--")])
    beams = [int(b) for b in str(flags.pop("beams", "10,20,50,100,200,500")).split(",")]
    stem = flags.pop("figure", None)
    if "threads" in flags:
        torch.set_num_threads(int(flags.pop("threads")))
    aggregations = [a for a in str(flags.pop("aggregations", "")).split(",") if a]
    rows = []
    for directory in directories:
        latent = "aggregation_method" in read_yaml(directory / "config.yaml")
        for aggregation in (aggregations if latent and aggregations else [None]):
            overrides = {**flags, "aggregation_method": aggregation} if aggregation else flags
            rows += measure(directory, beams, overrides)
    if stem:
        figure(rows, Path(stem))


if __name__ == "__main__":
    main(sys.argv[1:])
