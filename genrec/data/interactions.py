"""What every dataset loader produces: chronological item sequences per user plus item metadata."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from genrec.schema import TEXT_FIELDS

log = logging.getLogger(__name__)

MIN_SEQUENCE_LENGTH = 3  # one training item, one validation target, one test target


@dataclass(frozen=True)
class Interactions:
    """Per-user chronological sequences over a catalogue of items.

    ``item_ids[i]`` is the raw id of item index ``i``; ``sequences[u]`` holds item indices in time
    order; ``item_text[i]`` maps text fields (a subset of :data:`genrec.config.TEXT_FIELDS`) to
    strings, empty when the dataset has no text. ``dropped`` counts what the loader removed, by
    reason, so nothing is lost silently. ``extra`` holds what a loader knows beyond that; its
    ``item_groups`` (name: raw item ids) are items of interest whose targets comparisons report apart.
    ``times[u][k]``, where the files have them, is when ``sequences[u][k]`` happened (seconds):
    what a temporal split cuts on.
    """

    name: str
    user_ids: list[str]
    item_ids: list[str]
    sequences: list[np.ndarray]
    item_text: list[dict[str, str]]
    dropped: dict[str, int] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)
    times: list[np.ndarray] | None = None

    @property
    def n_users(self) -> int:
        return len(self.sequences)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the catalogue and every sequence: what a checkpoint trained on this data records."""
        from genrec.cache import digest, fingerprint_arrays

        parts = [self.name, self.item_ids, fingerprint_arrays(self.sequences)]
        return digest(parts if self.times is None else [*parts, fingerprint_arrays(self.times)])

    @property
    def has_text(self) -> bool:
        return any(any(v.strip() for v in fields.values()) for fields in self.item_text)

    def stats(self) -> dict[str, float | int | str]:
        lengths = np.array([len(s) for s in self.sequences])
        with_text = sum(1 for fields in self.item_text if any(v.strip() for v in fields.values()))
        return {
            "dataset": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "avg_length": round(float(lengths.mean()), 2),
            "min_length": int(lengths.min()),
            "max_length": int(lengths.max()),
            "density": round(self.n_interactions / (self.n_users * self.n_items), 6),
            "items_with_text": with_text,
        } | self.time_range()

    def time_range(self) -> dict[str, str]:
        """The first and last interaction time (UTC, ISO 8601) where the data has times: where a
        temporal split's ``split_valid_time`` / ``split_test_time`` can fall."""
        if self.times is None:
            return {}
        moments = np.concatenate(self.times)
        return {
            f"{name}_time": iso_time(float(when)) for name, when in (("first", moments.min()), ("last", moments.max()))
        }


def iso_time(seconds: float) -> str:
    """``seconds`` since the Unix epoch as an ISO 8601 UTC date-time (to the second)."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def without_duplicates(user: str, items: list[str], policy: str, *where: Any) -> tuple[list[str], int]:
    """A user's chronological items less their duplicate interactions, and how many went; ``where``
    is the ``path``, ``lines`` and ``timestamps`` of :func:`kept_positions`."""
    kept = kept_positions(user, items, policy, *where)
    return [items[position] for position in kept], len(items) - len(kept)


def kept_positions(
    user: str,
    items: list[str],
    policy: str,
    path=None,
    lines: int | list[int] | None = None,
    timestamps: list[float] | None = None,
) -> list[int]:
    """The positions of a user's chronological items that are not duplicate interactions.

    A duplicate is an item right after itself (a doubled record: it would make the target repeat
    the last history item) or, where the format has timestamps, an item seen again at the same
    time. Items bought again later are real repeats and stay. ``policy`` is the ``duplicates``
    setting: ``drop`` (counted and logged by :func:`build_interactions`), ``refuse`` (a
    :class:`DataError` at the duplicate's file and line) or ``keep``."""
    if policy == "keep":
        return list(range(len(items)))
    kept: list[int] = []
    events: set[tuple[str, float]] = set()
    for position, item in enumerate(items):
        stamp = timestamps[position] if timestamps is not None else None
        if (kept and items[kept[-1]] == item) or (item, stamp) in events:
            if policy == "refuse":
                from genrec.errors import DataError

                line = lines[position] if isinstance(lines, list) else lines
                raise DataError(
                    f"user {user}: duplicate interaction with item {item} (duplicates=refuse; "
                    "--duplicates=drop drops them)",
                    path,
                    line,
                )
            continue
        kept.append(position)
        if stamp is not None:
            events.add((item, stamp))
    return kept


def build_interactions(
    name: str,
    user_sequences: list[tuple[str, list[str]]],
    item_text: dict[str, dict[str, str]] | None = None,
    dropped: dict[str, int] | None = None,
    extra: dict[str, object] | None = None,
    source=None,
    times: list[list[float]] | None = None,
) -> Interactions:
    """Index raw ``(user_id, [item_id, ...])`` sequences; ``item_text`` is None when the dataset has
    no metadata file (as opposed to a file that misses some items, which is logged); ``times``, where
    the files have them, holds each sequence's interaction times in the same order.

    Items are numbered in order of first appearance, so the numbering is a deterministic function of
    the input. Sequences shorter than :data:`MIN_SEQUENCE_LENGTH` cannot be split leave-one-out;
    they are dropped, counted and logged (the 5-core datasets of the papers have none). ``source``
    (the interaction file) is named when nothing is left.
    """
    dropped = {reason: count for reason, count in (dropped or {}).items() if count}
    long_enough = [k for k, (_, s) in enumerate(user_sequences) if len(s) >= MIN_SEQUENCE_LENGTH]
    kept = [user_sequences[k] for k in long_enough]
    if len(kept) < len(user_sequences):
        n = len(user_sequences) - len(kept)
        dropped["users_with_fewer_than_3_items"] = dropped.get("users_with_fewer_than_3_items", 0) + n
    for reason, count in dropped.items():
        if count:
            log.warning("%s: dropped %d (%s)", name, count, reason.replace("_", " "))
    if not kept:
        from genrec.errors import DataError

        raise DataError(
            f"{name}: none of its {len(user_sequences)} users has at least {MIN_SEQUENCE_LENGTH} interactions", source
        )
    index: dict[str, int] = {}
    sequences = []
    for _, seq in kept:
        sequences.append(np.fromiter((index.setdefault(i, len(index)) for i in seq), dtype=np.int64, count=len(seq)))
    item_ids = list(index)
    text = item_text or {}
    fields = [{k: v for k, v in text.get(i, {}).items() if k in TEXT_FIELDS and v} for i in item_ids]
    if item_text is not None:
        missing = sum(1 for f in fields if not f)
        if missing:
            log.warning("%s: %d of %d items have no text in the metadata", name, missing, len(item_ids))
    return Interactions(
        name=name,
        user_ids=[u for u, _ in kept],
        item_ids=item_ids,
        sequences=sequences,
        item_text=fields,
        dropped=dropped,
        extra=dict(extra or {}),
        times=None if times is None else [np.asarray(times[k], dtype=np.float64) for k in long_enough],
    )
