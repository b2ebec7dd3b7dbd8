"""``exclude_seen`` / ``recommend(..., exclude=...)``: no model recommends an item it was told to
leave out, the rest of its ranking is unchanged, and the evaluator scores the filtered lists."""

import numpy as np
import pytest
import torch
from test_baselines import build, cyclic_data
from test_training import tiny

from genrec.data import leave_one_out
from genrec.evaluation import Catalogue, evaluate
from genrec.models.full_ranking import FullRankingRecommender
from genrec.pipeline import build_model, load_split
from genrec.ranking import EMPTY, INVALID, drop_excluded, exclusion_mask


def python_filter(ranked: list[int], exclude: set[int], k: int) -> list[int]:
    kept = [item for item in ranked if item < 0 or item not in exclude][:k]
    return kept + [EMPTY] * (k - len(kept))


def random_exclusions(rng, n_rows: int, n_items: int) -> list[np.ndarray]:
    return [rng.choice(n_items, size=int(rng.integers(0, n_items)), replace=False) for _ in range(n_rows)]


def test_seen_is_the_untruncated_past_of_each_example():
    sequence = np.arange(7)
    split = leave_one_out([sequence], max_item_seq_len=2)
    assert split.test.histories[0].tolist() == [4, 5] and split.test.seen[0].tolist() == [0, 1, 2, 3, 4, 5]
    assert split.valid.seen[0].tolist() == [0, 1, 2, 3, 4]
    assert [s.tolist() for s in split.train.seen] == [[0], [0, 1], [0, 1, 2], [0, 1, 2, 3]]


def test_drop_excluded_equals_a_python_filter():
    rng = np.random.default_rng(0)
    ranked = torch.as_tensor(np.stack([rng.permutation(np.r_[np.arange(8), [EMPTY, INVALID]]) for _ in range(50)]))
    scores = -torch.arange(10.0).expand(50, -1)  # a beam's scores, best first
    exclude = random_exclusions(rng, 50, 8)
    filtered, kept = drop_excluded(ranked, scores, exclusion_mask(exclude, 8), k=6)
    assert filtered.tolist() == [python_filter(row, set(e.tolist()), 6) for row, e in zip(ranked.tolist(), exclude)]
    for row, slots in zip(ranked.tolist(), zip(filtered.tolist(), kept.tolist())):  # each item keeps its own score
        assert all(score == -row.index(item) for item, score in zip(*slots) if item >= 0)
    wide = drop_excluded(ranked, scores, exclusion_mask(exclude, 8), k=12)
    assert wide[0].shape == wide[1].shape == (50, 12) and (wide[1][:, 10:] == float("-inf")).all()


@pytest.mark.parametrize("name", ["SASRec", "GRU4Rec", "BERT4Rec"])
def test_full_ranking_models_rank_the_remaining_items_exactly(name):
    data, split = cyclic_data()
    model = build(name, data, split).eval()
    histories = split.test.histories
    scores = model.scores(histories).detach().numpy()
    exclude = random_exclusions(np.random.default_rng(1), len(histories), data.n_items)
    ranked = model.recommend(histories, k=8, num_beams=1, exclude=exclude).tolist()
    for row, user_scores, excluded in zip(ranked, scores, exclude):
        order = [
            item for item in sorted(range(data.n_items), key=lambda i: (-user_scores[i], i)) if item not in excluded
        ]
        assert row == (order + [EMPTY] * 8)[:8]


@pytest.mark.parametrize("model", ["PSID", "Latte"])
def test_generative_models_filter_their_final_beam(make_config, tmp_path, model):
    extra = {"n_latent_tokens": 3} if model == "Latte" else {}
    config = tiny(make_config, tmp_path, model=model, **extra)
    data, split = load_split(config)
    recommender = build_model(config, data, split).eval()  # untrained: any ranking will do
    histories, seen = split.test.histories[:30], split.test.seen[:30]
    beam = recommender.recommend(histories, k=20, num_beams=20).tolist()
    filtered = recommender.recommend(histories, k=20, num_beams=20, exclude=seen).tolist()
    assert filtered == [python_filter(row, set(s.tolist()), 20) for row, s in zip(beam, seen)]
    assert any(EMPTY in row for row in filtered)  # a history item was in some beam and left a gap


class FixedScores(FullRankingRecommender):
    """Item ``i`` scores ``-i`` for every user: the ranking is 0, 1, 2, ..."""

    def __init__(self, n_items: int):
        super().__init__()
        self.n_items = n_items
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def scores(self, histories):
        return -torch.arange(self.n_items, dtype=torch.float).expand(len(histories), -1)


def test_evaluate_with_exclude_seen_by_hand():
    from genrec.data import Examples

    # user 0 saw items 0 and 1, wants 2: rank 3 unfiltered, rank 1 filtered;
    # user 1 saw item 5 and wants it again: rank 6 unfiltered, never filtered.
    examples = Examples(
        np.arange(2), [np.array([1]), np.array([5])], np.array([2, 5]), [np.array([0, 1]), np.array([5])]
    )
    plain = evaluate(FixedScores(20), examples, Catalogue(20), batch_size=1, num_beams=1)
    filtered = evaluate(FixedScores(20), examples, Catalogue(20), batch_size=1, num_beams=1, exclude_seen=True)
    assert plain["recall@1"] == 0 and plain["recall@10"] == 1
    assert plain["ndcg@10"] == pytest.approx((1 / np.log2(4) + 1 / np.log2(7)) / 2)
    assert filtered["recall@1"] == 0.5 and filtered["recall@10"] == 0.5 and filtered["ndcg@10"] == pytest.approx(0.5)
    assert filtered["target_seen"] == 0.5 and "target_seen" not in plain
