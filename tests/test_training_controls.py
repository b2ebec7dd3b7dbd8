"""Training controls: gradient accumulation is the large batch's gradient, clipping bounds the
update's gradient norm, precision and determinism switches do what they say."""

import numpy as np
import pytest
import torch
from conftest import TINY_SYNTHETIC

import genrec.trainer as trainer_module
from genrec.errors import ConfigError
from genrec.evaluation import Catalogue
from genrec.pipeline import build_model, identity, load_split
from genrec.runtime import training_dtype
from genrec.trainer import Trainer

SASREC = dict(
    hidden_size=16,
    num_layers=1,
    num_heads=2,
    dropout_rate=0.0,
    warmup_steps=0,
    lr_schedule="constant",
    seed=3,
    epochs=1,
    eval_batch_size=64,
)


def trainer_for(make_config, tmp_path, batches, **settings):
    """A SASRec trainer whose epoch is the given batches (example indices), in that order."""
    config = make_config(**{**TINY_SYNTHETIC, **SASREC, "model": "SASRec", **settings})
    data, split = load_split(config)
    torch.manual_seed(0)
    model = build_model(config, data, split)
    trainer = Trainer(
        config, model, split, Catalogue(data.n_items), tmp_path, torch.device("cpu"), identity(config, data, model)
    )
    trainer_module.length_bucketed_batches = lambda *args, **kwargs: [np.asarray(b) for b in batches]
    return trainer


@pytest.fixture
def fixed_batches(monkeypatch):
    monkeypatch.setattr(trainer_module, "length_bucketed_batches", trainer_module.length_bucketed_batches)


def gradients_at_each_step(trainer, monkeypatch) -> list[list[torch.Tensor]]:
    """Run an epoch, recording the gradients every optimizer step applies."""
    steps, step = [], trainer.optimizer.step

    def recorded(*args, **kwargs):
        steps.append([p.grad.clone() for p in trainer.model.parameters() if p.grad is not None])
        return step(*args, **kwargs)

    monkeypatch.setattr(trainer.optimizer, "step", recorded)
    trainer.train_epoch()
    return steps


def test_accumulated_batches_take_the_large_batchs_step(make_config, tmp_path, fixed_batches, monkeypatch):
    (whole,) = gradients_at_each_step(trainer_for(make_config, tmp_path, [range(0, 64)], batch_size=64), monkeypatch)
    halves = trainer_for(make_config, tmp_path, [range(0, 32), range(32, 64)], batch_size=32, grad_accumulation=2)
    (accumulated,) = gradients_at_each_step(halves, monkeypatch)  # one optimizer step for the two batches
    assert halves.scheduler.last_epoch == 1 and len(whole) == len(accumulated)
    for a, b in zip(whole, accumulated):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
    odd = trainer_for(
        make_config, tmp_path, [range(0, 32), range(32, 64), range(64, 96)], batch_size=32, grad_accumulation=2
    )
    assert len(gradients_at_each_step(odd, monkeypatch)) == 2  # the last, lone batch is a step of its own


def test_clipping_bounds_the_gradient_norm_of_every_step(make_config, tmp_path, fixed_batches, monkeypatch):
    def norms(clip):
        trainer = trainer_for(make_config, tmp_path, [range(0, 64), range(64, 128)], batch_size=64, max_grad_norm=clip)
        return [
            float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
            for grads in gradients_at_each_step(trainer, monkeypatch)
        ]

    assert all(norm > 1e-2 for norm in norms(0.0))
    clipped = norms(1e-3)
    assert len(clipped) == 2 and all(norm <= 1e-3 * (1 + 1e-4) for norm in clipped)


def test_precision_and_determinism_switches(make_config, tmp_path, fixed_batches, monkeypatch):
    assert (
        training_dtype("auto", torch.device("cpu")) is None
        and training_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    )
    assert training_dtype("auto", torch.device("cuda")) == torch.bfloat16
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        training_dtype("fp16", torch.device("cpu"))
    trainer = trainer_for(make_config, tmp_path, [range(0, 64)], batch_size=64, precision="bf16")
    seen = []
    real_loss = trainer.model.batch_loss
    monkeypatch.setattr(
        trainer.model,
        "batch_loss",
        lambda *a: (
            seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None) or real_loss(*a)
        ),
    )
    assert np.isfinite(trainer.train_epoch()) and seen == [torch.bfloat16]
    for flag in (True, False):
        trainer = trainer_for(make_config, tmp_path / str(flag), [range(0, 64)], batch_size=64, deterministic=flag)
        states = []
        monkeypatch.setattr(
            trainer,
            "train_epoch",
            lambda _states=states: _states.append(torch.are_deterministic_algorithms_enabled()) or 1.0,
        )
        monkeypatch.setattr(trainer, "test", lambda: {})
        trainer.fit()
        assert states == [flag]


def test_tensorboard_mirrors_the_metrics_log(make_config, tmp_path):
    import json

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from genrec.pipeline import train

    config = make_config(
        **{
            **TINY_SYNTHETIC,
            **SASREC,
            "model": "SASRec",
            "epochs": 2,
            "batch_size": 64,
            "logger": "tensorboard",
            "run_name": "tracked",
        }
    )
    _, directory = train(config)
    events = EventAccumulator(str(directory / "tensorboard"))
    events.Reload()
    records = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines() if '"epoch"' in line]
    for name, key in (("train/loss", lambda r: r["loss"]), ("valid/ndcg@10", lambda r: r["valid"]["ndcg@10"])):
        logged = events.Scalars(name)
        assert [point.step for point in logged] == [1, 2]
        assert [point.value for point in logged] == pytest.approx([key(r) for r in records], rel=1e-5)
    results = json.loads((directory / "results.json").read_text())  # then the settings with the test metrics
    assert events.Scalars("test/ndcg@10")[0].value == pytest.approx(results["test"]["ndcg@10"], rel=1e-5)
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
    from genrec.checkpoint import keys_with_role

    assert "logger" in keys_with_role(make_config(), "location")  # tracking never changes a run's identity


def test_mlflow_gets_settings_epochs_and_test_metrics(make_config, monkeypatch, tmp_path):
    """Through a stand-in ``mlflow`` module (the package is optional and not installed for tests)."""
    import json
    import sys
    import types

    calls: list[tuple] = []
    fake = types.ModuleType("mlflow")
    for name in ("set_tracking_uri", "set_experiment", "start_run", "log_params", "log_metrics", "end_run"):
        setattr(fake, name, lambda *args, name=name, **kwargs: calls.append((name, args, kwargs)))
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from genrec.pipeline import train

    config = make_config(
        **{**TINY_SYNTHETIC, **SASREC, "model": "SASRec", "epochs": 2, "batch_size": 64, "logger": "mlflow"}
    )
    _, directory = train(config)
    names = [name for name, _, _ in calls]
    assert names[:4] == ["set_tracking_uri", "set_experiment", "start_run", "log_params"] and names[-1] == "end_run"
    assert calls[0][1][0] == (directory / "mlruns").resolve().as_uri()
    assert calls[3][1][0]["model"] == "SASRec" and calls[3][1][0]["metric_ks"] == "[1, 5, 10]"
    epochs = [kwargs["step"] for name, _, kwargs in calls if name == "log_metrics" and "step" in kwargs]
    assert epochs == [1, 2]
    (final,) = [args[0] for name, args, kwargs in calls if name == "log_metrics" and "step" not in kwargs]
    results = json.loads((directory / "results.json").read_text())
    assert final["test/ndcg_at_10"] == pytest.approx(results["test"]["ndcg@10"])
