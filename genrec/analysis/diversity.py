"""What a more diverse list costs: a finished run's test lists under diversity settings
(:class:`genrec.decoding.diversity.Diversity`), each scored for accuracy (NDCG@10, Recall@10) and
spread (coverage@10, category entropy@10, distinct first ID tokens in the top 10).

Re-rankers choose among the same candidates, so the candidate lists of each beam width are decoded
once and every prefix-cap / MMR setting re-ranks them; a diverse beam search is a search of its own.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from pydantic import ValidationError

from genrec.decoding.diversity import Diversity, rerank
from genrec.errors import ConfigError
from genrec.evaluation import Catalogue, list_metrics
from genrec.ranking import search_width

DEFAULT_SETTINGS = (
    "num_beams=10; groups=2,num_beams=10; groups=5,num_beams=10; groups=10,num_beams=10; "
    "groups=10,penalty=5,num_beams=10; prefix_cap=3; prefix_cap=2; prefix_cap=1; prefix_cap=1,prefix_length=2; "
    "mmr=0.9; mmr=0.7; mmr=0.5; mmr=0.3"
)


def parse_settings(text: str) -> list[tuple[Diversity, int | None]]:
    """``"groups=4,num_beams=10; prefix_cap=1; mmr=0.5"``: settings separated by ``;``, each the
    :class:`Diversity` fields it changes and optionally ``num_beams`` (default: the run's test beam);
    an empty setting is the plain list. A bad key or value is an error naming it."""
    settings = []
    for part in text.split(";"):
        fields: dict[str, str] = {}
        for entry in filter(None, (piece.strip() for piece in part.split(","))):
            key, eq, value = entry.partition("=")
            if not eq:
                raise ConfigError(f"diversity setting {part.strip()!r}: expected key=value, got {entry!r}")
            fields[key.strip()] = value.strip()
        num_beams = fields.pop("num_beams", None)
        try:
            diversity = Diversity(**fields)
            width = None if num_beams is None else int(num_beams)
        except ValidationError as exc:
            error = exc.errors()[0]
            raise ConfigError(
                f"diversity setting {part.strip()!r}: {'.'.join(map(str, error['loc']))}: {error['msg']}"
            ) from None
        except ValueError:
            raise ConfigError(
                f"diversity setting {part.strip()!r}: num_beams must be an integer, got {num_beams!r}"
            ) from None
        settings.append((diversity, width))
    return settings


def first_tokens_per_list(ranked: np.ndarray, codes: np.ndarray, k: int = 10) -> float:
    """Mean number of distinct first semantic-ID tokens among a list's top ``k`` items."""
    return float(np.mean([len({codes[item, 0] for item in row[:k] if item >= 0}) for row in ranked]))


def diversity_sweep(
    run, settings: list[tuple[Diversity, int | None]], users: int | None = None, seed: int = 0
) -> list[dict]:
    """One row per setting for a finished run (:class:`genrec.run.Run`) on its test users (a seeded
    sample of ``users`` of them when given)."""
    config, test = run.config, run.split.test
    picked = (
        np.arange(len(test))
        if users is None or users >= len(test)
        else np.sort(np.random.default_rng(seed).choice(len(test), users, replace=False))
    )
    examples = test.subset(picked)
    exclude = examples.seen if config.exclude_seen else None
    catalogue = Catalogue.of(run.interactions, config.category_level)
    codes = run.semantic_ids.codes
    candidates: dict[int, tuple[torch.Tensor, torch.Tensor, float]] = {}
    rows = []
    for diversity, num_beams in settings:
        width = max(10, num_beams or config.test_num_beams)
        start = time.perf_counter()
        if diversity.groups > 1:
            ranked = run.rank(examples.histories, 10, width, exclude, diversity=diversity)[0]
            seconds = time.perf_counter() - start
        else:
            if width not in candidates:
                items, scores = run.rank(examples.histories, width, width, exclude)
                candidates[width] = torch.as_tensor(items), torch.as_tensor(scores), time.perf_counter() - start
            items, scores, decode_seconds = candidates[width]
            start = time.perf_counter()
            ranked = (
                rerank(items, scores, diversity, 10, torch.as_tensor(codes), run.content_vectors)[0].numpy()
                if diversity.reranks
                else items[:, :10].numpy()
            )
            seconds = decode_seconds + time.perf_counter() - start
        metrics, _ = list_metrics(ranked, examples, catalogue, beams=False, exclude_seen=config.exclude_seen)
        rows.append(
            {
                "run": run.directory.name,
                "label": run.label,
                "model": config.model,
                "seed": config.seed,
                "setting": diversity.label() + (f";beam={width}" if num_beams else ""),
                "lever": lever(diversity),
                "beam": search_width(run.model, width, 10 if diversity.groups > 1 else width),  # as decoded
                "users": len(examples),
                "s_per_1k_users": round(1000 * seconds / len(examples), 4),
                **{
                    key: round(metrics[key], 5)
                    for key in ("recall@10", "ndcg@10", "coverage@10", "entropy@10")
                    if key in metrics
                },
                "category_entropy@10": round(metrics["category_entropy@10"], 5)
                if "category_entropy@10" in metrics
                else None,
                "first_tokens@10": round(first_tokens_per_list(ranked, codes), 3),
            }
        )
    return rows


def lever(diversity: Diversity) -> str:
    """Which lever a setting pulls, for grouping a figure's points."""
    if diversity.groups > 1:
        return "diverse beam search"
    if diversity.prefix_cap is not None:
        return "prefix cap" if diversity.mmr is None else "prefix cap + MMR"
    return "MMR" if diversity.mmr is not None else "plain"
