"""Run a recommender over (history, target) examples and score its ranked lists."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from genrec.data import Examples
from genrec.distributed import ProcessGroup
from genrec.evaluation.diversity import Catalogue, diversity_metrics
from genrec.evaluation.metrics import KS, ranking_metrics, target_ranks
from genrec.ranking import EMPTY, list_length, search_width
from genrec.runtime import decode_autocast, in_parallel

log = logging.getLogger(__name__)


def evaluation_width(model, num_beams: int, ks: tuple[int, ...] = KS) -> int:
    """The beam width an evaluation with cutoffs ``ks`` decodes at for a configured ``num_beams``:
    :func:`genrec.ranking.search_width` for lists of :func:`genrec.ranking.list_length` items. What
    ``results.json`` records as ``num_beams`` / ``valid_num_beams``."""
    return search_width(model, num_beams, list_length(ks))


def recommend_all(
    model,
    examples: Examples,
    batch_size: int,
    k: int,
    num_beams: int,
    autocast: bool = False,
    exclude_seen: bool = False,
    group: ProcessGroup | None = None,
    workers: int = 1,
) -> np.ndarray:
    """``[n, k]`` ranked items per example; with ``exclude_seen`` never one of the user's earlier items.
    Under data parallelism (``group``) each process ranks every ``world``-th example and all get the
    whole, gathered in order. ``workers`` threads rank batches side by side
    (:func:`genrec.runtime.in_parallel`)."""
    if group is not None and group.active:
        rows = np.arange(group.rank, len(examples), group.world)
        part = (
            recommend_all(
                model, examples.subset(rows), batch_size, k, num_beams, autocast, exclude_seen, workers=workers
            )
            if len(rows)
            else np.zeros((0, k), dtype=np.int64)
        )
        ranked = np.zeros((len(examples), k), dtype=np.int64)
        for other_rows, other_part in group.gather((rows, part)):
            ranked[other_rows] = other_part
        return ranked
    model.eval()
    device_type = model.device.type if autocast else "cpu"  # autocast's device (the context is off otherwise)

    def rank(start: int) -> np.ndarray:
        batch = slice(start, start + batch_size)
        exclude = examples.seen[batch] if exclude_seen else None
        with torch.no_grad(), torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
            return model.recommend(examples.histories[batch], k, num_beams, exclude).cpu().numpy()

    return np.concatenate(in_parallel(rank, range(0, len(examples), batch_size), workers, desc="evaluate"))


def evaluate(
    model,
    examples: Examples,
    catalogue: Catalogue,
    batch_size: int,
    num_beams: int,
    autocast: bool = False,
    exclude_seen: bool = False,
    group: ProcessGroup | None = None,
    ks: tuple[int, ...] = KS,
    workers: int = 1,
) -> dict[str, float]:
    """The metrics of :func:`evaluate_with_ranks`."""
    return evaluate_with_ranks(
        model, examples, catalogue, batch_size, num_beams, autocast, exclude_seen, group, ks, workers
    )[0]


def evaluate_with_ranks(
    model,
    examples: Examples,
    catalogue: Catalogue,
    batch_size: int,
    num_beams: int,
    autocast: bool = False,
    exclude_seen: bool = False,
    group: ProcessGroup | None = None,
    ks: tuple[int, ...] = KS,
    workers: int = 1,
) -> tuple[dict[str, float], np.ndarray]:
    """Full-ranking metrics (:func:`ranking_metrics`), diversity (:func:`diversity_metrics`) and
    users per second. For a beam-search model (``model.returns_beams``) the whole final beam is kept,
    to tell targets the search *pruned* (not in the beam) from those it ranked below 10, and to count
    the distinct items it holds (``beam_items``: a latent-token model spends several beams on one item).
    The beam is widened to :func:`search_width` so that every list can hold ``max(10, *ks)`` items; a
    list shorter than that while the catalogue had more to give is counted (``short_lists``) and
    warned about, never passed silently. With
    ``exclude_seen`` the lists skip every item the user interacted with before (RecBole's protocol);
    a target the user had already seen then always counts as a miss. Also returns each example's
    target rank in its list (``-1``: not retrieved), from which per-user metrics and paired
    comparisons between models follow. ``group``: users are sharded over data-parallel processes
    and the lists gathered, so every process computes the exact metrics. ``ks``: the cutoffs of
    Recall@K / NDCG@K (:func:`genrec.evaluation.metric_names`). ``workers``: threads ranking batches
    side by side (:func:`genrec.runtime.in_parallel`)."""
    beams = model.returns_beams
    shortest = list_length(ks)
    num_beams = evaluation_width(model, num_beams, ks)
    start = time.perf_counter()
    ranked = recommend_all(
        model,
        examples,
        batch_size,
        max(shortest, num_beams) if beams else shortest,
        num_beams,
        autocast,
        exclude_seen,
        group,
        workers,
    )
    seconds = time.perf_counter() - start
    metrics, ranks = list_metrics(ranked, examples, catalogue, beams, exclude_seen, ks)
    if metrics.get("short_lists"):
        log.warning(
            "%.1f%% of the %d users got fewer than %d items from a beam of %d%s: their Recall / NDCG count the "
            "missing slots as misses",
            100 * metrics["short_lists"],
            len(examples),
            shortest,
            num_beams,
            " (exclude_seen removed their earlier items from it)" if exclude_seen else "",
        )
    metrics["users_per_s"] = len(examples) / seconds
    return metrics, ranks


def list_metrics(
    ranked: np.ndarray,
    examples: Examples,
    catalogue: Catalogue,
    beams: bool,
    exclude_seen: bool = False,
    ks: tuple[int, ...] = KS,
) -> tuple[dict[str, float], np.ndarray]:
    """The metrics of :func:`evaluate_with_ranks` (all but the speed) for ranked lists ``[n, >= max(10, *ks)]``
    of :func:`recommend_all`; ``beams``: the lists are whole final beams (their length is checked:
    ``short_lists``)."""
    metrics = ranking_metrics(ranked[:, : max(ks)], examples.targets, catalogue.n_items, ks)
    metrics.update(diversity_metrics(ranked, catalogue))
    ranks = target_ranks(ranked, examples.targets)
    if beams:
        metrics["pruned"] = float((ranks < 0).mean())
        metrics["in_beam_below@10"] = float((ranks >= 10).mean())
        metrics["beam_items"] = float(
            (ranked >= 0).sum(axis=1).mean()
        )  # distinct items the final beam holds (Latte: fewer than beams)
        metrics["short_lists"] = float(short_lists(ranked, examples, catalogue.n_items, max(ks), exclude_seen).mean())
    if exclude_seen:
        metrics["target_seen"] = float(
            np.mean([target in seen for target, seen in zip(examples.targets, examples.seen)])
        )
    return metrics, ranks


def short_lists(ranked: np.ndarray, examples: Examples, n_items: int, k: int, exclude_seen: bool = False) -> np.ndarray:
    """Per example: does its list fill fewer than ``k`` slots although the catalogue held ``k`` items it
    could list (all of them, less the user's earlier items under ``exclude_seen``)? A slot holding an
    invalid generation counts as filled: it is a miss, but the model did answer."""
    filled = (ranked[:, :k] != EMPTY).sum(axis=1)
    listable = np.full(len(ranked), n_items)
    if exclude_seen:
        listable -= np.array([len(np.unique(seen)) for seen in examples.seen], dtype=np.int64)
    return filled < np.minimum(k, listable)


@dataclass(frozen=True)
class Evaluator:
    """How a run is evaluated, read from its settings in one place: the catalogue, the validation and
    test beams (widened by :func:`evaluation_width`), the cutoffs, the seen-item protocol and the
    precision. Training, ``genrec evaluate``, ``compare`` and fine-tuning all evaluate through it, so
    they cannot drift apart (they once did: one left out the cutoffs, so a ``metric_ks`` beyond 10
    changed the search width of some evaluations and not of others)."""

    catalogue: Catalogue
    batch_size: int
    valid_beams: int
    test_beams: int
    exclude_seen: bool = False
    ks: tuple[int, ...] = KS
    autocast: bool = False
    group: ProcessGroup | None = None
    workers: int = 1

    @classmethod
    def from_config(
        cls, config, catalogue: Catalogue, device: torch.device | str | None = None, group: ProcessGroup | None = None
    ) -> Evaluator:
        """The evaluation of a run with settings ``config`` on ``device`` (under bf16 autocast as
        :func:`genrec.runtime.decode_autocast` says, on ``decode_workers`` threads), sharded over
        ``group``'s processes when given."""
        return cls(
            catalogue,
            config.eval_batch_size,
            config.num_beams,
            config.test_num_beams,
            config.exclude_seen,
            tuple(config.metric_ks),
            decode_autocast(config, torch.device(device or "cpu")),
            group,
            config.decode_workers,
        )

    def validate(self, model, examples: Examples) -> dict[str, float]:
        """Metrics at the validation beam (what early stopping and checkpoint selection read)."""
        return self.test(model, examples, self.valid_beams)[0]

    def test(self, model, examples: Examples, num_beams: int | None = None) -> tuple[dict[str, float], np.ndarray]:
        """Metrics and each example's target rank at the test beam (or ``num_beams``)."""
        return evaluate_with_ranks(
            model,
            examples,
            self.catalogue,
            self.batch_size,
            self.test_beams if num_beams is None else num_beams,
            self.autocast,
            self.exclude_seen,
            self.group,
            self.ks,
            self.workers,
        )

    def widths(self, model) -> dict[str, int]:
        """The beams the test and the validation decode at, as ``results.json`` records them."""
        return {
            "num_beams": evaluation_width(model, self.test_beams, self.ks),
            "valid_num_beams": evaluation_width(model, self.valid_beams, self.ks),
        }
