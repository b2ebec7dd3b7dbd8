"""benchmarks/scale.py runs end to end at a tiny size: every stage reports seconds and memory."""

import importlib.util
import json
import subprocess
import sys

from conftest import REPO


def test_every_stage_reports_time_and_memory_at_two_sizes(tmp_path):
    stages = "load,split,embed_cf,quantize,collisions,trie,train,decode,rank"
    command = [
        sys.executable,
        str(REPO / "benchmarks/scale.py"),
        "--items=600,1200",
        "--per_item=6",
        f"--stages={stages}",
        "--codebook_size=16",
        "--train_targets=300",
        "--decode_users=20",
        "--beam=8",
        "--negatives=50",
        "--architectures=decoder,t5",
        "--vq_methods=rqkmeans,opq,rqvae",
        "--rqvae_epochs=3",
        f"--folder={tmp_path / 'scale'}",
        f"--figure={tmp_path / 'figure'}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    measured = {(r["items"], r["stage"], r.get("model")) for r in rows if "seconds" in r}
    expected_models = {
        "train": ["PSID (decoder)", "PSID (t5)", "SASRec", "SASRec (sampled)"],
        "decode": ["PSID (decoder)", "PSID (t5)"],
        "quantize": ["rqkmeans", "opq", "rqvae"],
        "collisions": ["rqkmeans", "opq", "rqvae"],
    }
    for size in (600, 1200):
        for stage in stages.split(","):
            for model in expected_models.get(stage, ["SASRec"] if stage == "rank" else [None]):
                assert (size, stage, model) in measured
    assert {r["epochs"] for r in rows if r.get("model") == "rqvae" and r["stage"] == "quantize" and "seconds" in r} == {
        3
    }
    stats = next(r for r in rows if r["items"] == 1200 and r["stage"] == "load")
    assert stats["interactions"] <= 1200 * 6 and stats["peak_rss_mb"] >= stats["rss_before_mb"] > 0
    assert {r["stage"] for r in rows if "growth_exponent" in r} == set(stages.split(","))
    assert (tmp_path / "figure.png").exists() and (tmp_path / "figure.svg").exists()


def test_the_svd_study_compares_arpack_with_randomized_iterations(tmp_path):
    command = [
        sys.executable,
        str(REPO / "benchmarks/cf_svd.py"),
        "--items=2000",
        "--dim=8",
        "--iterations=2,6",
        f"--folder={tmp_path / 'scale'}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    arpack, *randomized = [json.loads(line) for line in result.stdout.splitlines()]
    assert arpack["solver"] == "arpack" and list(arpack["singular_values"]) == ["1", "4", "7", "8"]
    assert [row["solver"] for row in randomized] == ["randomized, 2 iterations", "randomized, 6 iterations"]
    for row in randomized:
        assert 0 <= row["subspace_cosine_min"] <= row["subspace_cosine_mean"] <= 1 + 1e-6
    assert (
        randomized[1]["max_relative_singular_value_difference"]
        <= randomized[0]["max_relative_singular_value_difference"]
    )


def test_a_failed_size_reports_its_exit_code_signal_and_traceback_tail():
    spec = importlib.util.spec_from_file_location("scale_benchmark", REPO / "benchmarks/scale.py")
    scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale)
    killed = scale.failure(1_000_000, -9, "RQ-VAE: 3%|\n")
    assert killed["exit_code"] == -9 and killed["signal"] == "SIGKILL" and "memory" in killed["hint"]
    traceback = "\n".join(
        ["progress"] * 20 + ["Traceback (most recent call last):", '  File "x.py"', "ValueError: bad"]
    )
    raised = scale.failure(10_000, 1, traceback)
    assert raised["error"][-3:] == ["Traceback (most recent call last):", '  File "x.py"', "ValueError: bad"]
    assert len(raised["error"]) == 12 and "signal" not in raised


def test_the_rqvae_cost_study_separates_fixed_and_per_epoch_seconds():
    command = [
        sys.executable,
        str(REPO / "benchmarks/rqvae_cost.py"),
        "--items=1500",
        "--dim=16",
        "--epochs=1,3",
        "--codebook_size=16",
        "--hidden=32",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    one, three, summary = [json.loads(line) for line in result.stdout.splitlines()]
    assert (one["epochs"], three["epochs"]) == (1, 3) and one["peak_rss_mb"] > 0
    per_epoch = (three["seconds"] - one["seconds"]) / 2
    assert summary["seconds_per_epoch"] == round(per_epoch, 2)
    assert summary["default_200_epochs_seconds"] == round(one["seconds"] - per_epoch + 200 * per_epoch)
