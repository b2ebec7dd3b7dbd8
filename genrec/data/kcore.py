"""k-core filtering: keep the largest set of interactions in which every user has at least
``min_user`` and every item at least ``min_item`` of them (the papers' "5-core" preprocessing).

Removing a rare item can make a user too short, and removing that user can make another item
rare, so the filter peels both sides until nothing changes. The fixed point is unique (the
largest such sub-graph), so the order of peeling does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CoreReport:
    """What the filter removed, and in how many rounds it reached its fixed point."""

    rounds: int
    users_removed: int
    items_removed: int
    interactions_removed: int


def k_core(sequences: list[list[str]], min_user: int, min_item: int) -> tuple[list[tuple[int, np.ndarray]], CoreReport]:
    """Which interactions of each user's item sequence are in the (``min_user``, ``min_item``)-core:
    ``(user's position in sequences, positions kept in its sequence)`` for the users left, in order.
    Runs in O(interactions) per round on flat arrays, so a 10M-interaction file peels in seconds."""
    index: dict[str, int] = {}
    lengths = np.fromiter((len(items) for items in sequences), dtype=np.int64, count=len(sequences))
    items = np.fromiter(
        (index.setdefault(item, len(index)) for seq in sequences for item in seq),
        dtype=np.int64,
        count=int(lengths.sum()),
    )
    users = np.repeat(np.arange(len(sequences)), lengths)
    keep = np.ones(len(items), dtype=bool)
    rounds = 0
    while True:
        item_counts = np.bincount(items[keep], minlength=len(index))
        user_counts = np.bincount(users[keep], minlength=len(sequences))
        drop = keep & ((item_counts[items] < min_item) | (user_counts[users] < min_user))
        if not drop.any():
            break
        keep &= ~drop
        rounds += 1
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    kept = []
    for user in range(len(sequences)):
        positions = np.flatnonzero(keep[bounds[user] : bounds[user + 1]])
        if len(positions):
            kept.append((user, positions))
    report = CoreReport(
        rounds=rounds,
        users_removed=len(sequences) - len(kept),
        items_removed=len(index) - int((np.bincount(items[keep], minlength=len(index)) > 0).sum()),
        interactions_removed=int((~keep).sum()),
    )
    return kept, report
