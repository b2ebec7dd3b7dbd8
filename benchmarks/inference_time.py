"""Inference time of trained runs: seconds to recommend top-10 lists to 1,000 test users, each run
timed alone with the same threads and batch size (the compare table's "test s / 1k users" is taken
during training, on whatever else the machine was doing). One JSON line per run.

    python benchmarks/inference_time.py RUN_DIR [RUN_DIR ...] [--users=1000] [--repeats=3]
        [--threads=1] [--key=value ...]      (flags as --key=value)

A run folder is one that ``genrec train`` or ``genrec compare`` wrote (its ``config.yaml`` and
``best.pt``); flags override its configuration (e.g. ``--data_dir``, ``--device``,
``--test_num_beams``). Beam models search with the run's ``test_num_beams``.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import time
from pathlib import Path

import torch

from genrec import load_run
from genrec.config import parse_flags
from genrec.evaluation import recommend_all


def time_run(directory: Path, users: int, repeats: int, overrides: dict) -> dict:
    run = load_run(directory, **overrides)
    config, model, split = run.config, run.model, run.split
    device = next(model.parameters()).device
    examples = split.test.subset(range(min(users, len(split.test))))
    autocast = device.type == "cuda"
    recommend_all(
        model,
        examples.subset(range(min(config.eval_batch_size, len(examples)))),
        config.eval_batch_size,
        10,
        config.test_num_beams,
        autocast,
    )
    seconds = []
    for _ in range(repeats):
        if autocast:
            torch.cuda.synchronize()
        start = time.perf_counter()
        recommend_all(model, examples, config.eval_batch_size, 10, config.test_num_beams, autocast)
        if autocast:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {
        "run": directory.name,
        "model": config.model,
        "dataset": config.dataset,
        "category": getattr(config, "category", None),
        "beam": config.test_num_beams if getattr(model, "returns_beams", False) else None,
        "batch_size": config.eval_batch_size,
        "users": len(examples),
        "device": device.type,
        "threads": torch.get_num_threads(),
        "s_per_1k_users": round(1000 * median / len(examples), 4),
        "users_per_s": round(len(examples) / median, 1),
    }


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING)
    directories = [arg for arg in argv if not arg.startswith("--")]
    _, flags = parse_flags([arg for arg in argv if arg.startswith("--")])
    users, repeats = int(flags.pop("users", 1000)), int(flags.pop("repeats", 3))
    if "threads" in flags:
        torch.set_num_threads(int(flags.pop("threads")))
    for directory in directories:
        print(json.dumps(time_run(Path(directory), users, repeats, flags)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
