"""Training throughput: genrec's T5 and decoder architectures against a plain Hugging Face T5 loop.

Same configuration, same data and semantic IDs, same threads, one after the other in one process.
Throughput is in training *targets* per second (one target = one prefix example of the
leave-one-out split: the unit both architectures learn from; the decoder learns several per window).
Each variant first trains ``--warmup_steps_timed`` optimizer steps untimed, then whole epochs timed.

    python benchmarks/train_speed.py [--config=configs/quickstart.yaml] [--model=PSID] [--epochs=1]
        [--threads=1] [--variants=hf-t5,t5,decoder] [--processes=1] [--num_workers=0] [--key=value ...]

A variant is an architecture with settings of its own, as ``genrec compare``'s are:
``--variants=decoder,hf_causal_lm:d_ff=171,hf_causal_lm:backbone=gpt2``.

One JSON line per variant and process count: ``variant``, ``processes``, ``targets_per_s``,
``seconds_per_epoch``, ``steps_per_epoch``, ``parameters``, ``threads`` (per process), plus
``speedup_vs_hf`` (against the plain loop when it ran). ``--processes=1,2`` also times genrec's
data-parallel training (:mod:`genrec.distributed`, gloo on CPU) with the same global batch: the
processes share the machine, each with ``--threads`` threads. ``--num_workers`` prepares the batches in
DataLoader workers.

``hf-t5`` is the loop a user would write without genrec: ``T5ForConditionalGeneration`` with the
same sizes, inputs = the history's ID tokens then an end token, labels = the target's ID then an end
token, AdamW, the same length-bucketed batches. It exists to show genrec's own T5 adds no overhead.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys

os.environ.setdefault("TQDM_DISABLE", "1")  # JSON lines only (tqdm reads it when first imported)
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from transformers import T5Config, T5ForConditionalGeneration

from genrec.config import load_config, parse_flags
from genrec.distributed import ProcessGroup, process_group
from genrec.evaluation import Catalogue
from genrec.pipeline import build_model, load_split
from genrec.runtime import seed_everything
from genrec.trainer import Trainer, length_bucketed_batches


def genrec_epoch_timer(config, interactions, split, group: ProcessGroup | None = None):
    """``(run_epoch, parameters, steps_per_epoch)`` for genrec's own trainer on this config."""
    model = build_model(config, interactions, split)
    trainer = Trainer(
        config,
        model,
        split,
        Catalogue.of(interactions, config.category_level),
        Path(tempfile.mkdtemp()),
        torch.device("cpu"),
        identity={},
        group=group,
    )

    def run_epoch() -> None:
        trainer.train_epoch()
        trainer.epoch += 1

    return run_epoch, sum(p.numel() for p in model.parameters()), trainer.steps_per_epoch


def hf_epoch_timer(config, interactions, split):
    """The same for a plain Hugging Face T5 loop (no genrec model code)."""
    sids = build_model(config.model_copy(update={"architecture": "t5"}), interactions, split).semantic_ids
    sizes = list(sids.level_sizes)
    offsets = 2 + np.cumsum([0] + sizes[:-1])  # 0 pad, 1 end, then one token range per level
    tokens = np.asarray(sids.codes) + offsets[None, :]
    t5 = T5ForConditionalGeneration(
        T5Config(
            vocab_size=2 + sum(sizes),
            d_model=config.d_model,
            d_ff=config.d_ff,
            d_kv=config.d_kv,
            num_layers=config.num_layers,
            num_decoder_layers=config.num_decoder_layers,
            num_heads=config.num_heads,
            dropout_rate=config.dropout_rate,
            feed_forward_proj="relu",
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )
    optimizer = torch.optim.AdamW(t5.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    train = split.train
    lengths = np.array([len(h) for h in train.histories])
    epoch = [0]

    def batch_tensors(rows):
        inputs = [np.append(tokens[train.histories[r]].ravel(), 1) for r in rows]
        ids = torch.zeros(len(rows), max(len(x) for x in inputs), dtype=torch.long)
        for i, x in enumerate(inputs):
            ids[i, : len(x)] = torch.as_tensor(x)
        labels = torch.as_tensor(
            np.concatenate([tokens[train.targets[rows]], np.ones((len(rows), 1), dtype=np.int64)], axis=1)
        )
        return ids, (ids != 0).long(), labels

    def run_epoch() -> None:
        t5.train()
        for rows in length_bucketed_batches(lengths, config.batch_size, np.random.default_rng([config.seed, epoch[0]])):
            ids, mask, labels = batch_tensors(rows)
            loss = t5(input_ids=ids, attention_mask=mask, labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        epoch[0] += 1

    steps = len(length_bucketed_batches(lengths, config.batch_size, np.random.default_rng(0)))
    return run_epoch, sum(p.numel() for p in t5.parameters()), steps


def measure(variant: str, config, interactions, split, epochs: int, group: ProcessGroup | None = None) -> dict:
    seed_everything(config.seed)
    if variant == "hf-t5":
        run_epoch, parameters, steps = hf_epoch_timer(config, interactions, split)
    else:
        run_epoch, parameters, steps = genrec_epoch_timer(config, interactions, split, group)
    run_epoch()  # untimed: allocator and kernel warm-up
    start = time.perf_counter()
    for _ in range(epochs):
        run_epoch()
    seconds = (time.perf_counter() - start) / epochs
    return {
        "variant": variant,
        "processes": group.world if group else 1,
        "model": config.model,
        "dataset": config.dataset,
        "targets": len(split.train),
        "targets_per_s": round(len(split.train) / seconds, 1),
        "seconds_per_epoch": round(seconds, 2),
        "steps_per_epoch": steps,
        "parameters": parameters,
        "threads": torch.get_num_threads(),
        "batch_size": config.batch_size,
        "num_workers": config.num_workers,
    }


def data_parallel_process(
    rank: int, world: int, port: int, argv: list[str], variant: str, epochs: int, threads: int, result: str
) -> None:
    """One of ``world`` training processes (``torch.multiprocessing`` spawns them); rank 0 writes the row."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING)
    group = process_group()
    try:
        config = load_config(argv)
        interactions, split = load_split(config)
        row = measure(variant, config, interactions, split, epochs, group)
        if group.main:
            Path(result).write_text(json.dumps(row))
    finally:
        dist.destroy_process_group()


def measure_data_parallel(variant: str, argv: list[str], world: int, epochs: int) -> dict:
    with socket.socket() as probe:  # a free local port for the process group
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        result = f"{folder}/row.json"
        mp.start_processes(
            data_parallel_process,
            args=(world, port, argv, variant, epochs, torch.get_num_threads(), result),
            nprocs=world,
            start_method="spawn",
        )
        return json.loads(Path(result).read_text())


def variant_settings(variant: str) -> dict[str, str]:
    """The settings of a variant ``architecture[:key=value...]`` (none for ``hf-t5``)."""
    if variant == "hf-t5":
        return {}
    architecture, *settings = variant.split(":")
    return {"architecture": architecture, **dict(setting.split("=", 1) for setting in settings)}


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING)
    config_file, flags = parse_flags(argv)
    variants = str(flags.pop("variants", "hf-t5,t5,decoder")).split(",")
    processes = [int(n) for n in str(flags.pop("processes", 1)).split(",")]
    epochs = int(flags.pop("epochs", 1))
    torch.set_num_threads(int(flags.pop("threads", 1)))
    flags = {"model": "PSID", **flags}

    def argv_of(variant: str) -> list[str]:
        settings = {**flags, **variant_settings(variant)}
        return [f"--config={config_file or 'configs/quickstart.yaml'}", *(f"--{k}={v}" for k, v in settings.items())]

    interactions, split = load_split(load_config(argv_of("hf-t5")))  # the shared flags alone: every variant's data
    baseline = None
    for variant in variants:
        own = argv_of(variant)
        for world in [1] if variant == "hf-t5" else processes:
            if world == 1:
                row = measure(variant, load_config(own), interactions, split, epochs)
            else:
                row = measure_data_parallel(variant, own, world, epochs)
            if variant == "hf-t5":
                baseline = row["targets_per_s"]
            if baseline:
                row["speedup_vs_hf"] = round(row["targets_per_s"] / baseline, 2)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
