"""Tie-safe top-k (``genrec.ranking.top_k``) against plain ``torch.topk`` on full-catalogue scores:
the seconds per batch of users, best of ``repeats``, and whether the lists agree with a full stable
sort (checked on the first rows). One JSON line per catalogue size.

    python benchmarks/top_k_speed.py [--items=10000,100000,1000000] [--users=32] [--k=10] [--repeats=5]
        [--ties=0.0] [--threads=N]

``--ties``: the share of rows whose k-th best score is copied onto other items, the case where
``torch.topk`` may return any of the tied items and genrec must choose the lowest indices.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from genrec.config import parse_flags
from genrec.ranking import top_k


def best_of(repeats: int, fn) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str]) -> None:
    if "--help" in argv or "-h" in argv:
        print(__doc__)
        return
    _, flags = parse_flags(argv)
    sizes = [int(n) for n in str(flags.pop("items", "10000,100000,1000000")).split(",")]
    users, k, repeats = int(flags.pop("users", 32)), int(flags.pop("k", 10)), int(flags.pop("repeats", 5))
    ties = float(flags.pop("ties", 0.0))
    if "threads" in flags:
        torch.set_num_threads(int(flags.pop("threads")))
    if flags:
        raise SystemExit(f"top_k_speed.py: unknown flag(s) {', '.join('--' + key for key in flags)}")
    generator = torch.Generator().manual_seed(0)
    for n in sizes:
        scores = torch.randn(users, n, generator=generator)
        tied_rows = int(round(ties * users))
        for row in range(tied_rows):
            kth = scores[row].topk(k).values[-1]
            scores[row, torch.randint(0, n, (k,), generator=generator)] = kth
        plain = best_of(repeats, lambda scores=scores: scores.topk(k, dim=1))
        safe = best_of(repeats, lambda scores=scores: top_k(scores, k))
        checked = min(users, 4)
        exact = torch.sort(scores[:checked], dim=1, descending=True, stable=True).indices[:, :k]
        print(
            json.dumps(
                {
                    "items": n,
                    "users": users,
                    "k": k,
                    "tied_rows": tied_rows,
                    "threads": torch.get_num_threads(),
                    "topk_s": round(plain, 5),
                    "top_k_s": round(safe, 5),
                    "ratio": round(safe / plain, 2),
                    "equal_to_stable_sort": bool(torch.equal(top_k(scores[:checked], k), exact)),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
