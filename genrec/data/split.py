"""Leave-one-out split, as in the TIGER / Latte / SASRec papers.

For each user sequence ``s`` of length ``n``: test target ``s[n-1]`` with history ``s[:n-1]``,
validation target ``s[n-2]`` with history ``s[:n-2]``, and one training example per prefix of the
training part ``s[:n-2]`` (target ``s[t]`` with history ``s[:t]`` for ``t = 1 .. n-3``). Every
history keeps its most recent ``max_item_seq_len`` items.
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

    def subset(self, rows) -> "Examples":
        """The examples at ``rows`` (indices), in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        return Examples(self.users[rows], [self.histories[r] for r in rows], self.targets[rows], [self.seen[r] for r in rows])


@dataclass(frozen=True)
class LeaveOneOutSplit:
    train: Examples
    valid: Examples
    test: Examples
    train_sequences: list[np.ndarray]  # the training part of each user's sequence (no valid/test items)


def leave_one_out(sequences: list[np.ndarray], max_item_seq_len: int) -> LeaveOneOutSplit:
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
    return LeaveOneOutSplit(
        train=Examples(np.array(train_users, dtype=np.int64), train_hist, np.array(train_targets, dtype=np.int64), train_seen),
        valid=Examples(users, valid_hist, np.array(valid_targets, dtype=np.int64), [seq[: len(seq) - 2] for seq in sequences]),
        test=Examples(users.copy(), test_hist, np.array(test_targets, dtype=np.int64), [seq[: len(seq) - 1] for seq in sequences]),
        train_sequences=train_sequences,
    )
