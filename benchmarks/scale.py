"""How each stage's cost grows with the catalogue: seconds and peak memory from 10k to 1M items.

    python benchmarks/scale.py [--items=10000,100000,1000000] [--per_item=10] [--history=20]
        [--stages=load,split,embed_cf,embed_text,quantize,collisions,trie,train,decode,rank]
        [--train_targets=20000] [--decode_users=1000] [--beam=50] [--architectures=decoder,t5]
        [--codebook_size=256] [--negatives=1000] [--vq_methods=rqkmeans,opq,rqvae] [--rqvae_epochs=N]
        [--folder=scale] [--figure=PATH]

For each size a catalogue is generated (``per_item`` interactions per item: users in taste
families with power-law popularity inside a family, one interaction a few hours after the last,
item titles, brands and category paths), written as Parquet and read through
``--dataset=Interactions`` as a user's files are. Each size runs in its own process, so the memory
it reports is its own; within it each stage is timed and its peak resident memory sampled every
10 ms while it runs. One JSON line per (size, stage):

- ``load``: read the Parquet files, order, de-duplicate, index (``genrec.pipeline.load_interactions``);
- ``split``: leave-one-out examples at history ``history``;
- ``embed_cf`` / ``embed_text``: collaborative (PPMI + truncated SVD) and text (the default
  sentence encoder) item vectors;
- ``quantize``: each of ``vq_methods`` (default RQ-KMeans; OPQ, RQ-VAE at the default settings or
  ``rqvae_epochs`` epochs: its time is linear in them, and its line says how many), 3 levels of
  ``codebook_size`` codes, on the text vectors (the cf ones without ``embed_text``);
  ``collisions``: its conflict-free resolution; ``trie``: the decoding trie of the first method's IDs;
- ``train``: ``train_targets`` training targets of PSID on each of ``architectures`` (CPU
  quickstart sizes) and of SASRec, with the full softmax over the catalogue and with the sampled
  softmax (``negatives`` sampled items and the batch's targets), one step per 256 targets;
- ``decode``: PSID's trie-constrained beam search (``beam``) for ``decode_users`` test users;
- ``rank``: SASRec's full-catalogue top-10 without the users' seen items for the same users.

With several sizes the last line per stage gives the growth exponent between the two largest
(seconds ~ items^exponent) and ``--figure`` draws cost against size on log-log axes (PNG + SVG).
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

STAGES = ("load", "split", "embed_cf", "embed_text", "quantize", "collisions", "trie", "train", "decode", "rank")
NOUNS = ("microscope", "caliper", "beaker", "lens", "pipette", "burner", "goggles", "scale", "flask", "stirrer")
ADJECTIVES = ("compact", "digital", "precision", "heavy-duty", "portable", "classic", "pro", "mini", "steel", "glass")
FAMILY_SIZE = 200  # items per taste family


def rss_mb() -> float:
    """This process's resident memory now (Linux /proc), else its peak so far."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def measured(record: dict):
    """Time the block and sample its peak resident memory into ``record``."""
    peak, done = [rss_mb()], threading.Event()
    before = peak[0]

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        yield
    finally:
        record["seconds"] = float(f"{time.perf_counter() - start:.4g}")  # 4 significant digits
        done.set()
        sampler.join()
        record["peak_rss_mb"] = round(max(peak[0], rss_mb()), 1)
        record["rss_before_mb"] = round(before, 1)


def generate(folder: Path, n_items: int, per_item: int, mean_length: int, seed: int) -> tuple[Path, Path]:
    """Events and items Parquet files of a catalogue of ``n_items`` with ``per_item * n_items``
    interactions, generated with numpy alone (seconds at 1M items)."""
    from genrec.datasets.tables import write_table

    rng = np.random.default_rng(seed)
    n_interactions = per_item * n_items
    lengths = np.maximum(3, rng.geometric(1 / mean_length, size=n_interactions // mean_length + 1))
    lengths = lengths[np.cumsum(lengths) <= n_interactions]
    users = np.repeat(np.arange(len(lengths)), lengths)
    n_families = max(1, n_items // FAMILY_SIZE)
    family = rng.integers(n_families, size=len(lengths))[users]
    within = np.minimum(rng.zipf(1.3, size=len(users)) - 1, FAMILY_SIZE - 1)
    explore = rng.random(len(users)) < 0.2  # a fifth of the interactions anywhere in the catalogue
    items = np.where(explore, rng.integers(n_items, size=len(users)), (family * FAMILY_SIZE + within) % n_items)
    starts = rng.integers(1_600_000_000, 1_700_000_000, size=len(lengths))
    gaps = rng.integers(600, 3 * 86_400, size=len(users))
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    times = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first] - gaps[first], lengths) + np.repeat(starts, lengths)
    events = folder / "events.parquet"
    write_table(events, "parquet", {"user_id": users, "item_id": items, "timestamp": times})
    ids = np.arange(n_items)
    catalogue = {
        "item_id": ids,
        "title": [f"{ADJECTIVES[i % 10]} {NOUNS[(i // FAMILY_SIZE) % 10]} model {i}" for i in ids.tolist()],
        "brand": [f"brand{(i * 7919) % 997}" for i in ids.tolist()],
        "categories": [f"Science, {NOUNS[(i // FAMILY_SIZE) % 10]}s, family {i // FAMILY_SIZE}" for i in ids.tolist()],
    }
    catalogue_path = folder / "items.parquet"
    write_table(catalogue_path, "parquet", catalogue)
    return events, catalogue_path


def one_size(n_items: int, options: dict) -> None:
    """Every stage at one size, one JSON line each (run in its own process)."""
    import torch

    from genrec import models
    from genrec.config import load_config
    from genrec.data import leave_one_out
    from genrec.decoding.trie import SIDTrie
    from genrec.embeddings import ItemVectors, cf_vectors, text_vectors
    from genrec.models.generative import GenerativeRecommender
    from genrec.pipeline import load_interactions
    from genrec.semantic_ids import SemanticIDs, quantize, resolve
    from genrec.trainer import training_data

    torch.manual_seed(0)
    stages, history = options["stages"], options["history"]
    folder = Path(options["folder"]) / f"items{n_items}-per{options['per_item']}-history{history}"
    folder.mkdir(parents=True, exist_ok=True)
    events, items = generate(folder, n_items, options["per_item"], max(20, history), seed=n_items)
    base = dict(
        dataset="Interactions",
        interactions=str(events),
        items=str(items),
        max_item_seq_len=history,
        cache_dir=tempfile.mkdtemp(prefix="scale-cache-"),
        vq_codebook_size=options["codebook_size"],
        vq_n_codebooks=3,
    )
    codebook = options["codebook_size"]
    config = load_config([], **base)
    rows: list[dict] = []

    def stage(name: str):
        record = {"items": n_items, "per_item": options["per_item"], "history": history, "stage": name}
        rows.append(record)
        return measured(record)

    def emit() -> None:
        print(json.dumps(rows[-1]), flush=True)

    with stage("load"):
        interactions = load_interactions(config)
    rows[-1].update(users=interactions.n_users, interactions=interactions.n_interactions)
    emit()
    with stage("split"):
        split = leave_one_out(interactions.sequences, history)
    rows[-1]["train_examples"] = len(split.train)
    emit()
    vectors = None
    if "embed_cf" in stages:
        with stage("embed_cf"):
            vectors, _ = cf_vectors(config, interactions, split)
        emit()
    if "embed_text" in stages:
        with stage("embed_text"):
            vectors, _ = text_vectors(config, interactions, list(config.sent_emb_fields))
        rows[-1]["items_per_s"] = round(n_items / rows[-1]["seconds"], 1)
        emit()
    if vectors is None:
        raise SystemExit("scale.py: quantizing needs embed_cf or embed_text among --stages")
    codes = None  # the first method's IDs: the trie and the models use them
    for method in options["vq_methods"]:
        epochs = {"rqvae_epochs": options["rqvae_epochs"]} if method == "rqvae" and options["rqvae_epochs"] else {}
        method_config = load_config([], **base, vq_method=method, **epochs)
        with stage("quantize"):
            quantization = quantize(method_config, ItemVectors(vectors, "bench", {}))
        rows[-1].update(model=method, dim=int(vectors.shape[1]))
        if method == "rqvae":
            rows[-1]["epochs"] = method_config.rqvae_epochs
        emit()
        with stage("collisions"):
            resolved = resolve(method_config, quantization)
        colliding = 1 - len(np.unique(quantization.codes, axis=0)) / n_items
        rows[-1].update(model=method, colliding=round(float(colliding), 4))
        emit()
        codes = resolved if codes is None else codes
        del quantization, resolved
    with stage("trie"):
        trie = SIDTrie(codes, [codebook] * 3)
    rows[-1]["table_mb"] = round(trie.nbytes / 2**20, 1)
    emit()
    del trie
    small = dict(d_model=64, d_ff=256, num_layers=2, num_decoder_layers=2, num_heads=4, d_kv=16)
    sids = SemanticIDs(codes, [codebook] * 3, {})
    psid = {
        architecture: GenerativeRecommender(
            load_config([], **base, model="PSID", architecture=architecture, **small), sids
        )
        for architecture in options["architectures"]
    }
    sasrec = models.get("SASRec").build(load_config([], **base, model="SASRec"), interactions, split)
    sampled = models.get("SASRec").build(
        load_config([], **base, model="SASRec", sampled_softmax=options["negatives"]), interactions, split
    )
    users = split.test.histories[: options["decode_users"]]
    seen = split.test.seen[: options["decode_users"]]
    trained = [(f"PSID ({a})", m) for a, m in psid.items()] + [("SASRec", sasrec), ("SASRec (sampled)", sampled)]
    for name, model in trained if "train" in stages else []:
        data = training_data(model, split, history)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(0)
        order = np.random.default_rng(0).permutation(len(data))
        model.train()
        with stage("train"):
            done, start = 0, 0
            while done < options["train_targets"] and start < len(order):
                rows_ = order[start : start + 64]
                while data.targets_in(rows_) < 256 and start + len(rows_) < len(order):
                    rows_ = order[start : start + 2 * len(rows_)]
                start += len(rows_)
                loss = model.loss(*data.batch(rows_), generator)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                done += data.targets_in(rows_)
        rows[-1].update(model=name, targets=done, targets_per_s=round(done / rows[-1]["seconds"], 1))
        rows[-1]["parameters"] = sum(p.numel() for p in model.parameters())
        emit()
        del optimizer
        model.eval()
    torch.set_grad_enabled(False)
    for architecture, model in psid.items() if "decode" in stages else []:
        with stage("decode"):
            for start in range(0, len(users), 64):
                model.recommend(users[start : start + 64], 10, options["beam"])
        rows[-1].update(model=f"PSID ({architecture})", beam=options["beam"])
        rows[-1]["users_per_s"] = round(len(users) / rows[-1]["seconds"], 1)
        emit()
    if "rank" in stages:
        with stage("rank"):
            for start in range(0, len(users), 64):
                sasrec.recommend(users[start : start + 64], 10, 1, seen[start : start + 64])
        rows[-1].update(model="SASRec", users_per_s=round(len(users) / rows[-1]["seconds"], 1))
        emit()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"items": n_items, "history": history, "stage": "process", "peak_rss_mb": round(peak, 1)}))


def growth(rows: list[dict]) -> list[dict]:
    """Per stage (and model): seconds ~ items^exponent between the two largest sizes measured."""
    lines = []
    keys = sorted({(r["stage"], r.get("model")) for r in rows if "seconds" in r}, key=str)
    for stage, model in keys:
        points = sorted((r["items"], r["seconds"]) for r in rows if r["stage"] == stage and r.get("model") == model)
        if len(points) >= 2 and points[-2][1] > 0:
            (n1, s1), (n2, s2) = points[-2], points[-1]
            exponent = math.log(s2 / s1) / math.log(n2 / n1)
            lines.append({"stage": stage, "model": model, "growth_exponent": round(exponent, 2), "between": [n1, n2]})
    return lines


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(11, 4.5))
    keys = sorted({(r["stage"], r.get("model")) for r in rows if "seconds" in r}, key=str)
    colours = plt.get_cmap("tab20").colors
    for index, (stage, model) in enumerate(keys):
        points = sorted(
            (r["items"], r["seconds"], r["peak_rss_mb"])
            for r in rows
            if r["stage"] == stage and r.get("model") == model
        )
        label = f"{stage} ({model})" if model else stage
        sizes = [p[0] for p in points]
        style = dict(marker="o", label=label, color=colours[index % 20], linestyle=("-", "--", ":")[index % 3])
        time_axis.plot(sizes, [max(p[1], 1e-3) for p in points], **style)
        memory_axis.plot(sizes, [p[2] / 1024 for p in points], **style)
    for axis, title in ((time_axis, "seconds"), (memory_axis, "peak resident memory during the stage (GiB)")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("items in the catalogue")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
    time_axis.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".png", ".svg"):
        fig.savefig(path.with_suffix(suffix), dpi=130)
    plt.close(fig)


def failure(size: int, code: int, stderr: str) -> dict:
    """The line that reports a size's failed process: its exit code, the signal that killed it (a
    child killed for memory dies by SIGKILL and writes no traceback, which says as much) and the
    last lines of what it wrote to stderr (a traceback's tail, past progress lines)."""
    line: dict = {"items": size, "error": stderr.strip().splitlines()[-12:], "exit_code": code}
    if code < 0:
        line["signal"] = signal.Signals(-code).name
        if -code == signal.SIGKILL:
            line["hint"] = "killed by SIGKILL, most likely for memory (out-of-memory killer)"
    return line


def main(argv: list[str]) -> None:
    from genrec.config import parse_flags

    logging.basicConfig(level=logging.WARNING)
    _, flags = parse_flags(argv)
    sizes = [int(n) for n in str(flags.pop("items", "10000,100000,1000000")).split(",")]
    options = {
        "per_item": int(flags.pop("per_item", 10)),
        "history": int(flags.pop("history", 20)),
        "stages": str(flags.pop("stages", ",".join(STAGES))).split(","),
        "train_targets": int(flags.pop("train_targets", 20_000)),
        "decode_users": int(flags.pop("decode_users", 1000)),
        "beam": int(flags.pop("beam", 50)),
        "folder": str(flags.pop("folder", "scale")),
        "codebook_size": int(flags.pop("codebook_size", 256)),
        "architectures": str(flags.pop("architectures", "decoder")).split(","),
        "negatives": int(flags.pop("negatives", 1000)),
        "vq_methods": str(flags.pop("vq_methods", "rqkmeans")).split(","),
        "rqvae_epochs": int(flags.pop("rqvae_epochs", 0)),  # 0: the configured default
    }
    figure_path = flags.pop("figure", None)
    single = flags.pop("one_size", None)
    if flags:
        raise SystemExit(f"scale.py: unknown flag(s) {', '.join('--' + k for k in flags)}")
    unknown = set(options["stages"]) - set(STAGES)
    if unknown:
        raise SystemExit(f"scale.py: unknown stage(s) {', '.join(sorted(unknown))}; stages: {', '.join(STAGES)}")
    if single is not None:
        one_size(int(single), options)
        return
    rows, failed = [], []
    for size in sizes:
        listed = {k: ",".join(v) if isinstance(v, list) else v for k, v in options.items()}
        command = [sys.executable, __file__, f"--one_size={size}", *(f"--{k}={v}" for k, v in listed.items())]
        # Each stage's line is passed on as the stage ends: a long size shows (and keeps) its progress.
        with tempfile.TemporaryFile(mode="w+") as errors:
            child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
            for line in child.stdout:
                print(line, end="", flush=True)
                rows.append(json.loads(line))
            code = child.wait()
            if code:
                failed.append(size)
                errors.seek(0)
                print(json.dumps(failure(size, code, errors.read())), flush=True)
    for line in growth(rows):
        print(json.dumps(line), flush=True)
    if figure_path:
        figure(rows, Path(str(figure_path)))
    if failed:
        raise SystemExit(
            f"scale.py: the run at {', '.join(map(str, failed))} items failed (its exit code and error are above)"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
