"""A finished run, loaded to use: ``run = genrec.load_run("runs/<run>")`` then
``run.recommend([["B001", "B002"]], k=10)`` for raw item ids in, raw item ids and scores out.

The run is loaded from its own ``config.yaml`` and ``best.pt``, with the checkpoint's identity checked
against the data and semantic IDs it is loaded with (:func:`genrec.pipeline.load_trained`), so a
changed dataset or ID table is refused rather than silently mis-indexed.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from genrec.config import load_config
from genrec.data import Interactions, Split
from genrec.decoding.diversity import Diversity, rerank
from genrec.errors import ConfigError, GenrecError
from genrec.ranking import search_width
from genrec.run_folder import BEST, CONFIG, finished_run
from genrec.runtime import decode_autocast, in_parallel
from genrec.schema import TEXT_FIELDS
from genrec.semantic_ids import SemanticIDs
from genrec.semantic_ids.frozen import FrozenQuantizer


class Run:
    """A trained run: its resolved ``config``, the ``model`` (best checkpoint, eval mode, on the
    configured device), the data it was trained on (``interactions``, ``split``) and the items'
    semantic IDs."""

    def __init__(self, directory: Path, config: Any, model: torch.nn.Module, interactions: Interactions, split: Split):
        self.directory, self.config, self.model = directory, config, model.eval()
        self.interactions, self.split = interactions, split
        # The catalogue as trained: new items are embedded and quantized against it. add_items grows
        # self.interactions; built from the grown one, every later addition would miss the caches, embed
        # the whole catalogue again and refit its PCA and quantizer, which are not the model's.
        self.trained_interactions = interactions
        self.available = np.ones(interactions.n_items, dtype=bool)  # what remove() took out: never recommended

    @property
    def label(self) -> str:
        """The model, with its backbone when it is not the papers' T5."""
        architecture = getattr(self.config, "architecture", "t5")
        return self.config.model if architecture == "t5" else f"{self.config.model} ({architecture})"

    @cached_property
    def semantic_ids(self) -> SemanticIDs:
        """The model's own; for an item-ID model, those its configuration would build (cached)."""
        from genrec.semantic_ids import semantic_ids

        return self.model.semantic_ids or semantic_ids(self.config, self.interactions, self.split)

    @cached_property
    def item_index(self) -> dict[str, int]:
        return {item: index for index, item in enumerate(self.interactions.item_ids)}

    def item_indices(
        self, histories: Sequence[Sequence[str]], on_unknown: Literal["error", "skip"] = "error"
    ) -> list[np.ndarray]:
        """Each history's item indices; ids not in the catalogue are an error naming them, or skipped."""
        unknown = list(dict.fromkeys(item for history in histories for item in history if item not in self.item_index))
        if unknown and on_unknown == "error":
            shown = ", ".join(map(repr, unknown[:10])) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
            raise GenrecError(
                f"{len(unknown)} item id(s) not in the catalogue of {self.interactions.name}: {shown} "
                "(on_unknown='skip' leaves them out)"
            )
        return [
            np.array([self.item_index[item] for item in history if item in self.item_index], dtype=np.int64)
            for history in histories
        ]

    @cached_property
    def item_categories(self) -> list[frozenset[str]]:
        """Each item's category path (every level), from its comma-separated ``categories`` text."""
        return [
            frozenset(part.strip() for part in text.get("categories", "").split(",") if part.strip())
            for text in self.interactions.item_text
        ]

    def remove(self, items: Sequence[str]) -> None:
        """Never recommend these items again (out of stock), from the next request on; their
        interactions stay usable as history."""
        self.available[self.item_indices([items])[0]] = False

    def restore(self, items: Sequence[str]) -> None:
        """Make removed items recommendable again."""
        self.available[self.item_indices([items])[0]] = True

    def allowed_items(
        self, allow: Sequence[str] | None = None, deny: Sequence[str] | None = None, category: str | None = None
    ) -> np.ndarray:
        """``[n_items]`` booleans: available items, restricted to ``allow`` and to ``category`` (any
        level of an item's category path), without ``deny``. A category no item has is an error
        naming the nearest ones, and so is a restriction that leaves no item: an empty list would
        read as "the model found nothing" when the request asked for nothing."""
        allowed = self.available.copy()
        if allow is not None:
            only = np.zeros_like(allowed)
            only[self.item_indices([allow])[0]] = True
            allowed &= only
        if deny is not None:
            allowed[self.item_indices([deny])[0]] = False
        if category is not None:
            in_category = np.array([category in path for path in self.item_categories], dtype=bool)
            if not in_category.any():
                names = sorted(set().union(*self.item_categories))
                near = difflib.get_close_matches(category, names, n=5, cutoff=0.5)
                raise GenrecError(
                    f"no item of {self.interactions.name} is in category {category!r}"
                    + (f"; nearest: {', '.join(map(repr, near))}" if near else f" ({len(names)} categories)")
                )
            allowed &= in_category
        if not allowed.any():
            asked = [
                name for name, value in (("allow", allow), ("deny", deny), ("category", category)) if value is not None
            ]
            raise GenrecError(
                "no item is left to recommend: "
                + (
                    f"{' + '.join(asked)} together with the removed items exclude every item"
                    if asked
                    else "every item is removed"
                )
            )
        return allowed

    def add_items(self, items: Sequence[dict[str, str]]) -> list[tuple[str, tuple[int, ...]]]:
        """Add items to the catalogue without retraining (cold start): each ``{"id": ..., "title": ...,
        "categories": ..., ...}`` is embedded as the catalogue was, quantized by the run's trained
        quantizer, made unique against the existing IDs by the run's collision rule, and is
        recommendable from the next request on. Returns each new item's id and semantic ID. Models
        that read items through their semantic IDs only (TIGER, PSID, Latte generate it; SimGR and
        ParallelSID score it from its tokens): an item-ID model has no parameters for an item it
        never saw."""
        import dataclasses

        from genrec.embeddings import unit_rows
        from genrec.embeddings.text import item_sentences
        from genrec.semantic_ids.frozen import new_ids

        if not self.model.adds_items:
            raise ConfigError(
                f"{self.config.model} cannot recommend items it was not trained on: adding items works "
                "for the models whose items are their semantic IDs (TIGER, PSID, Latte, SimGR, ParallelSID)"
            )
        ids = [str(item.get("id", "")) for item in items]
        clashes = [item for item in ids if not item or item in self.item_index]
        if clashes or len(set(ids)) != len(ids):
            raise GenrecError(f"new items need new, distinct, non-empty ids; these are not: {clashes or ids}")
        unreadable = [item for item in ids if item != item.strip() or not item.isprintable()]
        if unreadable:  # could not be written to an items file and read back, nor typed in a URL
            raise GenrecError(f"item ids must be printable without surrounding spaces: {unreadable[:5]}")
        unknown = sorted({field for item in items for field in item} - {"id", *TEXT_FIELDS})
        if unknown:
            raise GenrecError(
                f"unknown item field(s) {', '.join(unknown)}: an item holds id and {', '.join(TEXT_FIELDS)}"
            )
        texts = [{field: str(value) for field, value in item.items() if field != "id"} for item in items]
        fields = list(self.config.sent_emb_fields)
        blank = [item for item, sentence in zip(ids, item_sentences(texts, fields, 1)) if not sentence]
        if blank:  # empty text embeds to one arbitrary vector: every such item would get a meaningless ID
            raise GenrecError(
                f"{len(blank)} new item(s) have no text in {', '.join(fields)} (the fields the catalogue's semantic "
                f"IDs were built from): {blank[:5]}"
            )
        vectors = self.new_item_encoder(texts)
        raw, distances = self.quantizer.assign(vectors)
        order = list(self.config.vq_level_order or range(self.semantic_ids.n_levels))
        back = np.argsort(order)  # the model's levels -> the quantizer's
        existing = self.model.semantic_ids.codes[:, back]
        sizes = [self.model.semantic_ids.level_sizes[level] for level in back]
        codes = new_ids(raw, distances, existing, self.config.vq_collision, sizes, self.config.vq_codebook_size)[
            :, order
        ]
        # The catalogue's content vectors (cached with its IDs), extended by the new items' own: rebuilding
        # them over the grown catalogue would embed every item again and refit a PCA.
        self.content_vectors = torch.cat([self.content_vectors, torch.as_tensor(unit_rows(vectors))])
        self.model.add_items(codes, texts)
        self.interactions = dataclasses.replace(
            self.interactions,
            item_ids=[*self.interactions.item_ids, *ids],
            item_text=[*self.interactions.item_text, *texts],
        )
        self.available = np.concatenate([self.available, np.ones(len(ids), dtype=bool)])
        for stale in ("item_index", "item_categories", "semantic_ids"):
            self.__dict__.pop(stale, None)
        return [(item, tuple(int(c) for c in code)) for item, code in zip(ids, codes)]

    @cached_property
    def new_item_encoder(self) -> Callable[[list[dict[str, str]]], np.ndarray]:
        """Embeds new items as the trained catalogue's were (:func:`genrec.embeddings.new_item_encoder`)."""
        from genrec.embeddings import new_item_encoder

        return new_item_encoder(self.config, self.trained_interactions)

    @cached_property
    def quantizer(self) -> FrozenQuantizer:
        """The quantizer that gave the trained catalogue its IDs (:func:`genrec.semantic_ids.frozen_quantizer`)."""
        from genrec.semantic_ids import frozen_quantizer

        return frozen_quantizer(self.config, self.trained_interactions, self.split)

    @cached_property
    def content_vectors(self) -> torch.Tensor:
        """``[n_items, d]`` unit-norm content vectors: those the semantic IDs were built from (the item
        text's embedding for text IDs). MMR compares items with them."""
        from genrec.embeddings import item_embeddings, unit_rows

        return torch.as_tensor(unit_rows(item_embeddings(self.config, self.trained_interactions, self.split).vectors))

    @torch.no_grad()
    def rank(
        self,
        histories: Sequence[np.ndarray],
        k: int,
        num_beams: int | None = None,
        exclude: Sequence[np.ndarray] | None = None,
        allowed: np.ndarray | None = None,
        diversity: Diversity | None = None,
        batch_size: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`recommend` on item indices: ``([n, k] items, [n, k] scores)``, ``EMPTY`` (``-inf``)
        in unfilled slots; ``exclude[b]`` are never listed for history ``b``; ``allowed`` (``[n_items]``
        booleans) restricts every list."""
        beams = self.model.returns_beams
        diversity = diversity or Diversity()
        if diversity.groups > 1 and not beams:
            raise ConfigError(
                f"diverse beam search (groups={diversity.groups}) needs a beam model; {self.config.model} "
                "ranks every item (use prefix_cap or mmr)"
            )
        width = search_width(self.model, max(k, num_beams or self.config.test_num_beams), k)
        if beams and diversity.groups > width:
            raise ConfigError(f"diversity groups ({diversity.groups}) cannot exceed the beam width ({width})")
        candidates = width if diversity.reranks else k
        search = {"groups": diversity.groups, "penalty": diversity.penalty} if diversity.groups > 1 else {}
        restricted = None if allowed is None or allowed.all() else torch.as_tensor(allowed)
        codes = torch.as_tensor(self.semantic_ids.codes) if diversity.prefix_cap is not None else None
        vectors = self.content_vectors if diversity.mmr is not None else None
        step = batch_size or self.config.eval_batch_size
        device = self.model.device
        autocast = decode_autocast(self.config, device)

        def rank_batch(start: int) -> tuple[np.ndarray, np.ndarray]:
            batch = list(histories[start : start + step])
            inputs = [history[-self.config.max_item_seq_len :] for history in batch]
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                ranked, ranked_scores = self.model.recommend_scored(
                    inputs,
                    candidates,
                    width,
                    None if exclude is None else list(exclude[start : start + step]),
                    None if restricted is None else restricted.expand(len(batch), -1),
                    **search,
                )
            ranked, ranked_scores = ranked.cpu(), ranked_scores.float().cpu()
            if diversity.reranks:
                ranked, ranked_scores = rerank(ranked, ranked_scores, diversity, k, codes, vectors)
            return ranked.numpy(), ranked_scores.numpy()

        parts = in_parallel(rank_batch, range(0, len(histories), step), self.config.decode_workers)
        return np.concatenate([part[0] for part in parts]), np.concatenate([part[1] for part in parts])

    def recommend(
        self,
        histories: Sequence[Sequence[str]],
        k: int = 10,
        exclude_seen: bool = False,
        num_beams: int | None = None,
        on_unknown: Literal["error", "skip"] = "error",
        batch_size: int | None = None,
        allow: Sequence[str] | None = None,
        deny: Sequence[str] | None = None,
        category: str | None = None,
        diversity: Diversity | None = None,
    ) -> list[list[tuple[str, float]]]:
        """For each history (raw item ids, oldest first): up to ``k`` ``(item id, score)`` pairs, best
        first. Scores are the model's: log-probabilities for generative models (Latte: aggregated
        over latent tokens), similarity logits for full-ranking ones. Histories keep their most recent
        ``max_item_seq_len`` items as model input; ``exclude_seen`` never recommends an item of the
        whole history. Beam models search ``num_beams`` wide (default: the run's ``test_num_beams``),
        widened to hold ``k`` items (Latte: ``k`` per latent token, :func:`genrec.ranking.search_width`);
        they return fewer than ``k`` only where ``exclude_seen`` removes items from the final beam or the
        restrictions leave fewer. ``allow`` / ``deny`` (raw ids) and
        ``category`` restrict every list, as do :meth:`remove`'s items: beam models search only the
        part of the ID tree that leads to allowed items (no beam is spent on the rest), full-ranking
        models rank only those items. ``diversity`` spreads the list over the catalogue
        (:class:`genrec.decoding.diversity.Diversity`: diverse beam search, a cap per ID prefix, MMR);
        its re-rankers choose among ``num_beams`` candidates."""
        if on_unknown not in ("error", "skip"):
            raise ConfigError(f"on_unknown must be 'error' or 'skip', got {on_unknown!r}")
        if isinstance(histories, str) or any(isinstance(history, str) for history in histories):
            raise GenrecError(
                "histories is a list of histories, each a list of item ids: recommend([['i1', 'i2']]); "
                "a string would be read one character per item"
            )
        if not len(histories):
            raise GenrecError("no histories to recommend for: pass a list of histories, each a list of item ids")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be an integer >= 1, got {k!r}")
        indices = self.item_indices(histories, on_unknown)
        empty = [row for row, history in enumerate(indices) if not len(history)]
        if empty:
            raise GenrecError(
                f"{len(empty)} history(ies) hold no known item (first: #{empty[0]}); nothing to recommend from"
            )
        items, scores = self.rank(
            indices,
            k,
            num_beams,
            indices if exclude_seen else None,
            self.allowed_items(allow, deny, category),
            diversity,
            batch_size,
        )
        return [
            [
                (self.interactions.item_ids[item], float(score))
                for item, score in zip(row_items, row_scores)
                if item >= 0
            ]
            for row_items, row_scores in zip(items.tolist(), scores.tolist())
        ]


def load_run(directory: str | Path, **overrides: Any) -> Run:
    """Load a finished run folder (one ``genrec train`` or ``genrec compare`` wrote), or its
    self-contained export (``genrec export``: no dataset files or cache needed). ``overrides``
    may change where data and caches are (``data_dir``, ``cache_dir``), the ``device``, and how it is
    evaluated (``test_num_beams``, ``eval_batch_size``, Latte's ``aggregation_method``), never what
    it learned."""
    from genrec.export import is_export, load_export
    from genrec.pipeline import load_trained

    directory = Path(directory)
    if is_export(directory):
        return Run(directory, *load_export(directory, overrides))
    finished_run(directory)
    config = load_config([f"--config={directory / CONFIG}"], **overrides)
    model, interactions, split = load_trained(config, directory / BEST)
    return Run(directory, config, model, interactions, split)
