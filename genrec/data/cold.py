"""Items held out of training, for the cold-start evaluation (``cold_items`` > 0).

A seeded share of the catalogue is removed from it and from every sequence, so no model sees those
items in training, validation or as history. The users whose *last* item (their test target) is a
held-out item become the cold-start test: after training, the held-out items are added to the
trained run the way new items are (:meth:`genrec.run.Run.add_items`), and each such user's warm
history must bring up the new item.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from genrec.data.interactions import MIN_SEQUENCE_LENGTH, Interactions
from genrec.data.split import Examples


@dataclass(frozen=True)
class HeldOut:
    """``warm``: what models train on (held-out items gone, users left with fewer than
    :data:`MIN_SEQUENCE_LENGTH` items dropped); ``cold``: the held-out items' indices in ``full``."""

    full: Interactions
    warm: Interactions
    cold: np.ndarray

    @property
    def cold_ids(self) -> list[str]:
        return [self.full.item_ids[item] for item in self.cold]

    @property
    def cold_text(self) -> list[dict[str, str]]:
        return [self.full.item_text[item] for item in self.cold]

    def cold_test(self, max_item_seq_len: int) -> Examples:
        """The users whose last item is held out and who have warm items before it: each one's warm
        items (oldest first; earlier held-out items left out, as in training) as history, and its
        target's index in the warm catalogue extended by the held-out items in :attr:`cold` order."""
        warm_index = self.warm_index()
        cold_index = {int(item): self.warm.n_items + position for position, item in enumerate(self.cold)}
        users, histories, targets, seen = [], [], [], []
        for user, sequence in enumerate(self.full.sequences):
            target = int(sequence[-1])
            earlier = np.array(
                [warm_index[item] for item in sequence[:-1].tolist() if item in warm_index], dtype=np.int64
            )
            if target in cold_index and len(earlier):
                users.append(user), targets.append(cold_index[target])
                histories.append(earlier[-max_item_seq_len:]), seen.append(earlier)
        return Examples(np.array(users, dtype=np.int64), histories, np.array(targets, dtype=np.int64), seen)

    def warm_index(self) -> dict[int, int]:
        """Full catalogue index -> warm catalogue index, for the items that were kept."""
        kept = np.setdiff1d(np.arange(self.full.n_items), self.cold)
        return {int(item): position for position, item in enumerate(kept)}


def hold_out_items(full: Interactions, share: float, seed: int) -> HeldOut:
    """Hold out ``round(share * n_items)`` items (at least one) drawn with ``seed``."""
    if not 0 < share < 1:
        raise ValueError(f"the held-out share must be between 0 and 1, got {share}")
    count = max(1, round(share * full.n_items))
    cold = np.sort(np.random.default_rng(seed).choice(full.n_items, count, replace=False))
    kept = np.ones(full.n_items, dtype=bool)
    kept[cold] = False
    new_index = np.cumsum(kept) - 1
    users, sequences, times, short = [], [], [], 0
    for position, (user, sequence) in enumerate(zip(full.user_ids, full.sequences)):
        warm = new_index[sequence[kept[sequence]]]
        if len(warm) < MIN_SEQUENCE_LENGTH:
            short += 1
            continue
        users.append(user), sequences.append(warm.astype(np.int64))
        if full.times is not None:
            times.append(full.times[position][kept[sequence]])
    dropped = {
        **full.dropped,
        "cold_items_interactions": int(sum((~kept[s]).sum() for s in full.sequences)),
        "cold_items_short_users": short,
    }
    warm = dataclasses.replace(
        full,
        user_ids=users,
        item_ids=[i for i, k in zip(full.item_ids, kept) if k],
        sequences=sequences,
        item_text=[t for t, k in zip(full.item_text, kept) if k],
        dropped=dropped,
        times=times if full.times is not None else None,
    )
    return HeldOut(full, warm, cold)
