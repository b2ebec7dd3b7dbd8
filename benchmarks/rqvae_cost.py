"""What RQ-VAE costs at a catalogue's size: seconds and peak memory for a few epoch counts, from
which its fixed cost (the k-means start and the final assignment) and its cost per epoch follow.

    python benchmarks/rqvae_cost.py [--items=1000000] [--dim=64] [--epochs=1,4] [--codebook_size=256]
        [--hidden=512,256,128] [--threads=1]

Random unit-free Gaussian vectors, RQ-VAE at genrec's default settings otherwise (3 levels, latent
32, batch 1024, 25 k-means iterations). Each epoch count runs in its own process, so each peak is
its own. One JSON line per epoch count, then one with the per-epoch seconds (the slope between the
smallest and largest count), the fixed seconds, and the default 200 epochs extrapolated from them.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def one(items: int, dim: int, epochs: int, codebook_size: int, hidden: list[int], threads: int) -> dict:
    import numpy as np
    import torch

    from genrec.semantic_ids.rqvae import rq_vae

    torch.set_num_threads(threads)
    x = np.random.default_rng(0).standard_normal((items, dim)).astype(np.float32)
    start = time.perf_counter()
    q = rq_vae(x, 3, codebook_size, hidden, 32, epochs, 1024, 1e-3, 0.25, 25, 0)
    return {
        "items": items,
        "dim": dim,
        "epochs": epochs,
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "level_errors": [round(e, 5) for e in q.level_errors],
    }


def main(argv: list[str]) -> None:
    from genrec.config import parse_flags

    _, flags = parse_flags(argv)
    items, dim = int(flags.pop("items", 1_000_000)), int(flags.pop("dim", 64))
    counts = [int(e) for e in str(flags.pop("epochs", "1,4")).split(",")]
    codebook_size, threads = int(flags.pop("codebook_size", 256)), int(flags.pop("threads", 1))
    hidden = [int(h) for h in str(flags.pop("hidden", "512,256,128")).split(",")]
    single = flags.pop("one", None)
    if flags:
        raise SystemExit(f"rqvae_cost.py: unknown flag(s) {', '.join('--' + k for k in flags)}")
    if single is not None:
        print(json.dumps(one(items, dim, int(single), codebook_size, hidden, threads)), flush=True)
        return
    rows = []
    for epochs in counts:
        command = [sys.executable, __file__, f"--one={epochs}", f"--items={items}", f"--dim={dim}"]
        command += [
            f"--codebook_size={codebook_size}",
            f"--threads={threads}",
            f"--hidden={','.join(map(str, hidden))}",
        ]
        line = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(line))
        print(line, flush=True)
    if len(rows) >= 2:
        low, high = min(rows, key=lambda r: r["epochs"]), max(rows, key=lambda r: r["epochs"])
        per_epoch = (high["seconds"] - low["seconds"]) / (high["epochs"] - low["epochs"])
        fixed = low["seconds"] - low["epochs"] * per_epoch
        summary = {"items": items, "seconds_per_epoch": round(per_epoch, 2), "fixed_seconds": round(fixed, 1)}
        summary["default_200_epochs_seconds"] = round(fixed + 200 * per_epoch)
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
