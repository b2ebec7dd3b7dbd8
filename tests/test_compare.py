"""`genrec compare`: runs per model and seed, reuse of finished runs, the table and the JSON."""

import json

import numpy as np
import pytest
from conftest import TINY_SYNTHETIC
from test_training import TINY_MODEL

from genrec import compare as compare_module
from genrec import compare_summary
from genrec.cli import main
from genrec.compare import parse_seeds, parse_variant, split_models
from genrec.errors import ConfigError
from genrec.evaluation import ndcg_per_example


def flags(tmp_path, backbone=TINY_MODEL, **extra):
    values = {
        **TINY_SYNTHETIC,
        **backbone,
        "epochs": 2,
        "cache_dir": tmp_path / "cache",
        "output_dir": tmp_path / "runs",
        **extra,
    }
    return [f"--{k}={v}" for k, v in values.items()]


def test_compare_trains_each_model_and_seed_then_reuses_them(tmp_path, capsys, monkeypatch):
    argv = ["compare", "--models=PSID,Latte,SASRec", "--seeds=5,6", "--n_latent_tokens=2", *flags(tmp_path)]
    assert main(argv) == 0
    folder = tmp_path / "runs/compare/Synthetic"
    runs = sorted(p.name.rsplit("-", 1)[0] for p in folder.iterdir() if p.is_dir())
    assert runs == ["Latte-seed5", "Latte-seed6", "PSID-seed5", "PSID-seed6", "SASRec-seed5", "SASRec-seed6"]
    report = (folder / "comparison.md").read_text()
    assert report in capsys.readouterr().out
    rows = {
        line.split(" | ")[0].strip("| "): line
        for line in report.splitlines()
        if line.startswith(("| PSID", "| Latte", "| SASRec")) and line.count("|") > 10
    }  # the main table's rows
    assert set(rows) == {"PSID", "Latte", "SASRec"} and "±" in rows["PSID"]
    assert "—" in rows["SASRec"] and "—" not in rows["PSID"]  # nothing is pruned without a beam
    data = json.loads((folder / "comparison.json").read_text())
    assert data["seeds"] == [5, 6] and data["commit"] in report
    latte = [r for r in data["runs"] if r["model"] == "Latte"]
    ndcg = [r["results"]["test"]["ndcg@10"] for r in latte]
    assert data["summary"]["Latte"]["ndcg@10"]["mean"] == pytest.approx(sum(ndcg) / 2)
    assert all(r["results"]["train_seconds"] > 0 for r in data["runs"])
    assert all(
        [point["epoch"] for point in r["results"]["curve"]] == [1, 2] for r in data["runs"]
    )  # validated every epoch
    assert rows["PSID"].endswith("| 0/2 **not converged** |")  # 2 epochs, best epoch within the patience window
    assert data["summary"]["PSID"]["converged"] == {"runs": 2, "converged": 0}
    for stem in ("learning_curves", "comparison"):  # curves, and the metrics with paired differences
        for suffix in (".png", ".svg"):
            assert (folder / f"{stem}{suffix}").stat().st_size > 1000
        assert (folder / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    psid_runs = [r["directory"] for r in data["runs"] if r["model"] == "PSID"]
    assert main(["plot", *psid_runs, f"--output={tmp_path / 'plots'}"]) == 0  # genrec plot: any runs' curves
    assert (tmp_path / "plots/curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", psid_runs[0], "--colour=red"]) == 2 and "--colour" in capsys.readouterr().err
    for run in data["runs"]:  # per-user test ranks: their NDCG@10 is the run's
        ranks = np.load(f"{run['directory']}/test_ranks.npy")
        assert ndcg_per_example(ranks, 10).mean() == pytest.approx(run["results"]["test"]["ndcg@10"], abs=1e-5)
    pairs = {(d["a"], d["b"]) for d in data["paired_ndcg@10"]}
    assert pairs == {("PSID", "Latte"), ("PSID", "SASRec"), ("Latte", "SASRec")}
    assert all(d["low"] <= d["mean"] <= d["high"] for d in data["paired_ndcg@10"])
    assert "| PSID − Latte |" in report and "95% paired bootstrap" in report
    assert all(d["p"] <= d["p_holm"] <= 1 for d in data["paired_ndcg@10"]) and "Holm p" in report
    assert data["summary"]["PSID"]["mrr@10"]["mean"] <= data["summary"]["PSID"]["ndcg@10"]["mean"]
    import csv

    table = {row["model"]: row for row in csv.DictReader((folder / "comparison.csv").open())}
    assert set(table) == {"PSID", "Latte", "SASRec"} and table["SASRec"]["pruned_mean"] == ""
    assert float(table["Latte"]["ndcg@10_mean"]) == pytest.approx(data["summary"]["Latte"]["ndcg@10"]["mean"])
    latex = (folder / "comparison.tex").read_text()
    assert latex.count(r"\\") == 4 and r"\textbf{" in latex and r"$\pm$" in latex  # header + 3 models
    from genrec.pipeline import load_split  # the planted twin / triple targets, reported apart

    interactions, split = load_split(compare_module.load_config([], **TINY_SYNTHETIC))
    twins = [interactions.item_ids.index(i) for i in interactions.extra["item_groups"]["twin items"]]
    users = np.isin(split.test.targets, twins)
    psid = [np.load(f"{r['directory']}/test_ranks.npy")[users] for r in data["runs"] if r["model"] == "PSID"]
    (row,) = [g for g in data["target_groups"] if g["model"] == "PSID" and g["group"] == "twin items"]
    assert row["users"] == users.sum() > 0
    assert row["ndcg@10"] == pytest.approx(np.mean([ndcg_per_example(r, 10).mean() for r in psid]))
    assert f"twin items ({users.sum()} users)" in report and "triple items (" in report
    assert "n_latent_tokens: 2" in (folder / f"{latte[0]['directory'].rsplit('/', 1)[1]}/config.yaml").read_text()

    def no_training(config):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr("genrec.pipeline.train", no_training)
    removed = next(folder.glob("Latte-seed5-*/test_ranks.npy"))
    kept = np.load(removed)
    removed.unlink()  # a run trained before ranks were saved: recomputed from its best.pt
    assert main(argv) == 0  # everything reused
    assert np.array_equal(np.load(removed), kept)
    again = json.loads((folder / "comparison.json").read_text())
    assert again["summary"] == data["summary"] and again["paired_ndcg@10"] == data["paired_ndcg@10"]
    changed = ["compare", "--models=PSID", "--seeds=5", *flags(tmp_path, lr=0.002)]
    with pytest.raises(AssertionError, match="trained again"):
        compare_module.compare(changed[1:])  # another setting is another run


@pytest.mark.parametrize("killed_in_epoch", [1, 2])
def test_compare_resumes_an_interrupted_run(tmp_path, monkeypatch, killed_in_epoch):
    from genrec.trainer import Trainer

    real = Trainer.train_epoch

    def dies(self):
        if self.epoch == killed_in_epoch - 1:
            raise KeyboardInterrupt
        return real(self)

    argv = ["--models=PSID", "--seeds=1", *flags(tmp_path)]
    monkeypatch.setattr(Trainer, "train_epoch", dies)
    with pytest.raises(KeyboardInterrupt):
        compare_module.compare(argv)
    monkeypatch.setattr(Trainer, "train_epoch", real)
    _, folder = compare_module.compare(argv)
    (run,) = [p for p in folder.iterdir() if p.is_dir()]
    epochs = [json.loads(line).get("epoch") for line in (run / "metrics.jsonl").read_text().splitlines()]
    # killed in epoch 2: epoch 1 from the killed run, epoch 2 resumed; killed in epoch 1 (no
    # checkpoint yet): trained afresh in the same folder; then the final test
    assert epochs == [1, 2, None]


def test_compare_variants_of_one_model(tmp_path):
    argv = ["--models=SASRec,SASRec:loss_type=bce:hidden_size=16", *flags(tmp_path, backbone={})]
    report, folder = compare_module.compare(argv)
    rows = [line.split(" | ")[0].strip("| ") for line in report.splitlines() if line.startswith("| SASRec")]
    assert rows[:3] == ["SASRec", "SASRec:loss_type=bce:hidden_size=16", "SASRec − SASRec:loss_type=bce:hidden_size=16"]
    (bce,) = [p for p in folder.iterdir() if p.name.startswith("SASRec-loss_type=bce-hidden_size=16-seed")]
    assert (
        "loss_type: bce" in (bce / "config.yaml").read_text() and "hidden_size: 16" in (bce / "config.yaml").read_text()
    )
    # the table says which of each model's own settings differ from its config.yaml: here the
    # variant's, and a shared flag's (num_layers sizes both; SASRec's default is 2)
    report, folder = compare_module.compare([*argv, "--num_layers=1"])
    assert "- SASRec: `num_layers` 1 (2)\n" in report
    assert (
        "- SASRec:loss_type=bce:hidden_size=16: `hidden_size` 16 (64), `num_layers` 1 (2), `loss_type` bce (ce)\n"
        in report
    )
    changes = json.loads((folder / "comparison.json").read_text())["changed_model_settings"]
    assert changes["SASRec"] == {"num_layers": {"value": 1, "default": 2}}
    with pytest.raises(ConfigError, match="Model:key=value"):
        compare_module.compare(["--models=SASRec:loss_type", *flags(tmp_path, backbone={})])


def test_compare_draws_a_sweep_of_one_numeric_setting(tmp_path):
    models = "--models=PSID,Latte:n_latent_tokens=3,Latte:n_latent_tokens=1,Latte:n_latent_tokens=2"
    _, folder = compare_module.compare([models, *flags(tmp_path, epochs=1)])
    data = json.loads((folder / "comparison.json").read_text())
    (sweep,) = data["sweeps"]
    assert (sweep["model"], sweep["key"]) == ("Latte", "n_latent_tokens") and list(sweep["references"]) == ["PSID"]
    assert [point["value"] for point in sweep["points"]] == [1, 2, 3]  # ordered by the setting
    for point in sweep["points"]:
        assert point["ndcg@10"] == data["summary"][point["label"]]["ndcg@10"]
        (pair,) = [d for d in data["paired_ndcg@10"] if {d["a"], d["b"]} == {"PSID", point["label"]}]
        assert pair["a"] == "PSID"  # listed first, so the sweep's point − PSID is the pair negated
        flipped = {"mean": -pair["mean"], "low": -pair["high"], "high": -pair["low"], "p": pair["p"]}
        assert point["minus_reference"]["PSID"] == {**flipped, "p_holm": pair["p_holm"]}
    for suffix in (".png", ".svg"):
        assert (folder / f"sweep-Latte-n_latent_tokens{suffix}").stat().st_size > 1000


def test_sweeps_need_three_variants_apart_in_one_numeric_setting():
    summary = {
        label: {
            "ndcg@10": {"mean": 0.1, "std": 0.0},
            "recall@10": {"mean": 0.2, "std": 0.0},
            "converged": {"runs": 1, "converged": 1},
        }
        for label in "abcd"
    }
    base = {"model": "Latte", "n_latent_tokens": 1, "agg": "agg_sum", "lr": 0.001}
    two = {"a": base, "b": {**base, "n_latent_tokens": 2}, "c": {**base, "model": "PSID"}}
    assert compare_summary.sweeps(two, summary, []) == []  # two values are no sweep
    both = {**two, "d": {**base, "n_latent_tokens": 4, "lr": 0.01}}
    assert compare_summary.sweeps(both, summary, []) == []  # d changes two settings
    words = {"a": base, "b": {**base, "agg": "agg_max"}, "d": {**base, "agg": "agg_min"}}
    assert compare_summary.sweeps(words, summary, []) == []  # not numeric
    three = {**two, "d": {**base, "n_latent_tokens": 4}}
    differences = [{"a": "a", "b": "c", "mean": 0.01, "low": -0.01, "high": 0.03}]
    (sweep,) = compare_summary.sweeps(three, summary, differences)
    assert [point["value"] for point in sweep["points"]] == [1, 2, 4]
    assert [point["runs"] for point in sweep["points"]] == [1, 1, 1]  # one seed: no error bars to name
    assert sweep["points"][0]["minus_reference"] == {"c": {"mean": 0.01, "low": -0.01, "high": 0.03}}
    assert sweep["points"][1]["minus_reference"] == {"c": None}  # a pair not compared (other users)


def test_compare_flags_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="--models"):
        compare_module.compare(flags(tmp_path))
    with pytest.raises(ConfigError, match="twice"):
        compare_module.compare(["--models=PSID,PSID", *flags(tmp_path)])
    with pytest.raises(ConfigError, match="not --model"):
        compare_module.compare(["--models=PSID", "--model=PSID", *flags(tmp_path)])
    with pytest.raises(ConfigError, match="n_latent_tokens"):  # a key of no compared model is still an error
        compare_module.compare(["--models=PSID,TIGER", "--n_latent_tokens=2", *flags(tmp_path)])
    assert parse_seeds(3, 10) == [10, 11, 12] and parse_seeds("4,2", 0) == [4, 2] and parse_seeds([7], 0) == [7]
    specs = split_models("PSID:vq_level_order=[2,0,1], Latte:latent_mode=permutation:n_latent_tokens=6,SASRec")
    assert specs == ["PSID:vq_level_order=[2,0,1]", "Latte:latent_mode=permutation:n_latent_tokens=6", "SASRec"]
    assert parse_variant(specs[0]) == ("PSID", {"vq_level_order": [2, 0, 1]})
    for bad in (0, "1,x", "1,1"):
        with pytest.raises(ConfigError, match="seeds"):
            parse_seeds(bad, 0)
    with pytest.raises(ConfigError, match=r"--seeds=\[2026\]"):  # a seed written as a count
        parse_seeds(2026, 0)


@pytest.mark.parametrize("model", ["SASRec", "SimGR", "Latte"])
def test_settings_added_later_keep_earlier_runs_identity_at_their_neutral_value(model):
    from genrec import models
    from genrec.cache import digest
    from genrec.checkpoint import added_values, keys_with_role
    from genrec.config import load_config

    config = load_config([], model=model)
    settings = config.model_dump(mode="json")
    before_the_keys = {
        k: v
        for k, v in settings.items()
        if k not in keys_with_role(config, "location") and k not in added_values(config)
    }
    assert compare_module.run_identity(config) == digest(before_the_keys)[:10]
    changed = {
        "exclude_seen": True,
        "decode_precision": "bf16",
        "decode_workers": 2,
        "lora_rank": 4,
        "lora_alpha": 32.0,
        "duplicates": "drop",
        "valid_users": 100,
        "min_delta": 0.001,
        "architecture": "decoder",
        "latent_mode": "permutation",
        "vq_level_order": [2, 0, 1],
        "vq_modalities": ["text", "cf"],
        "cold_items": 0.05,
        "cold_items_seed": 3,
        "max_grad_norm": 1.0,
        "grad_accumulation": 2,
        "precision": "bf16",
        "deterministic": False,
        "metric_ks": [5, 10, 20],
        "select_metric": "recall@10",
        "split": "temporal",
        "sampled_softmax": 100,
        "negative_sampler": "uniform",
        "split_valid_time": 1.0,
        "split_test_time": 2.0,
        "backbone": "qwen2",
        "backbone_path": "models/qwen",
        "position_encoding": "rotary",
        "history_text": ["title"],
        "history_text_tokens": 8,
        "letter_cf_weight": 0.5,
        "letter_diversity_weight": 0.01,
        "letter_clusters": 4,
        "letter_temperature": 1.0,
    }
    every_model = [added_values(load_config([], model=name)) for name in models.names()]
    assert set(changed) == set().union(*every_model)  # the settings declared with a `since`
    for key in set(changed) & set(settings):
        assert compare_module.run_identity(
            config.model_copy(update={key: changed[key]})
        ) != compare_module.run_identity(config)


@pytest.mark.parametrize(
    "last, best, epochs, patience, interval, expected",
    [
        (30, 12, 100, 5, 3, True),  # stopped by patience before the cap
        (100, 85, 100, 5, 3, True),  # reached the cap with its best epoch at least patience x eval_interval before it
        (100, 88, 100, 5, 3, False),  # reached the cap while still improving
        (2, 2, 2, 20, 1, False),
    ],
)
def test_converged_means_validation_stopped_improving(last, best, epochs, patience, interval, expected):
    from types import SimpleNamespace

    config = SimpleNamespace(epochs=epochs, patience=patience, eval_interval=interval)
    assert compare_summary.converged(config, [{"epoch": e} for e in range(1, last + 1)], best) is expected
