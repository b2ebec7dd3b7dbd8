"""Load on ``genrec serve``: requests per second and p50 / p99 latency at several numbers of
concurrent clients, each sending one test user's history per request, against a server started in
this process on 127.0.0.1 (a free port). One JSON line per concurrency level.

    python benchmarks/serve_load.py RUN_DIR [--clients=1,8,64] [--requests=256] [--k=10]
        [--max_batch=64] [--max_wait_ms=5] [--threads=N] [--key=value ...]
    python benchmarks/serve_load.py RUN_DIR --soak_s=600 [--clients=8] [--sample_s=10] [--seed=0]

``--soak_s``: a long session instead: ``clients`` threads send a varied mix for that many seconds
(1 to ``max_batch`` histories a request, k of 1 to 50, three beam widths, seen items excluded or not,
allow / deny lists, categories, diversity, a few unknown ids that are 400s; and 2% new items, 2%
items removed and restored), and every
``sample_s`` a line gives the process's resident memory (RSS) and the requests so far; a last line
sums up the growth (MB per 1,000 requests: the least-squares slope over the second half, when a
cache or an allocator would have settled). Flags other than these go to ``genrec.load_run`` (e.g. ``--data_dir``,
``--test_num_beams``).
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import torch
import uvicorn

from genrec import load_run
from genrec.config import parse_flags
from genrec.serve import create_app


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def load(client: httpx.Client, bodies: list[dict], clients: int) -> dict:
    def one(body: dict) -> float:
        start = time.perf_counter()
        reply = client.post("/recommend", json=body)
        reply.raise_for_status()
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        latencies = sorted(pool.map(one, bodies))
    seconds = time.perf_counter() - start
    return {
        "clients": clients,
        "requests": len(bodies),
        "requests_per_s": round(len(bodies) / seconds, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
    }


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def mixed_body(run, rng: random.Random, max_batch: int) -> dict:
    """One request of the soak's mix (see the module docstring)."""
    test, ids = run.split.test, run.interactions.item_ids
    users = [rng.randrange(len(test)) for _ in range(rng.choice([1, 1, 2, 8, max_batch]))]
    body: dict = {
        "histories": [[ids[i] for i in test.histories[u]] for u in users],
        "k": rng.choice([1, 5, 10, 20, 50]),
        "num_beams": rng.choice([None, 20, 100]),
        "exclude_seen": rng.random() < 0.5,
    }
    roll = rng.random()
    if roll < 0.15:
        body["allow"] = rng.sample(ids, min(len(ids), rng.choice([5, 50, 500])))
    elif roll < 0.25:
        body["deny"] = rng.sample(ids, min(len(ids), 20))
    elif roll < 0.35:
        body["category"] = rng.choice(sorted(set().union(*run.item_categories)))
    elif roll < 0.45:
        body["diversity"] = rng.choice([{"prefix_cap": 2}, {"mmr": 0.7}, {"groups": 2}])
    elif roll < 0.48:
        body["histories"][0] = body["histories"][0] + [f"unknown-{rng.randrange(10**9)}"]
    return body


def soak(client: httpx.Client, run, seconds: float, clients: int, sample_s: float, max_batch: int, seed: int) -> None:
    """``clients`` threads send the mix for ``seconds``; a JSON line of RSS every ``sample_s``."""
    counts = {"requests": 0, "errors": 0, "4xx": 0}
    lock, stop = threading.Lock(), threading.Event()

    def client_loop(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        while not stop.is_set():
            roll = rng.random()
            if roll < 0.02:  # a new item (cold start), with the text of a random one
                text = dict(run.interactions.item_text[rng.randrange(run.interactions.n_items)])
                reply = client.post("/items", json={"items": [{"id": f"soak-{index}-{rng.randrange(10**12)}", **text}]})
            elif roll < 0.04:  # out of stock, and back
                item = run.interactions.item_ids[rng.randrange(run.interactions.n_items)]
                reply = client.delete(f"/items/{item}")
                client.post(f"/items/{item}/restore")
            else:
                reply = client.post("/recommend", json=mixed_body(run, rng, max_batch))
            with lock:
                counts["requests"] += 1
                counts["4xx"] += 400 <= reply.status_code < 500
                counts["errors"] += reply.status_code >= 500

    start = time.perf_counter()
    samples = [(0.0, 0, rss_mb())]
    threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    while time.perf_counter() - start < seconds:
        time.sleep(min(sample_s, max(0.0, seconds - (time.perf_counter() - start))))
        with lock:
            done = dict(counts)
        samples.append((time.perf_counter() - start, done["requests"], rss_mb()))
        print(json.dumps({"t_s": round(samples[-1][0], 1), **done, "rss_mb": round(samples[-1][2], 1)}), flush=True)
    stop.set()
    for thread in threads:
        thread.join(timeout=600)
    # A least-squares slope over the second half's samples: two samples' difference would read the
    # allocator's swings of tens of MB as growth.
    second = [sample for sample in samples if sample[0] >= seconds / 2]
    growth = (
        statistics.linear_regression([s[1] for s in second], [s[2] for s in second]).slope * 1000
        if len(second) > 1
        else 0.0
    )
    print(
        json.dumps(
            {
                "summary": "soak",
                "seconds": round(samples[-1][0], 1),
                "clients": clients,
                **counts,
                "rss_start_mb": round(samples[0][2], 1),
                "rss_end_mb": round(samples[-1][2], 1),
                "rss_max_mb": round(max(s[2] for s in samples), 1),
                "mb_per_1k_requests_second_half": round(growth, 3),
            }
        ),
        flush=True,
    )


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING)
    (directory,) = [Path(arg) for arg in argv if not arg.startswith("--")]
    _, flags = parse_flags([arg for arg in argv if arg.startswith("--")])
    chosen = flags.pop("clients", None)
    levels = [int(c) for c in str(chosen or "1,8,64").split(",")]
    n_requests, k = int(flags.pop("requests", 256)), int(flags.pop("k", 10))
    max_batch, max_wait_ms = int(flags.pop("max_batch", 64)), float(flags.pop("max_wait_ms", 5))
    soak_s, sample_s = float(flags.pop("soak_s", 0)), float(flags.pop("sample_s", 10))
    seed = int(flags.pop("seed", 0))
    if "threads" in flags:
        torch.set_num_threads(int(flags.pop("threads")))
    run = load_run(directory, **flags)
    test = run.split.test
    bodies = [
        {"histories": [[run.interactions.item_ids[i] for i in test.histories[u % len(test)]]], "k": k}
        for u in range(n_requests)
    ]
    app = create_app(run, max_batch, max_wait_ms)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}", timeout=600, limits=httpx.Limits(max_connections=max(levels))
    ) as client:
        load(client, bodies[: min(16, len(bodies))], 4)  # warm-up
        if soak_s:
            soak(client, run, soak_s, max(levels) if chosen else 8, sample_s, max_batch, seed)
            levels = []
        for clients in levels:
            passes = app.state.batcher.batches
            row = load(client, bodies, clients)
            row.update(
                {
                    "run": directory.name,
                    "model": run.label,
                    "k": k,
                    "beam": max(k, run.config.test_num_beams),
                    "max_batch": max_batch,
                    "max_wait_ms": max_wait_ms,
                    "threads": torch.get_num_threads(),
                    "device": str(next(run.model.parameters()).device),
                    "decoding_passes": app.state.batcher.batches - passes,
                }
            )
            print(json.dumps(row), flush=True)
    server.should_exit = True
    thread.join(timeout=10)


if __name__ == "__main__":
    main(sys.argv[1:])
