"""Checkpoints carry their identity, load safely, and every bad one is a one-line error
(issue classes 1: identity, 12: damaged or foreign checkpoints, 13: code in a checkpoint)."""

import json
import os
import shutil

import pytest
import torch
import yaml
from conftest import TINY_BACKBONE, TINY_SYNTHETIC

from genrec.checkpoint import CheckpointError, read_checkpoint
from genrec.cli import main
from genrec.config import load_config
from genrec.pipeline import train

TINY_PSID = dict(
    model="PSID",
    **TINY_BACKBONE,
    batch_size=64,
    warmup_steps=5,
    eval_batch_size=64,
    num_beams=8,
    test_num_beams=16,
    seed=3,
    epochs=2,
)


def flags(**settings) -> list[str]:
    return [f"--{k}={v}" for k, v in settings.items()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny PSID run (2 epochs) shared by the tests; they copy what they change."""
    root = tmp_path_factory.mktemp("run")
    settings = {**TINY_SYNTHETIC, **TINY_PSID, "cache_dir": str(root / "cache"), "output_dir": str(root / "runs")}
    results, directory = train(load_config([], run_name="psid", **settings))
    return settings, directory, results


def evaluate_cli(settings: dict, checkpoint, capsys, **extra) -> tuple[int, str]:
    code = main(["evaluate", *flags(**{**settings, "run_name": "eval", **extra, "checkpoint": checkpoint})])
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("genrec: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_checkpoints_store_identity_as_plain_values(trained):
    settings, directory, _ = trained
    for name in ("best.pt", "last.pt"):
        state = torch.load(directory / name, weights_only=True)  # plain types: loads without code
        identity = state["identity"]
        assert identity["model"] == "PSID" and identity["settings"]["seed"] == 3
        assert identity["data"] and identity["semantic_ids"]["key"].startswith("sids-")
        assert "output_dir" not in identity["settings"] and "run_name" not in identity["settings"]


@pytest.mark.parametrize(
    "change, named",
    [
        ({"seed": 4}, ["seed", "semantic IDs differ"]),  # another seed's semantic IDs
        (
            {"synthetic_n_users": 100},
            ["dataset's content differs", "synthetic_n_users"],
        ),  # another dataset, same shapes
        ({"vq_kmeans_iters": 3}, ["vq_kmeans_iters", "semantic IDs differ"]),
        ({"lr": 0.01}, ["lr 0.003 in the checkpoint, 0.01 now"]),
    ],
)
def test_evaluating_another_runs_checkpoint_is_refused(trained, tmp_path, capsys, change, named):
    settings, directory, _ = trained
    output = tmp_path / "out"
    code, err = evaluate_cli({**settings, "output_dir": output, **change}, directory / "best.pt", capsys)
    assert_one_line_error(code, err, str(directory / "best.pt"), *named)
    assert not output.exists() or not any(output.iterdir())  # nothing written


def test_evaluation_settings_may_differ(trained, tmp_path, capsys):
    settings, directory, results = trained
    code, _ = evaluate_cli(
        {**settings, "output_dir": tmp_path}, directory / "best.pt", capsys, test_num_beams=16, eval_batch_size=7
    )
    assert code == 0
    evaluated = json.loads((tmp_path / "eval/results.json").read_text())
    assert evaluated["test"]["ndcg@10"] == pytest.approx(results["test"]["ndcg@10"], abs=1e-5)


def test_a_run_or_a_checkpoint_alone_is_evaluated_under_its_own_settings(trained, tmp_path, capsys):
    """``--run=DIR`` reads the run's config and best.pt; a ``--checkpoint`` without ``--model`` brings
    the settings it was trained with (none of them on the command line here), below the flags given."""
    settings, directory, results = trained
    assert main(["evaluate", f"--run={directory}", f"--output_dir={tmp_path}", "--run_name=by_run"]) == 0
    location = [f"--output_dir={tmp_path}", f"--cache_dir={settings['cache_dir']}", "--run_name=by_checkpoint"]
    assert main(["evaluate", f"--checkpoint={directory / 'best.pt'}", *location, "--test_num_beams=20"]) == 0
    by_run = json.loads((tmp_path / "by_run/results.json").read_text())
    by_checkpoint = json.loads((tmp_path / "by_checkpoint/results.json").read_text())
    assert by_run["test"]["ndcg@10"] == pytest.approx(results["test"]["ndcg@10"], abs=1e-5)
    assert by_checkpoint["num_beams"] == 20  # the flag wins over the recorded test_num_beams (16)
    assert yaml.safe_load((tmp_path / "by_checkpoint/config.yaml").read_text())["seed"] == 3
    capsys.readouterr()
    code = main(["evaluate", f"--run={directory}", f"--checkpoint={directory / 'last.pt'}"])
    assert_one_line_error(code, capsys.readouterr().err, "leave out --config and --checkpoint")
    code = main(["evaluate", f"--run={tmp_path}"])
    assert_one_line_error(code, capsys.readouterr().err, "is not a finished run")
    assert main(["evaluate", f"--run={directory}", "--help"]) == 0  # the run's own settings
    out = capsys.readouterr().out
    assert out.startswith("usage: genrec evaluate") and "--run=DIR" in out and "--seed=3" in out


def test_latte_checkpoint_is_evaluated_under_either_aggregation(tmp_path, capsys):
    """How an item's beams are scored is an evaluation setting: the weights do not depend on it."""
    settings = {
        **TINY_SYNTHETIC,
        **TINY_PSID,
        "model": "Latte",
        "n_latent_tokens": 2,
        "epochs": 1,
        "cache_dir": str(tmp_path / "cache"),
        "output_dir": str(tmp_path / "runs"),
    }
    results, directory = train(load_config([], run_name="latte", **settings))
    for method in ("agg_sum", "agg_max"):
        output = tmp_path / method
        code, err = evaluate_cli(
            {**settings, "output_dir": output}, directory / "best.pt", capsys, aggregation_method=method
        )
        assert code == 0, err
        evaluated = json.loads((output / "eval/results.json").read_text())
        assert evaluated["test"]["ndcg@10"] > 0
        if method == "agg_sum":
            assert evaluated["test"]["ndcg@10"] == pytest.approx(results["test"]["ndcg@10"], abs=1e-5)


def test_any_checkpoint_can_be_decoded_without_the_trie(tmp_path):
    """Whether beams may leave the trie is a decoding setting: a run trained with it on is evaluated off."""
    import genrec

    settings = {
        **TINY_SYNTHETIC,
        **TINY_PSID,
        "model": "PSID",
        "epochs": 1,
        "cache_dir": str(tmp_path / "cache"),
        "output_dir": str(tmp_path / "runs"),
    }
    _, directory = train(load_config([], run_name="psid", **settings))
    free = genrec.load_run(directory, cache_dir=str(tmp_path / "cache"), constrained_decoding=False)
    assert not free.model.constrained
    from genrec.evaluation import Catalogue, evaluate

    metrics = evaluate(free.model, free.split.test, Catalogue(free.interactions.n_items), 64, 8)
    assert metrics["invalid@10"] > 0  # a one-epoch model invents IDs once the trie is off


def copy_run(directory, tmp_path):
    copy = tmp_path / "runs" / "copy"
    shutil.copytree(directory, copy)
    return copy


def test_resume_refuses_changed_training_settings_and_names_them(trained, tmp_path, capsys):
    settings, directory, _ = trained
    run = copy_run(directory, tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    code = main(
        ["train", *flags(**{**settings, "epochs": 8, "lr": 0.01, "dropout_rate": 0.0, "checkpoint": run / "last.pt"})]
    )
    err = capsys.readouterr().err
    assert_one_line_error(
        code, err, "dropout_rate 0.1 in the checkpoint, 0.0 now", "lr 0.003", "may change only epochs"
    )
    assert "epochs 2" not in err  # a safe change is not listed as a reason
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nothing touched


def test_resume_with_safe_changes_records_them(trained, tmp_path):
    settings, directory, _ = trained
    run = copy_run(directory, tmp_path)
    results, at = train(
        load_config([], **{**settings, "epochs": 3, "patience": 30, "checkpoint": str(run / "last.pt")})
    )
    assert at == run and results["best_epoch"] >= 1
    (record,) = [json.loads(line) for line in (run / "resumes.jsonl").read_text().splitlines()]
    assert record["epoch"] == 2 and record["changed"] == {
        "epochs": {"checkpoint": 2, "now": 3},
        "patience": {"checkpoint": 20, "now": 30},
    }
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["epochs"] == 3 and saved["patience"] == 30 and saved["checkpoint"] is None
    epochs = [json.loads(line).get("epoch") for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, None]  # the first run's final line replaced by the resumed run's


def damaged(path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "random":
        path.write_bytes(os.urandom(4096))
    elif how == "state_dict_only":  # weights without identity (another program's checkpoint)
        torch.save(torch.load(path, weights_only=True)["model"], path)
    elif how == "directory":
        path.unlink()
        path.mkdir()
    elif how == "missing":
        path.unlink()


@pytest.mark.parametrize(
    "how, needle",
    [
        ("truncated", "truncated or corrupt"),
        ("empty", "truncated or corrupt"),
        ("random", "corrupt"),
        ("state_dict_only", "identity record"),
        ("directory", "not a file"),
        ("missing", "not found"),
    ],
)
def test_damaged_checkpoints_are_one_line(trained, tmp_path, capsys, how, needle):
    settings, directory, _ = trained
    run = copy_run(directory, tmp_path)
    damaged(run / "best.pt", how)
    code, err = evaluate_cli({**settings, "output_dir": tmp_path / "out"}, run / "best.pt", capsys)
    assert_one_line_error(code, err, "best.pt", needle)
    assert not (tmp_path / "out" / "eval").exists()  # a failed evaluation leaves no folder behind


def test_a_checkpoint_of_another_model_is_refused(trained, tmp_path, capsys):
    settings, directory, _ = trained
    code, err = evaluate_cli(
        {**settings, "output_dir": tmp_path, "model": "Latte", "n_latent_tokens": 2}, directory / "best.pt", capsys
    )
    assert_one_line_error(code, err, "model 'PSID' in the checkpoint, 'Latte' now")


class RunsCode:
    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_would_run_code_is_refused(trained, tmp_path, capsys):
    settings, directory, _ = trained
    RunsCode.marker = tmp_path / "pwned"
    crafted = tmp_path / "crafted.pt"
    torch.save({"identity": {"format": 1}, "model": RunsCode()}, crafted)
    for command in ("evaluate", "train"):
        code = main([command, *flags(**{**settings, "output_dir": tmp_path, "run_name": "x", "checkpoint": crafted})])
        assert_one_line_error(code, capsys.readouterr().err, "refused", "weights_only=True")
    assert not RunsCode.marker.exists()
    with pytest.raises(CheckpointError, match="refused"):
        read_checkpoint(crafted)


@pytest.mark.parametrize("part", ["results.json", "last.pt", "metrics.jsonl"])
def test_a_damaged_file_in_a_compare_folder_is_one_line(tmp_path, capsys, part):
    argv = [
        "compare",
        "--models=SASRec",
        *flags(
            **TINY_SYNTHETIC,
            hidden_size=8,
            num_layers=1,
            epochs=1,
            batch_size=64,
            cache_dir=tmp_path / "cache",
            output_dir=tmp_path / "runs",
        ),
    ]
    assert main(argv) == 0
    (run,) = (tmp_path / "runs/compare/Synthetic").glob("SASRec-seed*")
    if part == "last.pt":
        (run / "results.json").unlink()  # an interrupted run: compare resumes it from last.pt
    (run / part).write_bytes(b"\x00garbage{")
    capsys.readouterr()
    assert_one_line_error(main(argv), capsys.readouterr().err, str(run / part))


def test_a_setting_added_later_reads_as_its_neutral_value(trained, tmp_path, capsys):
    from genrec.checkpoint import added_values
    from genrec.config import load_config

    settings, directory, _ = trained
    run = copy_run(directory, tmp_path)
    state = torch.load(run / "best.pt", weights_only=True)
    for key in added_values(load_config([], **settings)):  # as written before these settings existed
        state["identity"]["settings"].pop(key, None)
    torch.save(state, run / "best.pt")
    assert (
        evaluate_cli({**settings, "output_dir": tmp_path / "a", "duplicates": "keep"}, run / "best.pt", capsys)[0] == 0
    )
    code, err = evaluate_cli({**settings, "output_dir": tmp_path / "b", "duplicates": "drop"}, run / "best.pt", capsys)
    assert_one_line_error(code, err, "duplicates '(absent)' in the checkpoint, 'drop' now")
