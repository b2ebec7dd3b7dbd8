"""Semantic-ID quality and build time on real datasets: one JSON line per (dataset, method, collision).

Besides the quantizer's own statistics, how the training interactions spread over the first codes:
``first_code_top10pct_share`` (the share of interactions whose item's first code is among the 10%
most interacted first codes), ``first_code_entropy_bits`` (of that distribution; even use of 256
codes is 8 bits) and ``largest_first_code_items`` (items under the most crowded first code). A
tokenizer that lets popular items crowd one prefix makes the first decoding step decide little.

    python benchmarks/semantic_ids.py --data_dir=../shared/data [--methods=rqkmeans,opq,rqvae,letter] \
        [--datasets=AmazonReviews2018/Scientific,...] [--key=value ...]

Extra --key=value flags are genrec configuration keys applied to every run. Embeddings are cached in
the configured cache_dir, so `embed_s` is the cold cost only on the first run.
"""

from __future__ import annotations

import json
import logging
import sys
import time

import numpy as np

from genrec.config import load_config, parse_flags
from genrec.embeddings import item_embeddings
from genrec.pipeline import load_split
from genrec.semantic_ids import semantic_ids

DEFAULT_DATASETS = (
    "AmazonReviews2018/Scientific,AmazonReviews2018/Instruments,AmazonReviews2014/Beauty,"
    "AmazonReviews2023/Industrial_and_Scientific,MovieLens/ml-100k"
)


def first_code_concentration(codes: np.ndarray, sequences: list[np.ndarray], codebook_size: int) -> dict:
    """How the interactions of ``sequences`` spread over the items' first codes (module docstring)."""
    interactions = np.bincount(np.concatenate(sequences), minlength=len(codes))
    per_code = np.bincount(codes[:, 0], weights=interactions, minlength=codebook_size)
    share = np.sort(per_code)[::-1] / per_code.sum()
    used = share[share > 0]
    return {
        "first_code_top10pct_share": round(float(share[: max(1, codebook_size // 10)].sum()), 4),
        "first_code_entropy_bits": round(float(-(used * np.log2(used)).sum()), 3),
        "largest_first_code_items": int(np.bincount(codes[:, 0]).max()),
    }


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING)
    _, flags = parse_flags(argv)
    datasets = str(flags.pop("datasets", DEFAULT_DATASETS)).split(",")
    methods = flags.pop("methods", "rqkmeans,opq,rqvae,letter")
    methods = methods if isinstance(methods, list) else str(methods).split(",")
    collisions = flags.pop("collisions", "conflict_free,tiger")
    collisions = collisions if isinstance(collisions, list) else str(collisions).split(",")
    for name in datasets:
        dataset, _, category = name.partition("/")
        for method in methods:
            for collision in collisions:
                overrides = {"dataset": dataset, "vq_method": method, "vq_collision": collision, **flags}
                if category:
                    overrides["category"] = category
                config = load_config([], **overrides)
                data, split = load_split(config)
                start = time.perf_counter()
                vectors = item_embeddings(config, data, split)
                embedded = time.perf_counter()
                sids = semantic_ids(config, data, split)
                done = time.perf_counter()
                report = sids.report
                print(
                    json.dumps(
                        {
                            "dataset": data.name,
                            "items": data.n_items,
                            "embedding": vectors.source,
                            "dim": vectors.vectors.shape[1],
                            "method": method,
                            "collision": collision,
                            "codebook_size": config.vq_codebook_size,
                            "levels": config.vq_n_codebooks,
                            "utilisation": [lv["utilisation"] for lv in report["levels"]],
                            "prefix_collision_rate": [lv["collision_rate"] for lv in report["levels"]],
                            "recon_error": [lv["recon_error"] for lv in report["levels"]],
                            "colliding_items": report["colliding_items"],
                            "moved_items": report["moved_items"],
                            "id_length": report["id_length"],
                            "unique": report["unique"],
                            **first_code_concentration(sids.codes, split.train_sequences, config.vq_codebook_size),
                            "embed_s": round(embedded - start, 2),
                            "quantize_s": round(done - embedded, 2),
                        }
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main(sys.argv[1:])
