"""Ranking metrics against values computed by hand."""

import math

import numpy as np
import pytest
import torch

from genrec.evaluation import ranking_metrics, target_ranks, top_k


def test_metrics_by_hand():
    ranked = np.array([
        [3, 1, 2, 0, 4, 5, 6, 7, 8, 9],     # target 3 at rank 0
        [0, 1, 2, 3, 9, 5, 6, 7, 8, 4],     # target 9 at rank 4
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 11],    # target 11 at rank 9
        [0, 1, 2, -1, -1, -1, -1, -1, -1, -1],  # target 7 not returned
    ])
    targets = np.array([3, 9, 11, 7])
    m = ranking_metrics(ranked, targets, n_items=20)
    assert m["recall@1"] == pytest.approx(1 / 4)
    assert m["recall@5"] == pytest.approx(2 / 4)
    assert m["recall@10"] == pytest.approx(3 / 4)
    assert m["ndcg@5"] == pytest.approx((1 + 1 / math.log2(6)) / 4)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(6) + 1 / math.log2(11)) / 4)
    assert m["coverage@10"] == pytest.approx(11 / 20)  # items 0-9 and 11; empty slots ignored
    assert target_ranks(ranked, targets).tolist() == [0, 4, 9, -1]


def test_invalid_generations_are_misses_and_counted():
    ranked = np.array([[5, -2, 3, -2, -1, -1, -1, -1, -1, -1], [-2] * 10])
    m = ranking_metrics(ranked, np.array([3, 4]), n_items=6)
    assert m["invalid@10"] == pytest.approx(12 / 20)
    assert m["recall@5"] == pytest.approx(1 / 2) and m["ndcg@10"] == pytest.approx(0.5 / 2)
    assert m["coverage@10"] == pytest.approx(2 / 6)


def test_top_k_breaks_ties_by_lower_index():
    scores = torch.tensor([[0.5, 0.9, 0.9, 0.1, 0.9], [1.0, 1.0, 1.0, 1.0, 1.0]])
    assert top_k(scores, 3).tolist() == [[1, 2, 4], [0, 1, 2]]


def test_top_k_equals_a_full_stable_sort_with_many_ties():
    scores = torch.randint(0, 5, (50, 300)).float()
    scores[0] = float("-inf")
    for k in (1, 10, 299, 300):
        expected = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
        assert torch.equal(top_k(scores, k), expected)
