"""``decode_precision``: which evaluations and recommendations run under bf16 autocast, and a run
decoded in bf16 on the CPU returns full, valid lists close to its fp32 ones."""

from types import SimpleNamespace

import numpy as np
import torch
from conftest import TINY_BACKBONE, TINY_SYNTHETIC, train_run

import genrec
from genrec.evaluation import Catalogue
from genrec.evaluation.evaluator import Evaluator
from genrec.runtime import decode_autocast


def test_decode_autocast_follows_the_setting_and_the_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for precision in ("auto", "fp32", "bf16"):
        assert decode_autocast(SimpleNamespace(decode_precision="bf16", precision=precision), cpu)
        assert not decode_autocast(SimpleNamespace(decode_precision="fp32", precision=precision), cuda)
    assert not decode_autocast(SimpleNamespace(decode_precision="auto", precision="auto"), cpu)
    assert decode_autocast(SimpleNamespace(decode_precision="auto", precision="auto"), cuda)
    assert not decode_autocast(SimpleNamespace(decode_precision="auto", precision="fp32"), cuda)


def test_a_run_decoded_in_bf16_gives_full_lists_close_to_fp32(tmp_path):
    directory = train_run(tmp_path, "PSID", **TINY_SYNTHETIC, **TINY_BACKBONE, epochs=3, test_num_beams=16)
    exact = genrec.load_run(directory, cache_dir=str(tmp_path / "cache"))
    fast = genrec.load_run(directory, cache_dir=str(tmp_path / "cache"), decode_precision="bf16")
    histories = exact.split.test.histories[:40]
    items, scores = exact.rank(histories, 10)
    fast_items, fast_scores = fast.rank(histories, 10)
    assert (fast_items >= 0).all() and (fast_items < exact.interactions.n_items).all()
    assert np.isfinite(fast_scores).all() and (np.diff(fast_scores, axis=1) <= 0).all()
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(items, fast_items)])
    assert overlap >= 0.8
    catalogue = Catalogue.of(fast.interactions, fast.config.category_level)
    assert Evaluator.from_config(fast.config, catalogue, "cpu").autocast
    assert not Evaluator.from_config(exact.config, catalogue, "cpu").autocast
