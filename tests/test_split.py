"""Leave-one-out split on hand-made sequences, checked example by example."""

import numpy as np
import pytest

from genrec.data import build_interactions, leave_one_out


def as_lists(examples):
    return [(int(u), h.tolist(), int(t)) for u, h, t in zip(examples.users, examples.histories, examples.targets)]


def test_leave_one_out_by_hand():
    split = leave_one_out([np.array([10, 11, 12, 13, 14]), np.array([20, 21, 22])], max_item_seq_len=20)
    assert as_lists(split.test) == [(0, [10, 11, 12, 13], 14), (1, [20, 21], 22)]
    assert as_lists(split.valid) == [(0, [10, 11, 12], 13), (1, [20], 21)]
    # every prefix of the training part [10, 11, 12] (resp. [20]): targets 11 and 12; none for user 1
    assert as_lists(split.train) == [(0, [10], 11), (0, [10, 11], 12)]
    assert [s.tolist() for s in split.train_sequences] == [[10, 11, 12], [20]]


def test_histories_keep_most_recent_items():
    split = leave_one_out([np.arange(8)], max_item_seq_len=3)
    assert as_lists(split.test) == [(0, [4, 5, 6], 7)]
    assert as_lists(split.valid) == [(0, [3, 4, 5], 6)]
    assert as_lists(split.train)[-1] == (0, [2, 3, 4], 5)
    assert all(len(h) <= 3 for h in split.train.histories)
    assert len(split.train) == 8 - 3


def test_no_valid_or_test_item_in_training():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 1000, size=rng.integers(3, 30)) + 1000 * u for u in range(50)]
    split = leave_one_out(seqs, max_item_seq_len=5)
    for u, seq in enumerate(seqs):
        mine = split.train.users == u
        assert set(split.train.targets[mine].tolist()) <= set(seq[:-2].tolist())
        assert len(split.train_sequences[u]) == len(seq) - 2


def test_too_short_sequence_is_an_error_in_split():
    with pytest.raises(ValueError, match="at least 3"):
        leave_one_out([np.array([1, 2])], max_item_seq_len=20)


def test_build_interactions_drops_and_counts_short_sequences(caplog):
    data = build_interactions("tiny", [("a", ["x", "y", "z"]), ("b", ["x", "y"]), ("c", ["z", "w", "x", "y"])])
    assert data.user_ids == ["a", "c"]
    assert data.item_ids == ["x", "y", "z", "w"]  # numbered by first appearance
    assert data.dropped == {"users_with_fewer_than_3_items": 1}
    assert "dropped 1" in caplog.text
    assert [s.tolist() for s in data.sequences] == [[0, 1, 2], [2, 3, 0, 1]]
