"""Faults outside the data files: run folders and config files (issue classes 5, 6), over-wide
beams and decoding memory (7), diverging runs (8), degenerate embeddings (9), read-only or full disks (11), file
modes (14) and corrupt downloads. Every failure is one line that names the key or the path, and
leaves nothing written or overwritten."""

import errno
import gzip
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_BACKBONE, TINY_SYNTHETIC

import genrec.models.generative as generative
from genrec.cache import atomic_write_text
from genrec.cli import main
from genrec.config import load_config
from genrec.errors import ConfigError, DataError, GenrecError
from genrec.pipeline import build_model, load_split, train
from genrec.trainer import Trainer, TrainingDiverged

TINY_PSID = dict(
    model="PSID",
    **TINY_BACKBONE,
    batch_size=64,
    warmup_steps=5,
    eval_batch_size=64,
    num_beams=8,
    test_num_beams=16,
    seed=3,
    epochs=1,
)


def flags(**settings) -> list[str]:
    return [f"--{k}={v}" for k, v in settings.items()]


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("genrec: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- class 5: a run name cannot reach another run -------------------------------------------------


def test_run_names_that_leave_the_output_folder_are_refused(tmp_path, capsys):
    settings = {**TINY_SYNTHETIC, "cache_dir": tmp_path / "cache"}
    assert main(["run", *flags(**settings, output_dir=tmp_path / "runs", run_name="finished")]) == 0
    finished = snapshot(tmp_path / "runs")
    for output_dir, run_name in (
        (tmp_path / "runs/other", "../finished"),
        (tmp_path / "runs", "/abs"),
        (tmp_path / "runs", "a/../../finished"),
    ):
        assert main(["run", *flags(**settings, output_dir=output_dir, run_name=run_name)]) == 2
        assert "run_name" in one_line(capsys)
    (tmp_path / "runs/link").symlink_to(tmp_path / "runs/finished")  # a name inside that resolves to a run
    assert main(["run", *flags(**settings, output_dir=tmp_path / "runs", run_name="link")]) == 2
    assert "holds a run already" in one_line(capsys)
    (tmp_path / "runs/link").unlink()
    assert snapshot(tmp_path / "runs") == finished


# --- class 6: one --config, no key twice ----------------------------------------------------------


def test_config_given_twice_is_refused(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("seed: 1\n")
    b.write_text("seed: 2\n")
    with pytest.raises(ConfigError, match="--config given twice"):
        load_config([f"--config={a}", f"--config={b}"])


def test_a_key_twice_in_a_yaml_file_names_file_and_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("seed: 1\nepochs: 3\nseed: 2\n")
    with pytest.raises(ConfigError, match=f"{path}:3: key 'seed' given twice \\(first on line 1\\)"):
        load_config([f"--config={path}"])


# --- class 7: beams no wider than the catalogue, decoding within memory ---------------------------


def test_a_beam_wider_than_the_catalogue_decodes_at_the_catalogues_width(make_config, caplog):
    from genrec.evaluation import Catalogue, evaluate

    config = make_config(**TINY_SYNTHETIC, **{**TINY_PSID, "test_num_beams": 100000})
    data, split = load_split(config)
    model = build_model(config, data, split).eval()  # untrained weights suffice: only the width differs
    assert model.max_beams == data.n_items
    assert f"test_num_beams=100000 is wider than the {data.n_items} semantic IDs" in caplog.text
    wide = evaluate(model, split.test, Catalogue(data.n_items), batch_size=64, num_beams=100000)
    exact = evaluate(model, split.test, Catalogue(data.n_items), batch_size=64, num_beams=data.n_items)
    assert {k: v for k, v in wide.items() if k != "users_per_s"} == {
        k: v for k, v in exact.items() if k != "users_per_s"
    }
    assert wide["pruned"] == 0 and wide["beam_items"] == data.n_items  # the whole catalogue, in memory of 110 slots


def test_decoding_splits_users_to_fit_memory_and_refuses_what_cannot_fit(make_config, monkeypatch):
    config = make_config(**TINY_SYNTHETIC, **{**TINY_PSID, "model": "Latte"}, n_latent_tokens=2)
    data, split = load_split(config)
    torch.manual_seed(0)
    model = build_model(config, data, split).eval()
    histories = split.test.histories[:10]
    whole = model.recommend(histories, 10, 40)
    per_user = 40 * model.decode_bytes_per_beam
    monkeypatch.setattr(generative, "available_memory", lambda device: 2 * 3 * per_user)  # room for 3 users at a time
    assert model.users_per_search(40) == 3
    assert torch.equal(model.recommend(histories, 10, 40), whole)
    monkeypatch.setattr(generative, "available_memory", lambda device: per_user)
    with pytest.raises(GenrecError, match="a beam of 40 needs about .* GiB per user"):
        model.recommend(histories, 10, 40)


# --- class 8: non-finite settings and diverging runs ----------------------------------------------


@pytest.mark.parametrize("flag", ["--lr=.inf", "--lr=nan", "--weight_decay=-.inf", "--rqvae_beta=.nan"])
def test_non_finite_numbers_are_refused(flag):
    with pytest.raises(ConfigError, match=f"config key '{flag[2:].split('=')[0]}'.*finite"):
        load_config([flag])


def test_a_run_that_diverges_at_once_stops_with_epoch_and_step_and_leaves_no_folder(tmp_path, capsys):
    argv = flags(
        **TINY_SYNTHETIC, **TINY_PSID, cache_dir=tmp_path / "cache", output_dir=tmp_path / "runs", run_name="r", lr=1e8
    )
    assert main(["train", *argv]) == 2
    line = one_line(capsys)
    assert "training diverged" in line and "at epoch 1, step" in line and "no epoch finished" in line
    assert not (tmp_path / "runs/r").exists()  # the run_name is free again


def test_a_run_that_diverges_later_keeps_its_last_good_checkpoint(make_config, tmp_path, monkeypatch):
    config = make_config(**TINY_SYNTHETIC, **{**TINY_PSID, "epochs": 3}, run_name="r")
    real = Trainer.train_epoch

    def nan_in_epoch_2(self):
        if self.epoch == 1:
            monkeypatch.setattr(type(self.model), "batch_loss", lambda *args: torch.tensor(float("nan")))
        return real(self)

    monkeypatch.setattr(Trainer, "train_epoch", nan_in_epoch_2)
    with pytest.raises(
        TrainingDiverged, match=r"loss nan at epoch 2, step 1 of \d+ .*last good checkpoint is .*last.pt \(epoch 1\)"
    ):
        train(config)
    assert torch.load(tmp_path / "runs/r/last.pt", weights_only=True)["epoch"] == 1


# --- class 9: embeddings that cannot give semantic IDs --------------------------------------------


def three_items_each(root: Path) -> None:
    rng = np.random.default_rng(0)
    folder = root / "AmazonReviews2014/Three"
    folder.mkdir(parents=True)
    lines = [f"u{u} " + " ".join(f"i{i}" for i in rng.choice(60, 3, replace=False)) for u in range(200)]
    (folder / "user_sequence.txt").write_text("\n".join(lines) + "\n")


def test_collaborative_embeddings_without_co_occurrence_are_a_clear_error(tmp_path, capsys):
    three_items_each(tmp_path / "data")
    argv = flags(
        dataset="AmazonReviews2014",
        category="Three",
        data_dir=tmp_path / "data",
        cache_dir=tmp_path / "cache",
        output_dir=tmp_path / "runs",
        cf_emb_dim=8,
        vq_codebook_size=8,
    )
    assert main(["sids", *argv]) == 2
    assert "need items that co-occur in training sequences" in one_line(capsys)


def test_identical_item_vectors_are_a_clear_error(make_config, monkeypatch):
    import genrec.embeddings as embeddings

    monkeypatch.setattr(embeddings, "encode", lambda sentences, *args: np.zeros((len(sentences), 8), np.float32))
    config = make_config(**TINY_SYNTHETIC)
    data, split = load_split(config)
    from genrec.semantic_ids import semantic_ids

    with pytest.raises(
        DataError, match="text embeddings of Synthetic are the same vector for every item \\(all zero\\)"
    ):
        semantic_ids(config, data, split)


# --- class 11: unreadable inputs, read-only or full disks -----------------------------------------


def failing_writes(monkeypatch, under: Path, code: int) -> None:
    """Make every new file below ``under`` fail as a read-only or full file system would."""
    real_open = os.open

    def fake_open(path, flags, *args, **kwargs):
        if str(path).startswith(str(under)) and flags & os.O_CREAT:
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC, errno.EACCES])
def test_an_unwritable_output_folder_fails_before_evaluating(tmp_path, capsys, monkeypatch, code):
    settings = {**TINY_SYNTHETIC, **TINY_PSID, "cache_dir": tmp_path / "cache", "output_dir": tmp_path / "runs"}
    _, directory = train(load_config([], run_name="r", **settings))
    evaluated = []
    monkeypatch.setattr("genrec.evaluation.Evaluator.test", lambda *a, **k: evaluated.append(1))
    failing_writes(monkeypatch, tmp_path / "runs/eval", code)
    assert main(["evaluate", *flags(**settings, run_name="eval", checkpoint=directory / "best.pt")]) == 2
    assert f"cannot write {tmp_path / 'runs/eval/config.yaml'}: {os.strerror(code)}" in one_line(capsys)
    assert not evaluated and not (tmp_path / "runs/eval").exists()


def test_an_unwritable_cache_fails_before_building(tmp_path, capsys, monkeypatch):
    import genrec.semantic_ids as sid_module

    built = []
    monkeypatch.setattr(sid_module, "quantize", lambda *a: built.append(1))
    failing_writes(monkeypatch, tmp_path / "cache", errno.EROFS)
    assert main(["sids", *flags(**TINY_SYNTHETIC, cache_dir=tmp_path / "cache", output_dir=tmp_path / "runs")]) == 2
    line = one_line(capsys)
    assert f"cannot write {tmp_path / 'cache'}" in line and "Read-only file system" in line
    assert not built and not any((tmp_path / "runs").iterdir())


def test_a_full_disk_while_writing_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    atomic_write_text(path, "old")
    real = Path.write_text

    def full(self, *args, **kwargs):
        real(self, "half", *args[1:], **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(GenrecError, match=f"cannot write {path}: No space left on device"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_disk_that_fills_during_a_checkpoint_is_one_line_and_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    import torch

    from genrec.checkpoint import save_checkpoint

    path = tmp_path / "last.pt"
    save_checkpoint(path, {"run": 1}, {"epoch": 3})
    before = path.read_bytes()

    def filling(obj, target, *args, **kwargs):
        Path(target).write_bytes(b"PK half a zip")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 6912 vs 6808")

    monkeypatch.setattr(torch, "save", filling)
    with pytest.raises(GenrecError, match=f"cannot write {path}: the disk is full or failing"):
        save_checkpoint(path, {"run": 1}, {"epoch": 4})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_an_unreadable_data_file_is_one_line(tmp_path, capsys, monkeypatch):
    import genrec.datasets.io as io

    folder = tmp_path / "data/AmazonReviews2014/Mini"
    folder.mkdir(parents=True)
    (folder / "user_sequence.txt").write_text("u1 a b c\n")

    def denied(path, mode="r", *args, **kwargs):  # what chmod 000 does for a user other than root
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(io, "open", denied, raising=False)
    argv = flags(dataset="AmazonReviews2014", category="Mini", data_dir=tmp_path / "data", output_dir=tmp_path / "runs")
    assert main(["data", "stats", *argv]) == 2
    assert one_line(capsys) == f"genrec: error: {folder / 'user_sequence.txt'}: cannot read: Permission denied"


# --- class 14: new files keep the user's umask -----------------------------------------------------


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "f.json", "{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "f.json").stat().st_mode) == mode


# --- downloads are checked before they are kept ---------------------------------------------------


def test_a_corrupt_download_is_refused_and_leaves_nothing(tmp_path, make_config):
    from genrec.datasets.AmazonReviews2023 import download_files

    host = tmp_path / "host/AmazonReviews2023/benchmark/5core/last_out_w_his"
    host.mkdir(parents=True)
    whole = gzip.compress(("user_id,parent_asin,rating,timestamp,history\n" + "u,a,5,1,b\n" * 5000).encode())
    (host / "Video_Games.test.csv.gz").write_bytes(whole[:-8])  # the CRC-32 / length trailer cut off
    config = make_config(
        dataset="AmazonReviews2023",
        category="Video_Games",
        data_dir=str(tmp_path / "data"),
        download_base_url=(tmp_path / "host/AmazonReviews2023").as_uri(),
    )
    with pytest.raises(DataError, match="Video_Games.test.csv.gz is corrupt"):
        download_files(config, parts=("test",))
    assert not (tmp_path / "data").exists()  # not even the empty folders of the official layout
    (tmp_path / "data").mkdir()
    offline = config.model_copy(update={"download_base_url": "http://127.0.0.1:9/AmazonReviews2023"})  # refused
    with pytest.raises(DataError, match="could not download .* place it at"):
        download_files(offline, parts=("valid",))
    assert list((tmp_path / "data").iterdir()) == []  # the folder that was there stays, and nothing else
