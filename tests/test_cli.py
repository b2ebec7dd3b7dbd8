"""Command line and main.py: outputs, resolved config next to them, and errors as one clear line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY_SYNTHETIC

from genrec import datasets, models
from genrec.cli import main, run_command
from genrec.config import GlobalSettings, load_config


def flags(tmp_path, **extra):
    settings = {**TINY_SYNTHETIC, "cache_dir": tmp_path / "cache", "output_dir": tmp_path / "runs", **extra}
    return [f"--{k}={v}" for k, v in settings.items()]


def test_run_writes_summary_and_resolved_config(tmp_path, capsys):
    assert run_command(("run",), flags(tmp_path, run_name="quick")) == 0
    out = capsys.readouterr().out
    assert "Synthetic" in out and "unique: 100.00%" in out and "train_examples" in out
    run = tmp_path / "runs" / "quick"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["dataset"] == "Synthetic" and config["vq_codebook_size"] == 8
    summary = json.loads((run / "summary.json").read_text())
    assert summary["data"]["users"] == 120 and summary["semantic_ids"]["unique"] == 1.0


def test_sids_command_with_tiger(tmp_path, capsys):
    assert main(["sids", *flags(tmp_path, vq_collision="tiger", run_name="t")]) == 0
    out = capsys.readouterr().out
    assert "collision=tiger" in out and "ID length: 4" in out
    report = json.loads((tmp_path / "runs/t/sids.json").read_text())
    assert report["id_length"] == 4 and len(report["levels"]) == 3


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["sids", "--vq_codebok_size=8"]) == 2
    err = capsys.readouterr().err
    assert "genrec: error: unknown config key 'vq_codebok_size'" in err and "vq_codebook_size" in err
    assert "Traceback" not in err
    assert main(["frobnicate"]) == 2


def test_help_describes_every_key_by_layer(capsys):
    assert main(["sids", "--dataset=MovieLens", "--help"]) == 0
    out = capsys.readouterr().out
    settings = out.split("settings, at the values")[1]
    assert "usage: genrec" in out and "--category=ml-100k" in settings and "--vq_codebook_size=256" in settings
    assert (
        settings.index("every run (defaults: genrec/default.yaml)")
        < settings.index("dataset MovieLens")
        < settings.index("--category=")
    )
    assert "\nmodel " not in settings  # no model given: no model layer
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for model in models.names():  # the command list names every model the registry finds
        assert model in out.split("commands:")[1].split("\n\n")[0]
    assert main(["train", "--model=Latte", "--n_latent_tokens=4", "--help"]) == 0
    out = capsys.readouterr().out
    layers = out.split("settings, at the values")[1]
    assert layers.index("dataset Synthetic") < layers.index("model Latte (defaults: genrec/models/Latte/config.yaml)")
    assert "--n_latent_tokens=4" in layers.split("model Latte")[1] and "--sent_emb_fields=[title, brand" in layers
    described = [line for line in layers.splitlines() if line.startswith("  --")]
    assert len(described) == len(load_config([], model="Latte").model_dump())


@pytest.mark.parametrize(
    "words, own",
    [
        (["recommend"], ["--history=ID,ID", "--allow=ID,ID", "--category=NAME", "--k=10"]),
        (["serve"], ["--max_batch=64", "--api_key_file=PATH"]),
        (["finetune"], ["--kl=0.04", "--group=8"]),
        (["analyze", "tree"], ["--users=512"]),
        (["plot"], ["--output=DIR"]),
    ],
)
def test_help_of_a_command_that_reads_a_run_lists_its_own_options(capsys, words, own):
    """Not every training key: a finished run brings its settings from its folder."""
    assert main([*words, "--help"]) == 0
    out = capsys.readouterr().out
    assert all(option in out for option in own), out
    assert "--vq_codebook_size" not in out and "settings, at the values" not in out


def test_every_command_is_listed_loads_from_its_module_and_has_its_help():
    """cli.py only dispatches: each command lives in genrec.commands.<module> and says what it does."""
    from genrec.cli import USAGE, all_commands

    listed = USAGE.split("commands:")[1].split("examples:")[0]
    commands = all_commands()
    assert {("analyze", name) for name in ("tree", "beams", "diversity", "coldstart")} <= set(commands)
    for words, command in commands.items():
        function = command.load()
        assert function.__module__ == f"genrec.commands.{command.module}"
        assert (function.__doc__ or "").strip().startswith(f"``genrec {' '.join(words)}"), words
        assert f"\n  {' '.join(words)} " in listed, words


def test_every_key_of_every_dataset_and_model_is_described():
    schemas = [
        GlobalSettings,
        *(datasets.get(n).Settings for n in datasets.names()),
        *(models.get(n).Settings for n in models.names()),
    ]
    missing = [
        f"{schema.__module__}.{key}"
        for schema in schemas
        for key, field in schema.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert not missing


def test_download_command_needs_a_dataset_with_official_files(capsys):
    assert main(["data", "download", "--dataset=Synthetic"]) == 2
    assert "has no official download" in capsys.readouterr().err


def test_main_py_and_console_script(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "main.py"), *flags(tmp_path, run_name="m")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "runs/m/summary.json").exists()
    script = Path(sys.executable).parent / "genrec"  # installed next to the interpreter by pip
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.strip() == "0.1.0"


def test_serve_flags_are_checked_before_the_run_loads(capsys):
    for flag, message in [
        ("--port=99999", "--port must be a TCP port"),
        ("--max_wait_ms=abc", "--max_wait_ms must be a finite number"),
        ("--max_wait_ms=.nan", "--max_wait_ms must be a finite number"),
        ("--max_wait_ms=-1", "--max_wait_ms must be a finite number >= 0"),
        ("--max_body_mb=0", "--max_body_mb must be a finite number"),
        ("--api_key=secret", "set GENREC_API_KEY or pass --api_key_file"),
        ("--api_key_file=/nonexistent/key", "--api_key_file: cannot read /nonexistent/key"),
    ]:
        assert main(["serve", "--run=nowhere", flag]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_serving_beyond_this_machine_without_a_key_warns_and_short_keys_are_refused(tmp_path, capsys, monkeypatch):
    from genrec.commands.serve import api_key_of, is_loopback

    monkeypatch.delenv("GENREC_API_KEY", raising=False)
    assert main(["serve", "--run=nowhere", "--host=0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "warning: serving on 0.0.0.0 beyond this machine without an API key" in err and "not a finished run" in err
    assert main(["serve", "--run=nowhere"]) == 2
    assert "warning" not in capsys.readouterr().err
    (tmp_path / "short").write_text("abc\n")
    assert main(["serve", "--run=nowhere", f"--api_key_file={tmp_path / 'short'}"]) == 2
    assert "at least 16 characters" in capsys.readouterr().err
    (tmp_path / "key").write_text("k" * 20 + "\nignored\n")
    assert api_key_of(tmp_path / "key") == "k" * 20
    monkeypatch.setenv("GENREC_API_KEY", "from-the-environment")
    assert api_key_of(None) == "from-the-environment"
    assert [is_loopback(h) for h in ("127.0.0.1", "127.5.0.1", "::1", "localhost", "0.0.0.0", "::", "10.0.0.2")] == [
        True,
        True,
        True,
        True,
        False,
        False,
        False,
    ]


def test_automatic_run_folders_never_collide_and_never_nest_in_a_run(tmp_path, monkeypatch):
    import time

    from genrec.errors import GenrecError
    from genrec.pipeline import run_directory

    monkeypatch.setattr(time, "strftime", lambda fmt: "20261202-120000")  # two commands in the same second
    config = load_config([], output_dir=str(tmp_path / "runs"))
    with run_directory(config, "sids") as first, run_directory(config, "sids") as second:
        assert (first.name, second.name) == ("sids-Synthetic-20261202-120000", "sids-Synthetic-20261202-120000-2")
        (first / "best.pt").write_bytes(b"")
        nested = load_config([], output_dir=str(first))
        with pytest.raises(GenrecError, match="is a finished run's folder"), run_directory(nested, "train"):
            pass


def test_grpo_with_every_reward_weight_zero_is_refused():
    from genrec.finetune.grpo import GRPOSettings

    with pytest.raises(ValueError, match="every reward weight is 0"):
        GRPOSettings(reward="relevance:0,validity:0")


def test_plot_and_analyses_name_folders_that_are_no_runs_and_refuse_runs_of_several_datasets(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    assert main(["plot", str(data)]) == 2
    err = capsys.readouterr().err
    assert f"{data} is not a run folder (it has no config.yaml)" in err and "delete" not in err
    assert data.exists()
    for name, dataset in (("a", "dataset: Synthetic\n"), ("b", "dataset: AmazonReviews2018\ncategory: Scientific\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text(dataset)
    assert main(["analyze", "tree", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "compares runs on one dataset; these are runs of 2 (Synthetic: a; AmazonReviews2018/Scientific: b)" in (
        capsys.readouterr().err
    )
    assert main(["plot", str(tmp_path / "a")]) == 2
    assert "has no metrics.jsonl yet" in capsys.readouterr().err


def test_help_piped_into_a_reader_that_stops_early_ends_quietly():
    import subprocess

    child = subprocess.Popen(
        [sys.executable, "-m", "genrec", "train", "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO
    )
    child.stdout.close()  # the reader is gone before genrec writes (it takes a second to start)
    errors = child.stderr.read().decode()
    assert child.wait(timeout=120) == 141 and "Traceback" not in errors, errors
