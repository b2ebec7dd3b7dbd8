"""Semantic-ID quality and build time on real datasets: one JSON line per (dataset, method, collision).

    python benchmarks/semantic_ids.py --data_dir=../shared/data [--methods=rqkmeans,opq,rqvae] \
        [--datasets=AmazonReviews2018/Scientific,...] [--key=value ...]

Extra --key=value flags are genrec configuration keys applied to every run. Embeddings are cached in
the configured cache_dir, so `embed_s` is the cold cost only on the first run.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from genrec.config import load_config, parse_flags
from genrec.embeddings import item_embeddings
from genrec.pipeline import load_split
from genrec.semantic_ids import semantic_ids

DEFAULT_DATASETS = (
    "AmazonReviews2018/Scientific,AmazonReviews2018/Instruments,AmazonReviews2014/Beauty,"
    "AmazonReviews2023/Industrial_and_Scientific,MovieLens/ml-100k"
)


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING)
    _, flags = parse_flags(argv)
    datasets = str(flags.pop("datasets", DEFAULT_DATASETS)).split(",")
    methods = flags.pop("methods", "rqkmeans,opq,rqvae")
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
                            "embed_s": round(embedded - start, 2),
                            "quantize_s": round(done - embedded, 2),
                        }
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main(sys.argv[1:])
