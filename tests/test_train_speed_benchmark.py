"""benchmarks/train_speed.py times each variant, an architecture with settings of its own, on the same
targets: one line per variant with the settings it says it ran."""

import json
import subprocess
import sys

from conftest import REPO, TINY_BACKBONE, TINY_SYNTHETIC


def test_train_speed_of_architectures_with_their_own_settings(tmp_path):
    settings = {**TINY_SYNTHETIC, **TINY_BACKBONE, "cache_dir": tmp_path / "cache", "epochs": 1}
    command = [
        sys.executable,
        str(REPO / "benchmarks/train_speed.py"),
        f"--config={REPO / 'configs/quickstart.yaml'}",
        "--variants=hf-t5,decoder,hf_causal_lm:d_ff=24,hf_causal_lm:backbone=gpt2",
        *(f"--{key}={value}" for key, value in settings.items()),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["variant"] for row in rows] == [
        "hf-t5",
        "decoder",
        "hf_causal_lm:d_ff=24",
        "hf_causal_lm:backbone=gpt2",
    ]
    assert len({row["targets"] for row in rows}) == 1 and all(row["targets_per_s"] > 0 for row in rows)
    llama, gpt2 = rows[2]["parameters"], rows[3]["parameters"]
    assert llama != gpt2 and all(row["speedup_vs_hf"] > 0 for row in rows)
