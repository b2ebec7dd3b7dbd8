"""How a run decodes: ``decode_precision`` (which evaluations and recommendations run under bf16
autocast; a run decoded in bf16 on the CPU returns full, valid lists close to its fp32 ones) and
``decode_workers`` (batches decoded side by side give exactly the lists of one at a time)."""

import threading
import time
from types import SimpleNamespace

import numpy as np
import torch
from conftest import TINY_BACKBONE, TINY_SYNTHETIC, train_run

import genrec
from genrec.evaluation import Catalogue
from genrec.evaluation.evaluator import Evaluator, recommend_all
from genrec.runtime import decode_autocast, in_parallel


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


def test_in_parallel_keeps_the_order_uses_the_workers_and_restores_torch_threads():
    threads = torch.get_num_threads()
    seen_threads, inside = set(), []

    def slow_square(value):
        seen_threads.add(threading.get_ident())
        inside.append(torch.get_num_threads())
        time.sleep(0.05)  # long enough that the pool hands the items to both workers
        return value * value

    assert in_parallel(slow_square, range(8), workers=2) == [v * v for v in range(8)]
    assert len(seen_threads) == 2 and set(inside) == {1} and torch.get_num_threads() == threads
    assert in_parallel(slow_square, [3], workers=2) == [9]  # one item: no pool


def test_batches_decoded_side_by_side_give_the_lists_of_one_at_a_time(tmp_path):
    directory = train_run(tmp_path, "PSID", **TINY_SYNTHETIC, **TINY_BACKBONE, epochs=2, test_num_beams=12)
    one = genrec.load_run(directory, cache_dir=str(tmp_path / "cache"))
    two = genrec.load_run(directory, cache_dir=str(tmp_path / "cache"), decode_workers=2)
    histories = one.split.test.histories[:50]
    (items, scores), (side_items, side_scores) = (
        one.rank(histories, 10, batch_size=8),
        two.rank(histories, 10, batch_size=8),
    )
    assert np.array_equal(items, side_items) and np.allclose(scores, side_scores)
    examples = one.split.test
    alone = recommend_all(one.model, examples, 16, 10, 12)
    assert np.array_equal(alone, recommend_all(one.model, examples, 16, 10, 12, workers=2))
