"""Why the collaborative embeddings' truncated SVD grows faster than the co-occurrence matrix: ARPACK
(``scipy.sparse.linalg.svds``, what genrec uses) against a randomized subspace iteration, on the
PPMI matrix of the scale benchmark's generated catalogue. One JSON line per solver.

    python benchmarks/cf_svd.py [--items=100000] [--dim=64] [--iterations=8,16] [--folder=scale]

The first line gives the matrix and ARPACK's seconds and singular values at 1, dim/2, dim-1 and dim:
where those last ones are nearly equal, the top-``dim`` subspace lies inside a plateau of the
spectrum, which Lanczos iterations separate slowly. Each randomized line gives its seconds, how close
its singular values come to ARPACK's (largest relative difference) and the principal cosines between
the two subspaces (1: the same subspace).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.linalg
from scale import generate
from scipy.sparse.linalg import svds

from genrec.config import load_config, parse_flags
from genrec.data import leave_one_out
from genrec.embeddings.collaborative import cooccurrence, ppmi
from genrec.pipeline import load_interactions


def randomized_eig(matrix, k: int, iterations: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` eigenpairs by magnitude of a symmetric matrix: subspace iteration from ``2k`` random
    vectors, ``iterations`` products, then Rayleigh-Ritz."""
    basis = np.random.default_rng(seed).standard_normal((matrix.shape[0], 2 * k))
    basis, _ = np.linalg.qr(matrix @ basis)
    for _ in range(iterations):
        basis, _ = np.linalg.qr(matrix @ basis)
    small = basis.T @ (matrix @ basis)
    values, vectors = scipy.linalg.eigh((small + small.T) / 2)
    order = np.argsort(-np.abs(values))[:k]
    return basis @ vectors[:, order], np.abs(values[order])


def main(argv: list[str]) -> None:
    if "--help" in argv or "-h" in argv:
        print(__doc__)
        return
    _, flags = parse_flags(argv)
    n, dim = int(flags.pop("items", 100_000)), int(flags.pop("dim", 64))
    iterations = [int(i) for i in str(flags.pop("iterations", "8,16")).split(",")]
    folder = Path(str(flags.pop("folder", "scale"))) / f"items{n}-per10-history20"
    if flags:
        raise SystemExit(f"cf_svd.py: unknown flag(s) {', '.join('--' + key for key in flags)}")
    folder.mkdir(parents=True, exist_ok=True)
    events, items = generate(folder, n, 10, 20, seed=n)
    with tempfile.TemporaryDirectory() as cache:
        config = load_config([], dataset="Interactions", interactions=str(events), items=str(items), cache_dir=cache)
        interactions = load_interactions(config)
    split = leave_one_out(interactions.sequences, 20)
    matrix = ppmi(cooccurrence(split.train_sequences, n, config.cf_window)).astype(np.float64)
    start = time.perf_counter()
    reference, values, _ = svds(matrix, k=dim, v0=np.random.default_rng(0).standard_normal(n))
    seconds = time.perf_counter() - start
    order = np.argsort(-values)
    reference, values = reference[:, order], values[order]
    print(
        json.dumps(
            {
                "items": n,
                "nnz": int(matrix.nnz),
                "solver": "arpack",
                "seconds": round(seconds, 2),
                "singular_values": {
                    str(i + 1): round(float(values[i]), 4) for i in (0, dim // 2 - 1, dim - 2, dim - 1)
                },
            }
        ),
        flush=True,
    )
    for count in iterations:
        start = time.perf_counter()
        vectors, found = randomized_eig(matrix, dim, count)
        seconds = time.perf_counter() - start
        cosines = np.linalg.svd(reference.T @ vectors, compute_uv=False)
        print(
            json.dumps(
                {
                    "items": n,
                    "solver": f"randomized, {count} iterations",
                    "seconds": round(seconds, 2),
                    "max_relative_singular_value_difference": round(float(np.max(np.abs(found - values) / values)), 4),
                    "subspace_cosine_mean": round(float(cosines.mean()), 4),
                    "subspace_cosine_min": round(float(cosines.min()), 4),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
