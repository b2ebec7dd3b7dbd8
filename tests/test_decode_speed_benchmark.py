"""benchmarks/decode_speed.py runs on every backbone: the T5 against Hugging Face ``generate`` (the
same top-10 lists), the causal ones (which ``generate`` cannot run with genrec's trie) on their own,
and bf16 decoding against genrec's own fp32 search."""

import json
import subprocess
import sys

import pytest
from conftest import REPO, TINY_BACKBONE, TINY_SYNTHETIC


@pytest.mark.parametrize("architecture", ["t5", "decoder", "hf_causal_lm"])
def test_decode_speed_on_each_architecture(tmp_path, architecture):
    settings = {**TINY_SYNTHETIC, **TINY_BACKBONE, "architecture": architecture, "cache_dir": tmp_path / "cache"}
    command = [
        sys.executable,
        str(REPO / "benchmarks/decode_speed.py"),
        "--beams=4,12",
        "--users=8",
        "--batch_size=4",
        *(f"--{key}={value}" for key, value in settings.items()),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["beam"] for row in rows] == [4, 12] and all(row["ours_users_per_s"] > 0 for row in rows)
    assert all(row["architecture"] == architecture for row in rows)
    if architecture == "t5":
        assert all(row["top10_identical"] == 1.0 for row in rows)  # the same search, exactly
    else:
        assert all(row["reference"] is None and row["reference_users_per_s"] is None for row in rows)


def test_decode_speed_in_bf16_against_fp32(tmp_path):
    settings = {
        **TINY_SYNTHETIC,
        **TINY_BACKBONE,
        "cache_dir": tmp_path / "cache",
        "decode_precision": "bf16",
        "decode_workers": 2,
    }
    command = [
        sys.executable,
        str(REPO / "benchmarks/decode_speed.py"),
        "--beams=4",
        "--users=8",
        "--batch_size=4",
        *(f"--{key}={value}" for key, value in settings.items()),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["decode_precision"] == "bf16" and row["reference"] == "fp32" and row["decode_workers"] == 2
    assert 0 < row["top10_overlap"] <= 1 and row["reference_users_per_s"] > 0


def test_decode_profile_splits_the_time_of_each_architecture(tmp_path):
    settings = {**TINY_SYNTHETIC, **TINY_BACKBONE, "cache_dir": tmp_path / "cache"}
    command = [
        sys.executable,
        str(REPO / "benchmarks/decode_profile.py"),
        "--architectures=t5,decoder,hf_causal_lm",
        f"--figure={tmp_path / 'profile'}",
        "--beam=6",
        "--users=8",
        "--batch_size=4",
        *(f"--{key}={value}" for key, value in settings.items()),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [row["architecture"] for row in rows] == ["t5", "decoder", "hf_causal_lm"]
    for row in rows:
        assert row["users_per_s"] > 0 and row["gflop_per_user"] > 0 and row["peak_gflop_per_s"] > 0
        shares = row["shares"]
        assert {"history", "search", "python"} <= set(shares) and any(key.startswith("steps:") for key in shares)
        assert all(share >= 0 for share in shares.values()) and sum(shares.values()) >= 0.99
    assert (tmp_path / "profile.png").stat().st_size > 0 and (tmp_path / "profile.svg").stat().st_size > 0
