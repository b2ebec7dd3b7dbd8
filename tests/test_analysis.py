"""``genrec analyze``: item probabilities are exact (every item of the tree against teacher-forced
scoring), pairs are drawn uniformly at their tree distance, the statistics agree with scipy and with
brute force on hand data, and a beam sweep reports what evaluation at each width reports."""

import itertools
import json
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import TINY_BACKBONE, TINY_FULL_RANKING, TINY_SYNTHETIC
from scipy.stats import kendalltau, pearsonr

from genrec.analysis import (
    aggregate_paths,
    item_log_probs,
    pairwise_pearson,
    rank_reversals,
    sample_pairs,
    top10_overlap,
    tree_distances,
)
from genrec.cli import main
from genrec.decoding import aggregate_beams
from genrec.evaluation import Catalogue, evaluate
from genrec.pipeline import build_model, load_split, train
from genrec.run import load_run

TINY_RUN = dict(batch_size=64, warmup_steps=5, eval_batch_size=64, num_beams=8, test_num_beams=16, seed=3)
TINY = {"T5": dict(**TINY_BACKBONE, dropout_rate=0.0), "SASRec": dict(**TINY_FULL_RANKING, dropout_rate=0.0)}


def settings_of(model: str, **extra) -> dict:
    return {**TINY_SYNTHETIC, **TINY_RUN, **TINY["SASRec" if model == "SASRec" else "T5"], "model": model, **extra}


def untrained(make_config, **settings):
    config = make_config(**settings_of(**settings))
    interactions, split = load_split(config)
    torch.manual_seed(0)
    return build_model(config, interactions, split).eval(), split


@pytest.mark.parametrize("model,architecture", [("PSID", "t5"), ("Latte", "t5"), ("TIGER", "t5"), ("Latte", "decoder")])
def test_every_item_probability_equals_teacher_forced_scoring(make_config, model, architecture):
    extra = {"n_latent_tokens": 3} if model == "Latte" else {"vq_collision": "tiger"} if model == "TIGER" else {}
    recommender, split = untrained(make_config, model=model, architecture=architecture, **extra)
    histories = split.test.histories[:5]
    paths = recommender.path_log_probs(histories)
    n_latent = recommender.vocab.n_latent
    assert paths.shape == (5, max(1, n_latent), recommender.n_items)
    for user, history in enumerate(histories):
        ids, mask = recommender.inputs([history])
        for path in range(paths.shape[1]):
            targets = recommender.item_tokens
            if n_latent:
                targets = torch.cat([torch.full((len(targets), 1), 2 + path), targets], dim=1)
            with torch.no_grad():
                expected = recommender.model.token_log_probs(
                    ids.expand(len(targets), -1), mask.expand(len(targets), -1), targets
                ).sum(1)
            np.testing.assert_allclose(paths[user, path].numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


def test_aggregated_paths_equal_aggregating_a_full_beam():
    generator = torch.Generator().manual_seed(0)
    paths = torch.randn(4, 3, 7, generator=generator) * 3
    items = torch.arange(7).repeat(3).expand(4, -1)  # every (latent, item) path as one beam
    for method in ("agg_sum", "agg_max"):
        ranked, scores = aggregate_beams(items, paths.flatten(1), 7, 7, method)
        aggregated = aggregate_paths(paths, method)
        np.testing.assert_allclose(aggregated.gather(1, ranked).numpy(), scores.numpy(), rtol=1e-5)


def test_full_ranking_models_give_the_softmax_over_the_catalogue(make_config):
    recommender, split = untrained(make_config, model="SASRec")
    log_probs, paths = item_log_probs(recommender, split.test.histories[:6], batch_size=4)
    assert paths is None and log_probs.shape == (6, recommender.n_items)
    np.testing.assert_allclose(np.exp(log_probs).sum(axis=1), 1.0, rtol=1e-6)
    with torch.no_grad():
        scores = recommender.scores(split.test.histories[:6]).double()
    np.testing.assert_allclose(log_probs, torch.log_softmax(scores, dim=1).numpy(), atol=1e-5)


def all_pairs_at(codes, distance):
    return [
        (i, j)
        for i, j in itertools.combinations(range(len(codes)), 2)
        if tree_distances(codes, np.array([i]), np.array([j]))[0] == distance
    ]


def test_pairs_have_their_distance_and_are_drawn_uniformly():
    codes = np.array(
        [[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 1, 0], [0, 1, 1], [1, 0, 0], [1, 2, 0], [2, 0, 0], [2, 0, 1]]
    )
    assert tree_distances(codes, np.array([0, 0, 0]), np.array([1, 3, 5])).tolist() == [2, 4, 6]
    pairs = sample_pairs(codes, 30000, np.random.default_rng(0))
    assert sorted(pairs) == [2, 4, 6]
    for distance, (first, second) in pairs.items():
        assert (tree_distances(codes, first, second) == distance).all()
        expected = all_pairs_at(codes, distance)
        counts = Counter(tuple(sorted(pair)) for pair in zip(first.tolist(), second.tolist()))
        assert set(counts) == set(expected)
        share = 1 / len(expected)
        tolerance = 5 * np.sqrt(share * (1 - share) / 30000)
        assert all(abs(count / 30000 - share) < tolerance for count in counts.values()), (distance, counts)


def test_no_pairs_at_a_distance_that_does_not_occur():
    codes = np.array([[0, 0], [1, 0], [2, 0]])  # no two items share a first code
    assert sorted(sample_pairs(codes, 10, np.random.default_rng(0))) == [4]


def test_correlation_and_rank_reversal_against_direct_computation():
    rng = np.random.default_rng(1)
    x, y = rng.random((9, 5)), rng.random((9, 5))
    y[:, 0] = x[:, 0] * 2 + 1  # perfectly correlated: no user pair disagrees
    y[3, 1] = x[3, 1]  # a tie counts as agreement
    expected = [pearsonr(x[:, k], y[:, k]).statistic for k in range(5)]
    np.testing.assert_allclose(pairwise_pearson(x, y), expected, rtol=1e-10)
    assert np.isnan(pairwise_pearson(np.ones((4, 1)), rng.random((4, 1))))[0]
    brute = [
        np.mean([(x[u, k] - y[u, k]) * (x[v, k] - y[v, k]) < 0 for u, v in itertools.combinations(range(9), 2)])
        for k in range(5)
    ]
    np.testing.assert_allclose(rank_reversals(x, y), brute, rtol=1e-12)
    assert rank_reversals(x, y)[0] == 0


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Tiny PSID, Latte and SASRec runs (2 epochs) shared by the command tests, and their cache."""
    from genrec.config import load_config

    root = tmp_path_factory.mktemp("finished")
    directories = {}
    for name, model, extra in (
        ("PSID", "PSID", {}),
        ("Latte", "Latte", {"n_latent_tokens": 2}),
        ("SASRec", "SASRec", {}),
        ("orders", "Latte", {"n_latent_tokens": 6, "latent_mode": "permutation"}),
    ):
        config = load_config(
            [],
            **settings_of(
                model, epochs=2, run_name=name, cache_dir=str(root / "cache"), output_dir=str(root / "runs"), **extra
            ),
        )
        directories[name] = train(config)[1]
    return directories, root / "cache"


def test_analyze_tree_command_on_finished_runs(finished, tmp_path, capsys):
    directories, cache = finished
    output = tmp_path / "analysis"
    code = main(
        [
            "analyze",
            "tree",
            *map(str, directories.values()),
            "--users=40",
            "--pairs=50",
            f"--output={output}",
            f"--cache_dir={cache}",
        ]
    )
    assert code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (output / "tree.jsonl").read_text().splitlines()]
    pairs = [json.loads(line) for line in (output / "tree_pairs.jsonl").read_text().splitlines()]
    assert (output / "tree.png").is_file() and (output / "tree.svg").is_file()
    assert (output / "tree_latent.png").is_file() and (output / "tree_latent.svg").is_file()  # the two Latte runs
    runs = {r["label"]: r for r in records if r["kind"] == "run"}
    orders = runs.pop(next(label for label in runs if label.startswith("Latte (")))  # the second Latte run
    assert orders["latent_orders"] == [list(p) for p in itertools.permutations(range(3))]
    assert len(orders["latent_usage_top10"]["shares"]) == 6
    assert set(runs) == {"PSID", "Latte", "SASRec"} and all(r["users"] == 40 for r in runs.values())
    for label, summary in runs.items():
        rows = [p for p in pairs if p["label"] == label and np.isfinite(p["correlation"])]
        tau = kendalltau([p["distance"] for p in rows], [p["correlation"] for p in rows]).statistic
        assert summary["kendall_tau"] == pytest.approx(tau)
        distances = [r for r in records if r["kind"] == "distance" and r["label"] == label]
        assert {r["distance"] for r in distances} <= {2, 4, 6} and all(r["pairs"] == 50 for r in distances)
    latte = runs["Latte"]
    assert latte["aggregation"] == "agg_sum" and sum(latte["latent_usage_all"]["shares"]) == pytest.approx(1, abs=1e-3)
    assert all(
        0 <= p["latent_split"] <= 1 and p["distance"] <= p["effective_distance"] <= 8
        for p in pairs
        if p["label"] == "Latte"
    )
    assert "latent_split" not in next(p for p in pairs if p["label"] == "PSID") and "latent_orders" not in latte


def test_analyze_tree_refuses_a_folder_that_is_no_run(tmp_path, capsys):
    assert main(["analyze", "tree", str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run/config.yaml").write_text("dataset: Synthetic\n")  # a run folder, so the flags are read
    assert main(["analyze", "tree", str(tmp_path / "run"), "--users=abc"]) == 2
    assert "--users must be an integer" in capsys.readouterr().err


def test_analyze_beams_matches_evaluation_where_evaluation_keeps_the_width(finished, tmp_path, capsys):
    directories, cache = finished
    output = tmp_path / "beams"
    code = main(
        [
            "analyze",
            "beams",
            str(directories["PSID"]),
            str(directories["Latte"]),
            "--beams=4,20",
            "--aggregations=agg_sum,agg_max",
            f"--output={output}",
            f"--cache_dir={cache}",
        ]
    )
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (output / "beams.jsonl").read_text().splitlines()]
    assert [(r["label"], r["aggregation"], r["beam"]) for r in rows] == [
        ("PSID", None, 4),
        ("PSID", None, 20),
        ("Latte", "agg_sum", 4),
        ("Latte", "agg_sum", 20),
        ("Latte", "agg_max", 4),
        ("Latte", "agg_max", 20),
    ]
    assert (output / "beams.png").is_file() and all(r["top10_overlap_widest"] == 1.0 for r in rows if r["beam"] == 20)
    for label, aggregation in (("PSID", None), ("Latte", "agg_max")):
        run = load_run(
            directories[label], cache_dir=str(cache), **({"aggregation_method": aggregation} if aggregation else {})
        )
        for width in (4, 20):
            metrics = evaluate(run.model, run.split.test, Catalogue.of(run.interactions, 2), 64, width)
            row = next(r for r in rows if (r["label"], r["aggregation"], r["beam"]) == (label, aggregation, width))
            assert metrics["short_lists"] == 0  # evaluation widens a beam too narrow for 10 items ...
            if width == 4:  # ... the analysis decodes the width it is asked for, and says the lists are short
                assert row["short_lists"] == 1 and row["beam_items"] <= 4
                continue
            assert row["ndcg@10"] == pytest.approx(metrics["ndcg@10"], abs=1e-5) and row["pruned"] == pytest.approx(
                metrics["pruned"], abs=1e-4
            )
            assert row["beam_items"] == pytest.approx(metrics["beam_items"], abs=0.05) and row["short_lists"] == 0


def test_top10_overlap_counts_shared_items_only():
    first = np.array([[1, 2, 3, -1], [4, 5, 6, 7]])
    second = np.array([[3, 2, 9, -1], [7, 6, 5, 4]])
    assert top10_overlap(first, second) == pytest.approx((2 + 4) / 2 / 10)


def test_analyze_beams_refuses_a_model_without_beams(finished, capsys):
    directories, cache = finished
    assert main(["analyze", "beams", str(directories["SASRec"]), f"--cache_dir={cache}"]) == 2
    assert "has no beam" in capsys.readouterr().err
