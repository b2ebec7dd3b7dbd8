"""SimGR's aggregator study: the same run with each item aggregator, one JSON line per run.

    python benchmarks/simgr_aggregators.py [--aggregators=mean,concat,proj,attention,gating]
        [--seeds=1] [--config=FILE] [--key=value ...]

Runs go through ``genrec.compare.run_one`` (folders named by model, seed and a digest of the whole
configuration under ``runs/compare/...``), so finished runs are reused and interrupted ones resumed.
"""

from __future__ import annotations

import json
import logging
import sys

from genrec import models
from genrec.compare import parse_seeds, run_identity, run_one
from genrec.config import keys_of_other_models, load_config, parse_flags
from genrec.models.SimGR import AGGREGATORS


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING)
    config_file, flags = parse_flags(argv)
    aggregators = str(flags.pop("aggregators", ",".join(AGGREGATORS))).split(",")
    seeds_flag = flags.pop("seeds", 1)
    file_args = [f"--config={config_file}"] if config_file else []
    ignore = keys_of_other_models("SimGR", models.names())  # a config shared with other models
    for aggregator in aggregators:
        base = load_config(file_args, ignore=ignore, **{**flags, "model": "SimGR", "item_aggregator": aggregator})
        for seed in parse_seeds(seeds_flag, base.seed):
            config = base.model_copy(update={"seed": seed})
            slug = "-".join(str(p) for p in (config.dataset, getattr(config, "category", None)) if p)
            config = config.model_copy(update={"run_name": f"compare/{slug}/SimGR-{aggregator}-seed{seed}-{run_identity(config)}"})
            results, directory = run_one(config)
            print(json.dumps({"aggregator": aggregator, "seed": seed, "best_epoch": results["best_epoch"],
                              "test": {k: round(v, 4) for k, v in results["test"].items()},
                              "train_seconds": round(results["train_seconds"], 1), "run": str(directory)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
