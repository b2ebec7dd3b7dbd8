"""The two splits: leave-one-out, as in the TIGER / Latte / SASRec papers, and a global temporal one.

Leave-one-out: for each user sequence ``s`` of length ``n``, test target ``s[n-1]`` with history
``s[:n-1]``, validation target ``s[n-2]`` with history ``s[:n-2]``, and one training example per
prefix of the training part ``s[:n-2]`` (target ``s[t]`` with history ``s[:t]`` for ``t = 1 .. n-3``).

Temporal (:func:`temporal_split`): two moments ``t1 < t2`` cut the whole log; models train on what
happened before ``t1``, validate on ``[t1, t2)`` and are tested after ``t2``, as a deployed model
is. Every history keeps its most recent ``max_item_seq_len`` items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genrec.data.interactions import MIN_SEQUENCE_LENGTH


@dataclass(frozen=True)
class Examples:
    """(user, history, target) triples; ``histories[k]`` is chronological, oldest first and truncated
    to the model's input length; ``seen[k]`` is everything the user interacted with before the target,
    untruncated (what ``exclude_seen`` keeps out of the recommendations)."""

    users: np.ndarray
    histories: list[np.ndarray]
    targets: np.ndarray
    seen: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def lengths(self) -> np.ndarray:
        """History length of each example (batches group similar lengths)."""
        return np.array([len(h) for h in self.histories])

    def batch(self, rows: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """``(histories, targets)`` of the examples at ``rows``: what a model's ``loss`` reads."""
        return [self.histories[r] for r in rows], self.targets[rows]

    def targets_in(self, rows: np.ndarray) -> int:
        """Training targets among the examples at ``rows`` (one each)."""
        return len(rows)

    def subset(self, rows) -> Examples:
        """The examples at ``rows`` (indices), in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        return Examples(
            self.users[rows], [self.histories[r] for r in rows], self.targets[rows], [self.seen[r] for r in rows]
        )


@dataclass(frozen=True)
class Windows:
    """The training targets of a split as windows of consecutive items, for models that learn every
    next item of a window in one causal pass (``architecture: decoder``). Window ``k`` trains on its
    items from position ``loss_from[k]`` on, each predicted from the window's items before it."""

    items: list[np.ndarray]
    loss_from: np.ndarray

    def __len__(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(w) for w in self.items])

    @property
    def n_targets(self) -> int:
        return int(self.lengths.sum() - self.loss_from.sum())

    def targets_in(self, rows: np.ndarray) -> int:
        """Training targets in the windows at ``rows``."""
        return int(sum(len(self.items[r]) - self.loss_from[r] for r in rows))

    def batch(self, rows: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """``(windows, loss_from)`` of the windows at ``rows``: what a windowed model's ``loss`` reads."""
        return [self.items[r] for r in rows], self.loss_from[rows]


def training_windows(train_sequences: list[np.ndarray], max_item_seq_len: int) -> Windows:
    """Every training target of the leave-one-out split exactly once, in windows of at most
    ``max_item_seq_len + 1`` items.

    A sequence that fits is one window and each target sees its whole past, as in the prefix
    examples. A longer one is cut into overlapping windows: the first trains on its items ``1 ..
    max_item_seq_len``, each later one starts ``max_item_seq_len + 1 - c`` items further on
    (``c = ceil(max_item_seq_len / 2)``) and trains on its items from ``c`` on, so every target sees
    between ``c`` and ``max_item_seq_len`` items of history where a prefix example sees exactly
    ``max_item_seq_len``.
    """
    if max_item_seq_len < 1:
        raise ValueError("max_item_seq_len must be >= 1")
    context = (max_item_seq_len + 1) // 2
    stride = max_item_seq_len + 1 - context
    items, loss_from = [], []
    for sequence in train_sequences:
        if len(sequence) < 2:
            continue
        items.append(sequence[: max_item_seq_len + 1])
        loss_from.append(1)
        start = stride
        while start + context < len(sequence):
            items.append(sequence[start : start + max_item_seq_len + 1])
            loss_from.append(context)
            start += stride
    return Windows(items, np.array(loss_from, dtype=np.int64))


@dataclass(frozen=True)
class Split:
    """Training examples, one validation and one test example per evaluated user, and each user's
    training part (what windows, collaborative embeddings and cold-start statistics read)."""

    train: Examples
    valid: Examples
    test: Examples
    train_sequences: list[np.ndarray]  # the training part of each user's sequence (no valid/test items)


def leave_one_out(sequences: list[np.ndarray], max_item_seq_len: int) -> Split:
    if max_item_seq_len < 1:
        raise ValueError("max_item_seq_len must be >= 1")
    train_users, train_hist, train_targets, train_seen = [], [], [], []
    valid_hist, valid_targets, test_hist, test_targets = [], [], [], []
    train_sequences = []
    for user, seq in enumerate(sequences):
        n = len(seq)
        if n < MIN_SEQUENCE_LENGTH:
            raise ValueError(f"user {user} has {n} items; leave-one-out needs at least {MIN_SEQUENCE_LENGTH}")
        train_sequences.append(seq[: n - 2])
        for t in range(1, n - 2):
            train_users.append(user)
            train_hist.append(seq[max(0, t - max_item_seq_len) : t])
            train_targets.append(seq[t])
            train_seen.append(seq[:t])
        valid_hist.append(seq[max(0, n - 2 - max_item_seq_len) : n - 2])
        valid_targets.append(seq[n - 2])
        test_hist.append(seq[max(0, n - 1 - max_item_seq_len) : n - 1])
        test_targets.append(seq[n - 1])
    users = np.arange(len(sequences), dtype=np.int64)
    return Split(
        train=Examples(
            np.array(train_users, dtype=np.int64), train_hist, np.array(train_targets, dtype=np.int64), train_seen
        ),
        valid=Examples(
            users, valid_hist, np.array(valid_targets, dtype=np.int64), [seq[: len(seq) - 2] for seq in sequences]
        ),
        test=Examples(
            users.copy(), test_hist, np.array(test_targets, dtype=np.int64), [seq[: len(seq) - 1] for seq in sequences]
        ),
        train_sequences=train_sequences,
    )


def first_at_or_after(times: np.ndarray, moment: float) -> int:
    """The position of a user's first interaction at or after ``moment`` (``len`` if none)."""
    return int(np.searchsorted(times, moment, side="left"))


def evaluation_examples(
    sequences: list[np.ndarray], times: list[np.ndarray], start: float, end: float, max_item_seq_len: int
) -> Examples:
    """For each user with an interaction in ``[start, end)`` and one before it: the first such
    interaction as target, everything before it as history (so a test history carries the user's
    validation-period interactions across, as it would in production)."""
    users, histories, targets, seen = [], [], [], []
    for user, (seq, when) in enumerate(zip(sequences, times)):
        position = first_at_or_after(when, start)
        if 0 < position < len(seq) and when[position] < end:
            users.append(user)
            histories.append(seq[max(0, position - max_item_seq_len) : position])
            targets.append(seq[position])
            seen.append(seq[:position])
    return Examples(np.array(users, dtype=np.int64), histories, np.array(targets, dtype=np.int64), seen)


def temporal_split(
    sequences: list[np.ndarray], times: list[np.ndarray], valid_time: float, test_time: float, max_item_seq_len: int
) -> Split:
    """Train on every interaction before ``valid_time``, validate on each user's first interaction
    in ``[valid_time, test_time)``, test on each user's first at or after ``test_time``.

    A user is evaluated in a period only with some history before it (a model of histories has
    nothing to say to a user it has never seen); training examples are the prefixes of the
    training part, as in leave-one-out. ``times[u]`` must be sorted, as the loaders order them.
    """
    if max_item_seq_len < 1:
        raise ValueError("max_item_seq_len must be >= 1")
    if not valid_time < test_time:
        raise ValueError(f"the validation time {valid_time} must come before the test time {test_time}")
    train_users, train_hist, train_targets, train_seen, train_sequences = [], [], [], [], []
    for user, (seq, when) in enumerate(zip(sequences, times)):
        part = seq[: first_at_or_after(when, valid_time)]
        train_sequences.append(part)
        for t in range(1, len(part)):
            train_users.append(user)
            train_hist.append(part[max(0, t - max_item_seq_len) : t])
            train_targets.append(part[t])
            train_seen.append(part[:t])
    return Split(
        train=Examples(
            np.array(train_users, dtype=np.int64), train_hist, np.array(train_targets, dtype=np.int64), train_seen
        ),
        valid=evaluation_examples(sequences, times, valid_time, test_time, max_item_seq_len),
        test=evaluation_examples(sequences, times, test_time, np.inf, max_item_seq_len),
        train_sequences=train_sequences,
    )
