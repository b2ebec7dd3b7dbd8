"""Load on ``genrec serve``: requests per second and p50 / p99 latency at several numbers of
concurrent clients, each sending one test user's history per request, against a server started in
this process on 127.0.0.1 (a free port). One JSON line per concurrency level.

    python benchmarks/serve_load.py RUN_DIR [--clients=1,8,64] [--requests=256] [--k=10]
        [--max_batch=64] [--max_wait_ms=5] [--threads=N] [--key=value ...]

Flags other than these go to ``genrec.load_run`` (e.g. ``--data_dir``, ``--test_num_beams``).
"""

from __future__ import annotations

import json
import logging
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


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING)
    (directory,) = [Path(arg) for arg in argv if not arg.startswith("--")]
    _, flags = parse_flags([arg for arg in argv if arg.startswith("--")])
    levels = [int(c) for c in str(flags.pop("clients", "1,8,64")).split(",")]
    n_requests, k = int(flags.pop("requests", 256)), int(flags.pop("k", 10))
    max_batch, max_wait_ms = int(flags.pop("max_batch", 64)), float(flags.pop("max_wait_ms", 5))
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
