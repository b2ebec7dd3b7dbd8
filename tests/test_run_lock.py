"""One trainer per run folder: a live holder in another process is named and refused, a dead one's
lock is taken over (and said), and ``compare`` never deletes a folder that another process trains."""

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_BACKBONE, TINY_SYNTHETIC

from genrec.cli import main
from genrec.errors import GenrecError
from genrec.run_lock import lock_path, run_lock

HOLDER = """
import sys
from pathlib import Path
from genrec.run_lock import run_lock
with run_lock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin, or kills us
"""


class Holder:
    """Another process that holds the lock of ``directory`` until it is released or killed."""

    def __init__(self, directory: Path):
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(directory)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout.readline().strip() == "held"

    def release(self) -> None:
        self.process.stdin.close()
        assert self.process.wait(timeout=60) == 0

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.kill()


def test_a_live_holder_is_named_and_a_clean_release_leaves_nothing(tmp_path):
    run = tmp_path / "runs" / "psid"
    with Holder(run) as holder:
        with pytest.raises(GenrecError, match=rf"is being trained by process {holder.process.pid} on "):
            with run_lock(run):
                pass
        holder.release()
    assert not lock_path(run).exists()
    with run_lock(run), run_lock(run):  # re-entrant within one process (compare, then train)
        assert lock_path(run).read_text().startswith(f"process {os.getpid()} ")
    assert not lock_path(run).exists()


def test_the_lock_of_a_process_that_died_is_taken_over_and_said(tmp_path, caplog):
    run = tmp_path / "psid"
    with Holder(run) as holder:
        pid = holder.process.pid
        holder.kill()  # no clean release: its lock file still names it
    assert lock_path(run).read_text().startswith(f"process {pid} ")
    with caplog.at_level(logging.WARNING, logger="genrec.run_lock"), run_lock(run):
        pass
    assert f"taking over the lock of process {pid}" in caplog.text


def test_compare_never_restarts_a_folder_another_process_is_training(tmp_path, capsys):
    """A folder with no checkpoint yet is what compare restarts by deleting it: not while it is held."""
    settings = {**TINY_SYNTHETIC, **TINY_BACKBONE, "epochs": 1, "batch_size": 64, "warmup_steps": 5, "num_beams": 4}
    common = [f"--{key}={value}" for key, value in settings.items()]
    output = tmp_path / "runs"
    args = ["compare", "--models=PSID", "--seeds=[3]", f"--output_dir={output}", f"--cache_dir={tmp_path / 'cache'}"]
    assert main([*args, *common]) == 0
    (run,) = [folder for folder in (output / "compare" / "Synthetic").iterdir() if folder.name.startswith("PSID")]
    for name in ("results.json", "best.pt", "last.pt", "metrics.jsonl", "test_ranks.npy"):
        (run / name).unlink(missing_ok=True)  # as if its first epoch were still running
    capsys.readouterr()
    with Holder(run) as holder:
        assert main([*args, *common]) == 2
        assert f"is being trained by process {holder.process.pid}" in capsys.readouterr().err
        assert (run / "config.yaml").is_file()  # not deleted under the other process
        holder.release()
    assert main([*args, *common]) == 0  # free again: restarted and trained
    assert (run / "results.json").is_file()
