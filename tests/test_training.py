"""Training generative models end to end on a tiny Synthetic catalogue: learning, resuming a killed
run to the same result, evaluating a checkpoint, and model-specific settings."""

import json

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY_BACKBONE, TINY_SYNTHETIC

from genrec.cli import main
from genrec.config import load_config
from genrec.errors import ConfigError
from genrec.evaluation import Catalogue, evaluate
from genrec.pipeline import build_model, load_split, train
from genrec.trainer import Trainer, length_bucketed_batches

TINY_MODEL = dict(
    **TINY_BACKBONE, dropout_rate=0.1, batch_size=64, warmup_steps=5, eval_batch_size=64, num_beams=8, test_num_beams=16
)


def tiny(make_config, tmp_path, **kw):
    return make_config(**{**TINY_SYNTHETIC, **TINY_MODEL, "run_name": "r", "seed": 3, **kw})


# Latte's permutation mode on the tiny T5 stays near 1.5x chance over 12-24 epochs (0.14 validation
# Recall@10, against 0.23 for the shared mode; at d_model 32 it reaches 0.26 in 12 epochs): its
# exactness is tested in test_latent_permutations.py, its recommendations below. On the tiny decoder
# it learns more slowly than the shared mode: validation Recall@10 0.13 / 0.11 / 0.13 for seeds 3 / 4 / 5
# after 12 epochs, 0.25 / 0.13 / 0.25 after 24, so it trains for 24 here.
@pytest.mark.parametrize(
    "model,backbone",
    [
        ("Latte", "t5"),
        ("PSID", "t5"),
        ("TIGER", "t5"),
        ("Latte", "decoder"),
        ("PSID", "decoder"),
        ("PSID", "hf_causal_lm"),
        ("Latte-permutation", "decoder"),
    ],
)
def test_models_train_and_beat_chance(make_config, tmp_path, model, backbone):
    extra = {"n_latent_tokens": 2} if model == "Latte" else {}
    if model == "TIGER":
        extra["vq_collision"] = "tiger"
    if model == "Latte-permutation":  # latent tokens bound to orders (0, 1, 2), (0, 2, 1), (1, 0, 2) of the ID levels
        model, extra = "Latte", {"n_latent_tokens": 3, "latent_mode": "permutation"}
    epochs = 24 if extra.get("latent_mode") == "permutation" else 12
    config = tiny(make_config, tmp_path, model=model, architecture=backbone, epochs=epochs, lr=0.01, **extra)
    results, directory = train(config)
    assert {"recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10", "coverage@10"} <= set(results["test"])
    assert results["valid"]["recall@10"] > 2 * 10 / 110  # well above a random ranking of the ~110 items
    # Beams wide enough for 10 items: 10 per latent token (num_beams 8 and test_num_beams 16 are widened).
    latent = extra.get("n_latent_tokens", 1)
    assert (results["valid_num_beams"], results["num_beams"]) == (max(8, 10 * latent), max(16, 10 * latent))
    assert results["valid"]["short_lists"] == results["test"]["short_lists"] == 0
    lines = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines[:-1]] == list(range(1, epochs + 1)) and "final" in lines[-1]
    assert (directory / "config.yaml").exists() and (directory / "best.pt").exists()
    log = (directory / "run.log").read_text()  # the run's own log, beside metrics.jsonl
    assert f"epoch {epochs}" in log and f"from epoch 0 (cap {epochs})" in log
    assert f"at this pace the cap of {epochs} epochs is" in log and "(cap in at most " in log  # the estimate
    assert "Synthetic: " in log and " training examples, " in log  # the data it trained on
    assert f"test recall@1 {results['test']['recall@1']:.4f}" in log.splitlines()[-1]  # and what it scored


def test_time_estimates_read_as_a_person_plans():
    from genrec.trainer import duration, time_left

    assert [duration(s) for s in (42, 720, 7500)] == ["42 s", "12 min", "2 h 05 min"]
    assert time_left([10.0, 20.0], 8) == "  (cap in at most 2 min)" and time_left([10.0], 0) == ""


def test_killed_run_resumes_to_the_same_result(make_config, tmp_path, monkeypatch):
    config = tiny(make_config, tmp_path, model="Latte", n_latent_tokens=2, epochs=4, run_name="straight")
    straight, _ = train(config)

    real = Trainer.train_epoch

    def dies_in_epoch_3(self):
        if self.epoch == 2:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(Trainer, "train_epoch", dies_in_epoch_3)
    killed = tiny(make_config, tmp_path, model="Latte", n_latent_tokens=2, epochs=4, run_name="killed")
    with pytest.raises(KeyboardInterrupt):
        train(killed)
    monkeypatch.setattr(Trainer, "train_epoch", real)
    last = tmp_path / "runs" / "killed" / "last.pt"
    assert torch.load(last, weights_only=True)["epoch"] == 2
    resumed, directory = train(
        tiny(make_config, tmp_path, model="Latte", n_latent_tokens=2, epochs=4, checkpoint=str(last))
    )
    assert directory == last.parent

    def quality(results):  # everything but the timing
        return {
            k: ({m: v for m, v in val.items() if m != "users_per_s"} if isinstance(val, dict) else val)
            for k, val in results.items()
        }

    assert quality(resumed) == quality(straight)
    a = torch.load(tmp_path / "runs/straight/last.pt", weights_only=True)["model"]
    b = torch.load(last, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("model", ["Latte", "BERT4Rec"])
def test_batch_workers_change_the_speed_only(make_config, tmp_path, model):
    """Batches prepared by DataLoader worker processes (with their random draws: latent tokens,
    cloze masks) train exactly the weights that batches prepared in the training process do."""
    weights = []
    for workers in (0, 2):
        settings = dict(model=model, epochs=2, num_workers=workers, run_name=f"workers{workers}")
        if model == "Latte":
            train(tiny(make_config, tmp_path, n_latent_tokens=2, **settings))
        else:
            train(
                make_config(
                    **TINY_SYNTHETIC,
                    hidden_size=16,
                    num_layers=1,
                    num_heads=2,
                    batch_size=64,
                    eval_batch_size=64,
                    seed=3,
                    **settings,
                )
            )
        weights.append(torch.load(tmp_path / f"runs/workers{workers}/last.pt", weights_only=True)["model"])
    assert weights[0].keys() == weights[1].keys() and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_cutoffs_and_the_selection_metric_are_settings(make_config, tmp_path):
    config = tiny(make_config, tmp_path, model="PSID", epochs=3, metric_ks="5,10,20", select_metric="recall@20")
    results, directory = train(config)
    assert {"recall@20", "ndcg@20", "recall@5", "ndcg@10"} <= set(results["test"]) and "recall@1" not in results["test"]
    curve = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()[:-1]]
    selected = [line["valid"]["recall@20"] for line in curve]
    assert results["best_epoch"] == curve[int(np.argmax(selected))]["epoch"]  # the first epoch of the best recall@20
    assert f"(best recall@20 {max(selected):.4f} @{results['best_epoch']})" in (directory / "run.log").read_text()
    with pytest.raises(ConfigError, match="select_metric 'ndcg@50' is none of the metrics computed"):
        tiny(make_config, tmp_path, model="PSID", select_metric="ndcg@50")
    with pytest.raises(ConfigError, match="metric_ks.*include 5 and 10"):
        tiny(make_config, tmp_path, model="PSID", metric_ks="1,20")


def test_evaluate_command_reproduces_the_test_of_the_best_checkpoint(make_config, tmp_path, capsys):
    config = tiny(make_config, tmp_path, model="PSID", epochs=2)
    results, directory = train(config)
    flags = [
        f"--{k}={v}"
        for k, v in {
            **TINY_SYNTHETIC,
            **TINY_MODEL,
            "seed": 3,
            "model": "PSID",
            "epochs": 2,
            "cache_dir": tmp_path / "cache",
            "output_dir": tmp_path / "runs",
            "run_name": "eval",
            "checkpoint": directory / "best.pt",
        }.items()
    ]
    assert main(["evaluate", *flags]) == 0
    evaluated = json.loads((tmp_path / "runs/eval/results.json").read_text())
    assert evaluated["test"]["ndcg@10"] == pytest.approx(results["test"]["ndcg@10"], abs=1e-5)
    assert "test" in capsys.readouterr().out
    # main.py / genrec train with a weights-only checkpoint evaluates instead of resuming
    assert main(["train", *[f.replace("--run_name=eval", "--run_name=eval2") for f in flags]]) == 0
    assert (
        json.loads((tmp_path / "runs/eval2/results.json").read_text())["test"]["ndcg@10"]
        == evaluated["test"]["ndcg@10"]
    )


def test_evaluating_a_run_from_its_own_config_never_overwrites_it(make_config, tmp_path, capsys):
    results, directory = train(tiny(make_config, tmp_path, model="PSID", epochs=1))
    saved = {name: (directory / name).read_bytes() for name in ("config.yaml", "results.json")}
    assert yaml.safe_load(saved["config.yaml"])["run_name"] is None  # reloading it starts a new folder
    run = [f"--config={directory / 'config.yaml'}", f"--checkpoint={directory / 'best.pt'}"]
    assert main(["evaluate", *run, "--exclude_seen=true"]) == 0
    assert {name: (directory / name).read_bytes() for name in saved} == saved
    (evaluated,) = (tmp_path / "runs").glob("evaluate-PSID-Synthetic-*/results.json")
    assert "target_seen" in json.loads(evaluated.read_text())["test"]
    assert main(["evaluate", *run, f"--run_name={directory.name}"]) == 2  # an explicit clash is refused
    assert "holds a run already" in capsys.readouterr().err
    assert {name: (directory / name).read_bytes() for name in saved} == saved


@pytest.mark.parametrize("mode", ["shared", "permutation"])
def test_latte_recommends_real_items_only(make_config, tmp_path, mode):
    config = tiny(make_config, tmp_path, model="Latte", n_latent_tokens=3, latent_mode=mode)
    data, split = load_split(config)
    model = build_model(config, data, split)
    ranked = model.eval().recommend(split.test.histories[:20], k=10, num_beams=30)
    assert ranked.shape == (20, 10) and ((ranked >= 0) & (ranked < data.n_items)).all()
    assert all(len(set(row)) == 10 for row in ranked.tolist())  # aggregated: each item once


@pytest.mark.parametrize("model", ["Latte", "PSID"])
def test_unconstrained_decoding_counts_invented_ids(make_config, tmp_path, model):
    extra = {"n_latent_tokens": 2} if model == "Latte" else {}
    config = tiny(make_config, tmp_path, model=model, constrained_decoding=False, **extra)
    data, split = load_split(config)
    model = build_model(config, data, split)  # untrained; 96 of the 8^3 code tuples are items
    metrics = evaluate(model, split.test, Catalogue(data.n_items), batch_size=64, num_beams=20)
    assert 0 < metrics["invalid@10"] < 1
    model.constrained = True
    assert evaluate(model, split.test, Catalogue(data.n_items), batch_size=64, num_beams=20)["invalid@10"] == 0


def test_permutation_latent_tokens_need_an_order_each(make_config, tmp_path):
    config = tiny(make_config, tmp_path, model="Latte", n_latent_tokens=7, latent_mode="permutation")
    with pytest.raises(
        ConfigError, match="n_latent_tokens=7 with latent_mode=permutation: the 3 ID levels have only 6 orders"
    ):
        build_model(config, *load_split(config))


def test_model_settings_are_validated():
    with pytest.raises(ConfigError, match="use --model=PSID"):
        load_config(["--model=Latte", "--n_latent_tokens=0"])
    assert load_config(["--model=Latte", "--n_latent_tokens=1"]).n_latent_tokens == 1  # the paper's ablation
    with pytest.raises(ConfigError, match="aggregation_method"):
        load_config(["--model=Latte", "--aggregation_method=mean"])
    assert load_config(["--model=TIGER"]).vq_collision == "tiger"
    assert load_config(["--model=PSID"]).vq_collision == "conflict_free"
    config = load_config(["--model=Latte"])
    assert (config.d_model, config.d_ff, config.num_layers, config.num_heads, config.d_kv, config.n_latent_tokens) == (
        128,
        1024,
        4,
        6,
        64,
        8,
    )


def test_tiger_refuses_conflict_free_ids(make_config, tmp_path):
    config = tiny(make_config, tmp_path, model="TIGER", vq_collision="conflict_free")
    data, split = load_split(config)
    with pytest.raises(ConfigError, match="use --model=PSID"):
        build_model(config, data, split)


def test_length_bucketed_batches_cover_every_example_once_with_less_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 21, size=1000)
    batches = length_bucketed_batches(lengths, 32, np.random.default_rng(1), pool=5)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000)) and max(map(len, batches)) == 32
    again = length_bucketed_batches(lengths, 32, np.random.default_rng(1), pool=5)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))  # seeded: a resumed epoch is the same epoch
    padded = sum(len(b) * lengths[b].max() for b in batches)
    shuffled = np.random.default_rng(1).permutation(1000)
    assert padded < 0.8 * sum(32 * lengths[shuffled[i : i + 32]].max() for i in range(0, 1000, 32))


def test_validation_on_a_seeded_sample_of_users(make_config, tmp_path):
    from genrec.trainer import validation_sample

    config = tiny(make_config, tmp_path, model="PSID", epochs=1, valid_users=30)
    data, split = load_split(config)
    sample = validation_sample(split.valid, 30, seed=3)
    assert len(sample) == 30 and sorted(set(sample.users.tolist())) == sample.users.tolist()
    assert np.array_equal(
        validation_sample(split.valid, 30, seed=3).users, sample.users
    )  # the same every epoch / resume
    assert not np.array_equal(validation_sample(split.valid, 30, seed=4).users, sample.users)
    assert validation_sample(split.valid, 0, seed=3) is split.valid
    k = int(sample.users[5])
    assert np.array_equal(sample.histories[5], split.valid.histories[k]) and sample.targets[5] == split.valid.targets[k]
    from genrec.pipeline import identity

    model = build_model(config, data, split)
    trainer = Trainer(
        config, model, split, Catalogue(data.n_items), tmp_path, torch.device("cpu"), identity(config, data, model)
    )
    assert len(trainer.valid) == 30
    results = trainer.fit()
    assert "valid" in results and len(split.valid) > 30  # the final validation and the test use every user


def test_min_delta_counts_only_real_gains_as_improvement(make_config, tmp_path, monkeypatch):
    from genrec.evaluation import Evaluator

    scores = iter(
        [0.10, 0.20, 0.2003, 0.2006, 0.2009, 0.30, 0.31]
    )  # after epoch 2: gains that add up to less than 0.001
    real = Evaluator.validate

    def scripted(self, model, examples):
        metrics = real(self, model, examples)
        return {**metrics, "ndcg@10": next(scores)} if len(examples) == 30 else metrics

    monkeypatch.setattr(Evaluator, "validate", scripted)
    config = tiny(make_config, tmp_path, model="PSID", epochs=7, patience=3, min_delta=0.001, valid_users=30)
    results, directory = train(config)
    records = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if "epoch" in r] == [1, 2, 3, 4, 5]  # 3 validations without a gain > 0.001
    assert results["best_epoch"] == 2
    assert torch.load(directory / "best.pt", weights_only=True)["epoch"] == 2
