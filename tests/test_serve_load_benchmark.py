"""benchmarks/serve_load.py against ``genrec serve`` started as its own process: a JSON line per
number of clients, every request answered, and the latency / throughput figure."""

import json
import subprocess
import sys

from conftest import REPO, TINY_BACKBONE, TINY_SYNTHETIC, train_run


def test_serve_load_measures_a_served_run_and_draws_the_curve(tmp_path):
    run = train_run(tmp_path, "PSID", **TINY_SYNTHETIC, **TINY_BACKBONE, epochs=1, test_num_beams=8)
    command = [
        sys.executable,
        str(REPO / "benchmarks/serve_load.py"),
        str(run),
        "--clients=1,4",
        "--requests=12",
        f"--cache_dir={tmp_path / 'cache'}",
        f"--figure={tmp_path / 'curve'}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]  # stdout holds the JSON lines alone
    assert [row["clients"] for row in rows] == [1, 4]
    for row in rows:
        assert row["requests"] == 12 and row["requests_per_s"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"]
        assert 1 <= row["decoding_passes"] <= 12 and row["torch_threads"] >= 1
        cpu = row["cpu_ms_per_request"]  # the HTTP process, the decoding process under it, the client
        assert set(cpu) == {"http", "decoding", "client"} and all(ms >= 0 for ms in cpu.values())
        assert cpu["decoding"] > 0
    assert rows[0]["decoding_passes"] == 12  # one client: one request per pass
    assert (tmp_path / "curve.png").stat().st_size > 0 and (tmp_path / "curve.svg").stat().st_size > 0
    assert not (run / "catalogue_changes.jsonl").exists()  # the server's journal went to a temporary file

    http_only = subprocess.run(
        command[:3] + ["--clients=2", "--requests=8", "--http_only=true", f"--cache_dir={tmp_path / 'cache'}"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert http_only.returncode == 0, http_only.stdout + http_only.stderr
    (row,) = [json.loads(line) for line in http_only.stdout.splitlines()]
    assert row["http_only"] and row["beam"] is None and row["requests"] == 8 and row["requests_per_s"] > 0
