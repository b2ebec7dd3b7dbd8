"""PSID vs Latte vs TIGER on the embedded Synthetic data, several seeds: one JSON line per run.

    python benchmarks/synthetic_models.py [--models=PSID,Latte,TIGER] [--seeds=1,2,3] [--key=value ...]

Every run uses ``configs/quickstart.yaml`` plus the flags (each model ignores the other models' keys). Besides
the test metrics of the best checkpoint, it reports them on the *twin-pair* users: those whose test
target is one of the planted near-identical items that opposite groups prefer (the rank reversals a
single semantic-ID tree cannot express).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from genrec import models
from genrec.config import keys_of_other_models, load_config, parse_flags
from genrec.evaluation import ranking_metrics, recommend_all
from genrec.pipeline import load_trained, train

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"


def twin_metrics(config, directory: Path) -> dict:
    model, data, split = load_trained(config.model_copy(update={"device": "cpu"}), directory / "best.pt")
    index = {item: i for i, item in enumerate(data.item_ids)}
    twins = {index[item] for pair in data.extra["twin_pairs"] for item in pair["items"] if item in index}
    users = np.flatnonzero(np.isin(split.test.targets, list(twins)))
    subset = split.test.subset(users)
    ranked = recommend_all(model, subset, config.eval_batch_size, 10, config.test_num_beams)
    metrics = ranking_metrics(ranked, subset.targets, data.n_items)
    return {"users": len(users), **{k: round(v, 4) for k, v in metrics.items() if k != "coverage@10"}}


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING)
    _, flags = parse_flags(argv)
    names = str(flags.pop("models", "PSID,Latte,TIGER")).split(",")
    seeds = [int(s) for s in str(flags.pop("seeds", "1,2,3")).split(",")]
    for seed in seeds:
        for name in names:
            config = load_config(
                [f"--config={QUICKSTART}"],
                ignore=keys_of_other_models(name, models.names()),
                **{**flags, "model": name, "seed": seed, "run_name": f"synthetic-{name}-seed{seed}"},
            )
            start = time.perf_counter()
            results, directory = train(config)
            print(
                json.dumps(
                    {
                        "model": name,
                        "seed": seed,
                        "best_epoch": results["best_epoch"],
                        "num_beams": results["num_beams"],
                        "test": {k: round(v, 4) for k, v in results["test"].items()},
                        "twin_targets": twin_metrics(config, directory),
                        "seconds": round(time.perf_counter() - start, 1),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
