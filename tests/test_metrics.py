"""Ranking metrics against values computed by hand."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from genrec.data import Examples
from genrec.evaluation import Catalogue, diversity_metrics, evaluate, ranking_metrics, target_ranks, top_k


def test_metrics_by_hand():
    ranked = np.array(
        [
            [3, 1, 2, 0, 4, 5, 6, 7, 8, 9],  # target 3 at rank 0
            [0, 1, 2, 3, 9, 5, 6, 7, 8, 4],  # target 9 at rank 4
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 11],  # target 11 at rank 9
            [0, 1, 2, -1, -1, -1, -1, -1, -1, -1],  # target 7 not returned
        ]
    )
    targets = np.array([3, 9, 11, 7])
    m = ranking_metrics(ranked, targets, n_items=20)
    assert m["recall@1"] == pytest.approx(1 / 4)
    assert m["recall@5"] == pytest.approx(2 / 4)
    assert m["recall@10"] == pytest.approx(3 / 4)
    assert m["ndcg@5"] == pytest.approx((1 + 1 / math.log2(6)) / 4)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(6) + 1 / math.log2(11)) / 4)
    assert m["mrr@5"] == pytest.approx((1 + 1 / 5) / 4)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 5 + 1 / 10) / 4)
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


def test_top_k_equals_a_full_stable_sort_where_only_some_rows_tie_at_the_cut():
    """The fast path (``topk``'s set) serves rows without a tie across the k-th slot; rows with one,
    planted here at the boundary, above it, and among -inf (excluded items), are chosen by index."""
    generator = torch.Generator().manual_seed(3)
    scores = torch.randn(40, 2000, generator=generator)
    for row in range(0, 40, 4):  # the 10th best score copied onto later and earlier items
        tenth = scores[row].sort(descending=True).values[9]
        scores[row, torch.randint(0, 2000, (5,), generator=generator)] = tenth
    scores[1, :] = float("-inf")
    scores[1, 7] = 2.0
    scores[2, :6] = 9.0  # a tie wholly inside the top 10
    for k in (1, 10, 11, 2000):
        expected = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
        assert torch.equal(top_k(scores, k), expected)


def test_diversity_by_hand():
    ranked = np.array([[0, 1, -1, 3], [0, 2, -2, 3]])  # the 4th column is beyond k=3
    metrics = diversity_metrics(ranked, Catalogue(4, np.array([0, 0, 1, -1])), k=3)
    assert metrics["entropy@3"] == pytest.approx(1.5)  # items 0, 1, 0, 2: p = 1/2, 1/4, 1/4
    assert metrics["category_entropy@3"] == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))
    assert "category_entropy@3" not in diversity_metrics(ranked, Catalogue(4), k=3)


def test_catalogue_categories_from_the_category_path():
    data = SimpleNamespace(
        n_items=4,
        item_text=[{"categories": "Lab, Tools, Drills"}, {"categories": "Lab"}, {}, {"categories": "Office, Tools"}],
    )
    assert Catalogue.of(data, 1).categories.tolist() == [0, 0, -1, 1]
    assert Catalogue.of(data, 2).categories.tolist() == [0, -1, -1, 0]  # "Tools" under both tops is one category
    assert Catalogue.of(data, 4).categories is None and Catalogue.of(data, 0).categories is None


class FixedBeam:
    """A 'beam-search model' returning a fixed 15-item beam for every user."""

    returns_beams = True
    beams_per_item, max_beams = 1, 50

    def eval(self):
        return self

    def recommend(self, histories, k, num_beams, exclude=None):
        assert k == num_beams == 15 and exclude is None
        return torch.arange(15).expand(len(histories), -1)


def test_evaluate_separates_pruned_targets_from_those_ranked_below_10():
    examples = Examples(np.arange(4), [np.array([1])] * 4, np.array([0, 12, 40, 3]), [np.array([1])] * 4)
    metrics = evaluate(FixedBeam(), examples, Catalogue(50), batch_size=2, num_beams=15)
    assert metrics["recall@10"] == 0.5 and metrics["pruned"] == 0.25 and metrics["in_beam_below@10"] == 0.25
    assert metrics["coverage@10"] == pytest.approx(10 / 50) and metrics["beam_items"] == 15


def test_paired_bootstrap_against_a_direct_computation():
    from genrec.evaluation import paired_bootstrap

    rng = np.random.default_rng(0)
    a, b = rng.random(500), rng.random(500)
    result = paired_bootstrap(a, b, resamples=300, seed=7)
    draws = np.random.default_rng(7).integers(0, 500, size=(300, 500))  # the same draws, all at once
    means = (a - b)[draws].mean(axis=1)
    assert result["mean"] == pytest.approx((a - b).mean())
    assert (result["low"], result["high"]) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))
    far = min((means <= 0).sum(), (means >= 0).sum())
    assert result["p"] == pytest.approx(min(1.0, 2 * (far + 1) / 301))
    assert paired_bootstrap(a, a) == {"mean": 0.0, "low": 0.0, "high": 0.0, "p": 1.0}
    shifted = paired_bootstrap(a + 0.25, a)
    assert shifted["low"] == pytest.approx(0.25) and shifted["high"] == pytest.approx(0.25)
    assert shifted["p"] == pytest.approx(2 / 2001)  # no resample on the far side: the smallest p
    with pytest.raises(ValueError, match="equally long"):
        paired_bootstrap(a, b[:10])


def test_holm_against_its_definition():
    """Step-down: the i-th smallest p times (m - i), never below the previous adjusted one, at most 1."""
    from genrec.evaluation.significance import holm

    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.3, 0.3]) == pytest.approx([0.6, 0.6]) and holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_oriented_difference_reads_a_pair_either_way():
    from genrec.evaluation import oriented_difference, paired_bootstrap

    rng = np.random.default_rng(1)
    a, b = rng.random(200) + 0.1, rng.random(200)
    listed = [{"a": "A", "b": "B", **paired_bootstrap(a, b)}]
    flipped = paired_bootstrap(b, a)
    assert oriented_difference(listed, "A", "B") == {k: listed[0][k] for k in ("mean", "low", "high", "p")}
    assert oriented_difference(listed, "B", "A") == pytest.approx(flipped)  # b − a: negated, bounds swapped
    assert oriented_difference(listed, "A", "C") is None


def test_ndcg_per_example_by_hand():
    from genrec.evaluation import ndcg_per_example

    assert ndcg_per_example(np.array([0, 1, 9, 10, -1]), 10).tolist() == pytest.approx(
        [1.0, 1 / np.log2(3), 1 / np.log2(11), 0.0, 0.0]
    )


def test_one_rounding_rule_for_logs_tables_and_files():
    from genrec.evaluation.metrics import recorded, shown

    raw = 0.025050634136244056  # rounded once to four decimals: 0.0251; its recorded value 0.02505: 0.0250
    assert recorded(raw) == 0.02505
    assert shown(raw) == shown(recorded(raw)) == "0.0250"  # the log (raw) and a table (from JSON) agree
