"""Load on ``genrec serve``: requests per second and p50 / p99 latency at several numbers of
concurrent clients, each sending one test user's history per request, against ``genrec serve``
started as its own process on 127.0.0.1 (a free port), as a user would run it, so that the clients
share no interpreter with it. One JSON line per concurrency level.

    python benchmarks/serve_load.py RUN_DIR [--clients=1,8,64] [--requests=256] [--k=10]
        [--max_batch=64] [--max_wait_ms=0] [--threads=N] [--figure=STEM] [--key=value ...]
    python benchmarks/serve_load.py RUN_DIR --soak_s=600 [--clients=8] [--sample_s=10] [--seed=0]

``--http_only=true`` serves the same requests from the same app over a stand-in run that answers at once
(no decoding): what serving costs besides decoding, on the same cores. Each line also gives the CPU
milliseconds one request cost (``cpu_ms_per_request``): in ``genrec serve``'s HTTP process, in its
decoding process and in the load generator (this process), which share the machine's cores.

``--figure=STEM`` draws latency and throughput against the clients (``STEM.png``, ``STEM.svg``), with
``--decode_users_per_s`` (``benchmarks/decode_speed.py``'s figure for the same run and beam) as the
line that serving with no overhead beyond decoding would reach.

``--soak_s``: a long session instead: ``clients`` threads send a varied mix for that many seconds
(1 to ``max_batch`` histories a request, k of 1 to 50, three beam widths, seen items excluded or not,
allow / deny lists, categories, diversity, a few unknown ids that are 400s; and 2% new items, 2%
items removed and restored), and every ``sample_s`` a line gives the server's resident memory (RSS,
its decoding process included) and the requests so far; a last line sums up the growth (MB per
1,000 requests: the least-squares slope over the second half, when a cache or an allocator would
have settled). Flags other than these go to ``genrec serve`` (e.g. ``--threads``,
``--max_wait_ms``) and so to ``genrec.load_run`` (e.g. ``--data_dir``, ``--test_num_beams``,
``--decode_precision``). The catalogue changes of a soak are journaled to a temporary file, never
to the run's folder.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from genrec import load_run
from genrec.config import parse_flags

SERVER_FLAGS = ("max_batch", "max_wait_ms", "threads", "host", "api_key_file", "auth", "max_body_mb")  # genrec serve's


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> None:
    """One keep-alive HTTP/1.1 request and its whole answer; anything but a 200 is an error."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    body = await reader.readexactly(length)
    if status != b"200":
        raise RuntimeError(f"HTTP {status.decode()}: {body[:300]!r}")


def load(port: int, bodies: list[dict], clients: int) -> dict:
    """``clients`` connections send ``bodies`` as fast as answers come back. The client is raw asyncio
    over keep-alive connections with the requests encoded beforehand: it costs the shared CPU tens of
    microseconds a request, so the figures are the server's (a thread per client with an HTTP library
    took more CPU than the server's own parsing)."""
    requests = [
        (
            f"POST /recommend HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"content-length: {len(payload)}\r\n\r\n"
        ).encode()
        + payload
        for payload in (json.dumps(body).encode() for body in bodies)
    ]
    latencies: list[float] = []

    async def client(queue: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                request = queue.pop()
                start = time.perf_counter()
                await exchange(reader, writer, request)
                latencies.append(time.perf_counter() - start)
        finally:
            writer.close()

    async def everyone() -> None:
        queue = requests[::-1]
        await asyncio.gather(*(client(queue) for _ in range(min(clients, len(requests)))))

    start = time.perf_counter()
    asyncio.run(everyone())
    seconds = time.perf_counter() - start
    latencies.sort()
    return {
        "clients": clients,
        "requests": len(bodies),
        "requests_per_s": round(len(bodies) / seconds, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
    }


def rss_mb(pid: int) -> float:
    """The resident memory of ``pid`` and of every process under it (``genrec serve`` decodes in a
    child process)."""
    with open(f"/proc/{pid}/statm") as handle:
        own = int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += (task / "children").read_text().split()
    return own + sum(rss_mb(int(child)) for child in children)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) of ``pid`` itself and of every process under it: ``genrec serve``'s
    HTTP process and its decoding child."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    below = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            below += sum(cpu_seconds(int(child)))
    return own, below


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


def soak(
    client: httpx.Client, run, server: int, seconds: float, clients: int, sample_s: float, max_batch: int, seed: int
) -> None:
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
    samples = [(0.0, 0, rss_mb(server))]
    threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    while time.perf_counter() - start < seconds:
        time.sleep(min(sample_s, max(0.0, seconds - (time.perf_counter() - start))))
        with lock:
            done = dict(counts)
        samples.append((time.perf_counter() - start, done["requests"], rss_mb(server)))
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


def figure(rows: list[dict], stem: Path, decode_users_per_s: float | None) -> None:
    """Latency (p50, p99) and throughput against concurrent clients, PNG + SVG; the decode benchmark's
    users/s, when given, as the line serving would reach with no overhead beyond decoding."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genrec.figures import save_figure

    rows = sorted(rows, key=lambda row: row["clients"])
    clients = [row["clients"] for row in rows]
    fig, (latency, throughput) = plt.subplots(1, 2, figsize=(10, 4))
    latency.plot(clients, [row["p50_ms"] for row in rows], marker="o", label="p50")
    latency.plot(clients, [row["p99_ms"] for row in rows], marker="s", label="p99")
    latency.axhline(50, color="grey", linestyle=":", label="50 ms")
    latency.set_yscale("log")
    latency.set_ylabel("latency (ms)")
    throughput.plot(clients, [row["requests_per_s"] for row in rows], marker="o", label="served")
    if decode_users_per_s:
        throughput.axhline(decode_users_per_s, color="grey", linestyle="--", label="decoding alone")
    throughput.set_ylabel("requests (users) per second")
    first = rows[0]
    for axis in (latency, throughput):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent clients")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    fig.suptitle(
        f"genrec serve: {first['model']} ({first['run']}), beam {first['beam']}, {first['decode_precision']}, "
        f"{first['torch_threads']} torch threads",
        fontsize=9,
    )
    save_figure(fig, stem)


class StandIn:
    """A run that answers every request at once with made-up items (``--http_only``): the server
    around it is ``genrec serve``'s, so its throughput is what serving costs besides decoding."""

    label = "stand-in (no decoding)"
    available = np.ones(1, dtype=bool)
    item_index: dict = {}

    class interactions:  # noqa: N801 - stands in for Run.interactions
        name = "none"

    def recommend(self, histories: list, k: int = 10, **options) -> list:
        return [[(f"item-{rank}", -float(rank)) for rank in range(k)] for _ in histories]


def stand_in_server(port: int, max_batch: int, max_wait_ms: float) -> None:
    """``genrec serve``'s app over :class:`StandIn`, access log on as ``genrec serve`` has it."""
    import uvicorn

    from genrec.batcher import MicroBatcher
    from genrec.serve import create_app

    app = create_app(MicroBatcher(StandIn(), max_batch, max_wait_ms))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info")


def start_server(directory: Path, port: int, flags: dict, journal: Path, http_only: bool) -> subprocess.Popen:
    """``genrec serve`` (or, ``http_only``, the same app over :class:`StandIn`) on ``port``, once
    ``/health`` answers."""
    if http_only:
        own = {key: flags[key] for key in ("max_batch", "max_wait_ms")}
        command = [sys.executable, __file__, "--stand_in_server", f"--port={port}"]
        server = subprocess.Popen(command + [f"--{key}={value}" for key, value in own.items()], stdout=sys.stderr)
    else:
        command = [sys.executable, "-m", "genrec", "serve", f"--run={directory}", f"--port={port}"]
        command += [f"--journal={journal}"] + [f"--{key}={value}" for key, value in flags.items()]
        server = subprocess.Popen(command, stdout=sys.stderr)  # stdout is the JSON lines
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"genrec serve exited with {server.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("genrec serve did not answer within 600 s")


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING)
    if "--stand_in_server" in argv:
        _, own = parse_flags([arg for arg in argv if arg != "--stand_in_server"])
        stand_in_server(int(own["port"]), int(own["max_batch"]), float(own["max_wait_ms"]))
        return
    (directory,) = [Path(arg) for arg in argv if not arg.startswith("--")]
    _, flags = parse_flags([arg for arg in argv if arg.startswith("--")])
    http_only = flags.pop("http_only", False) is True
    chosen = flags.pop("clients", None)
    levels = [int(c) for c in str(chosen or "1,8,64").split(",")]
    n_requests, k = int(flags.pop("requests", 256)), int(flags.pop("k", 10))
    soak_s, sample_s = float(flags.pop("soak_s", 0)), float(flags.pop("sample_s", 10))
    seed = int(flags.pop("seed", 0))
    figure_stem = flags.pop("figure", None)
    decode_users_per_s = float(flags.pop("decode_users_per_s", 0)) or None
    serve_flags = {"max_batch": 64, "max_wait_ms": 0, **flags}
    run = load_run(directory, **{key: value for key, value in flags.items() if key not in SERVER_FLAGS})
    test = run.split.test
    bodies = [
        {"histories": [[run.interactions.item_ids[i] for i in test.histories[u % len(test)]]], "k": k}
        for u in range(n_requests)
    ]
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        server = start_server(directory, port, serve_flags, Path(scratch) / "journal.jsonl", http_only)
        try:
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", timeout=600, limits=httpx.Limits(max_connections=max(levels))
            ) as client:
                load(port, bodies[: min(16, len(bodies))], 4)  # warm-up
                if soak_s:
                    max_batch = int(serve_flags["max_batch"])
                    soak(client, run, server.pid, soak_s, max(levels) if chosen else 8, sample_s, max_batch, seed)
                    levels = []
                rows = []
                health = client.get("/health").json()
                for clients in levels:
                    passes = client.get("/health").json()["decoding_passes"]
                    server_cpu, client_cpu = cpu_seconds(server.pid), time.process_time()
                    row = load(port, bodies, clients)
                    (http_cpu, decoder_cpu), spent = cpu_seconds(server.pid), time.process_time() - client_cpu
                    per_request = {
                        "http": http_cpu - server_cpu[0],
                        "decoding": decoder_cpu - server_cpu[1],
                        "client": spent,
                    }
                    row.update(
                        {
                            "run": directory.name,
                            "model": StandIn.label if http_only else run.label,
                            "k": k,
                            "beam": None if http_only else max(k, run.config.test_num_beams),
                            "http_only": http_only,
                            "max_batch": int(serve_flags["max_batch"]),
                            "max_wait_ms": float(serve_flags["max_wait_ms"]),
                            "torch_threads": health["torch_threads"],
                            "decode_precision": run.config.decode_precision,
                            "device": str(run.model.device),
                            "decoding_passes": client.get("/health").json()["decoding_passes"] - passes,
                            "cpu_ms_per_request": {
                                part: round(1000 * seconds / len(bodies), 3) for part, seconds in per_request.items()
                            },
                        }
                    )
                    print(json.dumps(row), flush=True)
                    rows.append(row)
        finally:
            server.terminate()
            server.wait(timeout=30)
    if figure_stem and levels:
        figure(rows, Path(str(figure_stem)), decode_users_per_s)


if __name__ == "__main__":
    main(sys.argv[1:])
