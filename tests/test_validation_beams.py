"""Evaluation never scores a beam model on lists shorter than ten when the catalogue has more to give.

Latte spends its beam on latent paths (one item can fill a beam per latent token), so a beam of 20
with 4 latent tokens holds only 5-8 items: Recall@10 / NDCG@10 computed on such lists handicap it in
early stopping, checkpoint selection and the test. Evaluation widens the beam to
:func:`genrec.ranking.search_width`; a list that still comes back short is counted and warned about.
"""

import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import TINY_BACKBONE, TINY_SYNTHETIC

from genrec.data import Examples
from genrec.evaluation import Catalogue, evaluate, evaluate_with_ranks, recommend_all
from genrec.pipeline import build_model, load_split
from genrec.ranking import search_width

TINY_LATTE = dict(model="Latte", n_latent_tokens=4, **TINY_BACKBONE, num_beams=8, test_num_beams=16, eval_batch_size=64)


def test_search_width_by_its_definition():
    latte = SimpleNamespace(returns_beams=True, beams_per_item=4, max_beams=1000)
    assert search_width(latte, 20, 10) == 40  # 10 items, each at most once per latent token
    assert search_width(latte, 50, 10) == 50  # already wide enough: kept
    assert search_width(SimpleNamespace(returns_beams=True, beams_per_item=4, max_beams=30), 20, 10) == 30
    assert search_width(SimpleNamespace(returns_beams=True, beams_per_item=1, max_beams=1000), 5, 10) == 10
    assert search_width(SimpleNamespace(returns_beams=False), 5, 10) == 5  # a full-ranking model has no beam to widen


@pytest.fixture(scope="module")
def latte(tmp_path_factory):
    """An untrained Latte with 4 latent tokens (the width, not the weights, is under test)."""
    from genrec.config import load_config

    folder = tmp_path_factory.mktemp("latte")
    config = load_config([], **TINY_SYNTHETIC, **TINY_LATTE, cache_dir=str(folder / "cache"))
    data, split = load_split(config)
    torch.manual_seed(0)
    return build_model(config, data, split).eval(), data, split


def test_a_narrow_beam_is_widened_to_hold_ten_items(latte, caplog):
    model, data, split = latte
    catalogue = Catalogue(data.n_items)
    narrow = recommend_all(model, split.test, 64, 10, 8)  # what validation at num_beams=8 used to score
    assert (narrow >= 0).sum(axis=1).max() <= 8  # 8 beams cannot hold 10 items

    with caplog.at_level(logging.WARNING):
        metrics, _ = evaluate_with_ranks(model, split.test, catalogue, 64, 8)
    wide = recommend_all(model, split.test, 64, 40, 40)
    assert (wide[:, :10] >= 0).all()  # 4 latent tokens x 10 items: every list is full
    assert metrics["short_lists"] == 0 and "fewer than 10 items" not in caplog.text
    explicit = evaluate(model, split.test, catalogue, 64, 40)
    assert {k: v for k, v in metrics.items() if k != "users_per_s"} == {
        k: v for k, v in explicit.items() if k != "users_per_s"
    }


def test_building_the_model_names_the_widened_keys(make_config, caplog):
    with caplog.at_level(logging.INFO, logger="genrec.models.generative"):
        config = make_config(**TINY_SYNTHETIC, **TINY_LATTE)
        data, split = load_split(config)
        build_model(config, data, split)
    for key, width in (("num_beams", 8), ("test_num_beams", 16)):
        assert (
            f"{key}={width} can hold fewer than 10 items (4 latent tokens share the beam): evaluation decodes 40 beams"
            in caplog.text
        )


class ShortBeam:
    """A beam model whose final beam holds items 0-5 only, whatever it is asked."""

    returns_beams = True
    beams_per_item = 1

    def __init__(self, n_items: int):
        self.max_beams = n_items

    def eval(self):
        return self

    def recommend(self, histories, k, num_beams, exclude=None):
        ranked = torch.full((len(histories), k), -1)
        ranked[:, :6] = torch.arange(6)
        if exclude is not None:
            for row, seen in enumerate(exclude):
                kept = [item for item in range(6) if item not in set(seen.tolist())]
                ranked[row] = -1
                ranked[row, : len(kept)] = torch.tensor(kept, dtype=torch.long)
        return ranked


def examples(seen: list[list[int]]) -> Examples:
    n = len(seen)
    return Examples(np.arange(n), [np.array([9])] * n, np.zeros(n, dtype=np.int64), [np.array(s) for s in seen])


def test_a_short_list_is_counted_and_warned(caplog):
    users = examples([[7], [8]])
    with caplog.at_level(logging.WARNING):
        metrics = evaluate(ShortBeam(50), users, Catalogue(50), batch_size=2, num_beams=10)
    assert metrics["short_lists"] == 1.0
    assert "100.0% of the 2 users got fewer than 10 items from a beam of 10" in caplog.text


def test_a_list_as_long_as_the_catalogue_allows_is_not_short(caplog):
    with caplog.at_level(logging.WARNING):
        whole = evaluate(ShortBeam(6), examples([[7], [8]]), Catalogue(6), batch_size=2, num_beams=10)
        # exclude_seen: user 0 saw 2 of the 6 items, so the other 4 are all it can be shown
        filtered = evaluate(
            ShortBeam(6), examples([[0, 1], []]), Catalogue(6), batch_size=2, num_beams=10, exclude_seen=True
        )
    assert whole["short_lists"] == 0 and filtered["short_lists"] == 0
    assert "fewer than" not in caplog.text
    with caplog.at_level(logging.WARNING):
        wider = evaluate(
            ShortBeam(20), examples([[0, 1], []]), Catalogue(20), batch_size=2, num_beams=10, exclude_seen=True
        )
    assert wider["short_lists"] == 1.0 and "(exclude_seen removed their earlier items from it)" in caplog.text


def test_compare_warns_when_it_reuses_a_latte_run_validated_on_short_lists(tmp_path, caplog):
    from genrec.compare import warn_if_short_validation

    latte = SimpleNamespace(n_latent_tokens=4, metric_ks=[1, 5, 10], num_beams=20)
    with caplog.at_level(logging.WARNING):
        warn_if_short_validation(latte, {"valid": {}, "test": {}}, tmp_path)
    assert f"{tmp_path} was validated at num_beams=20, which can hold fewer than 10 items" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        warn_if_short_validation(latte, {"valid_num_beams": 40}, tmp_path)  # trained with the widened beam
        warn_if_short_validation(SimpleNamespace(n_latent_tokens=4, metric_ks=[10], num_beams=40), {}, tmp_path)
        warn_if_short_validation(SimpleNamespace(metric_ks=[10], num_beams=20), {}, tmp_path)  # PSID
    assert not caplog.text
