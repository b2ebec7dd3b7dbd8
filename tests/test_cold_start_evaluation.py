"""The cold-start protocol: held-out items leave the training data whole, come back through the
cold-start path, and the rankers are scored on the users whose target was held out."""

import json

import numpy as np
import pytest
import torch
from conftest import TINY_BACKBONE, TINY_FULL_RANKING, TINY_SYNTHETIC

import genrec
from genrec import datasets
from genrec.analysis.coldstart import cold_start_evaluation, deduplicated, dense_rank
from genrec.config import load_config
from genrec.data import Interactions
from genrec.data.cold import hold_out_items
from genrec.errors import ConfigError
from genrec.pipeline import load_split, train


def test_held_out_items_leave_every_sequence_and_their_last_item_users_form_the_cold_test():
    full = Interactions(
        "hand",
        ["u0", "u1", "u2", "u3"],
        [f"i{k}" for k in range(6)],
        [np.array(s) for s in ([0, 1, 2, 3], [4, 0, 1, 2, 5], [5, 5, 4], [1, 2, 3, 4])],
        [{"title": f"item {k}"} for k in range(6)],
    )
    held = hold_out_items(full, 2 / 6, seed=0)
    cold = set(held.cold.tolist())
    assert len(cold) == 2
    keep = [k for k in range(6) if k not in cold]
    assert held.warm.item_ids == [f"i{k}" for k in keep]
    remap = {k: n for n, k in enumerate(keep)}
    expected = [[remap[i] for i in s.tolist() if i not in cold] for s in full.sequences]
    kept_users = [u for u, s in enumerate(expected) if len(s) >= 3]
    assert held.warm.user_ids == [f"u{u}" for u in kept_users]
    assert [s.tolist() for s in held.warm.sequences] == [expected[u] for u in kept_users]
    test = held.cold_test(max_item_seq_len=2)
    for user, history, target in zip(test.users, test.histories, test.targets):
        sequence = full.sequences[user].tolist()
        assert sequence[-1] in cold and target == len(keep) + held.cold.tolist().index(sequence[-1])
        warm_before = [remap[i] for i in sequence[:-1] if i not in cold]
        assert history.tolist() == warm_before[-2:] and len(warm_before)
    assert sorted(test.users.tolist()) == [
        u for u, s in enumerate(full.sequences) if s[-1] in cold and any(i not in cold for i in s[:-1].tolist())
    ]


def test_dense_ranking_and_deduplication_against_brute_force():
    rng = np.random.default_rng(0)
    vectors = torch.as_tensor(rng.normal(size=(12, 4)), dtype=torch.float32)
    vectors = vectors / vectors.norm(dim=1, keepdim=True)
    histories = [np.array([0, 3]), np.array([5])]
    user = [vectors[h].mean(0) for h in histories]
    ranked = dense_rank(histories, vectors, 3, exclude=[np.array([1]), np.array([])])
    for row, u in enumerate(user):
        scores = (vectors @ (u / u.norm())).tolist()
        order = [i for i in sorted(range(12), key=lambda i: -scores[i]) if not (row == 0 and i == 1)]
        assert ranked[row].tolist() == order[:3]
    pool = torch.tensor([[3, 7, 3, -1, 7, 2], [1, 1, 1, 4, -1, -1]])
    assert deduplicated(pool).tolist() == [[3, 7, -1, -1, -1, 2], [1, -1, -1, 4, -1, -1]]
    among = dense_rank(histories, vectors, 2, candidates=deduplicated(pool))
    for row, u in enumerate(user):
        allowed = sorted({i for i in pool[row].tolist() if i >= 0}, key=lambda i: -float(vectors[i] @ (u / u.norm())))
        assert among[row].tolist() == allowed[:2]


RUN = dict(
    batch_size=64,
    warmup_steps=5,
    eval_batch_size=64,
    num_beams=8,
    test_num_beams=16,
    seed=3,
    epochs=2,
    cold_items=0.1,
    cold_items_seed=1,
)
SIZES = {"PSID": TINY_BACKBONE, "SimGR": TINY_FULL_RANKING, "SASRec": TINY_FULL_RANKING}


def test_cold_start_evaluation_end_to_end(tmp_path):
    from genrec.cli import main

    cache, rows, folders = str(tmp_path / "cache"), {}, {}
    for model, sizes in SIZES.items():
        config = load_config(
            [],
            model=model,
            run_name=model,
            cache_dir=cache,
            output_dir=str(tmp_path / "runs"),
            **TINY_SYNTHETIC,
            **RUN,
            **sizes,
        )
        interactions, _ = load_split(config)
        full = datasets.get("Synthetic").load(config)
        assert interactions.n_items == full.n_items - round(0.1 * full.n_items)  # trained without the held-out items
        folders[model] = train(config)[1]
        rows[model] = cold_start_evaluation(genrec.load_run(folders[model], cache_dir=cache))
    assert (
        main(
            [
                "analyze",
                "coldstart",
                *map(str, folders.values()),
                f"--cache_dir={cache}",
                f"--output={tmp_path / 'out'}",
            ]
        )
        == 0
    )
    written = [json.loads(line) for line in (tmp_path / "out/coldstart.jsonl").read_text().splitlines()]
    assert written == [row for table in rows.values() for row in table]  # the command writes what the API computes
    assert (tmp_path / "out/coldstart.png").stat().st_size and (tmp_path / "out/coldstart.svg").stat().st_size
    by = {(model, row["users"], row["ranker"]): row for model, table in rows.items() for row in table}
    assert by["PSID", "cold", "model"]["n_users"] > 0
    assert by["SASRec", "cold", "model"]["recall@10"] == 0 and not rows["SASRec"][0]["adds_items"]  # cannot reach them
    assert rows["PSID"][0]["adds_items"] and rows["SimGR"][0]["adds_items"]
    for users in ("cold", "warm"):  # content alone does not depend on the model
        assert (
            by["PSID", users, "content"]["ndcg@10"]
            == by["SASRec", users, "content"]["ndcg@10"]
            == by["SimGR", users, "content"]["ndcg@10"]
        )
    with pytest.raises(ConfigError, match="cold_items=0"):
        config = load_config(
            [],
            model="SASRec",
            run_name="warm",
            cache_dir=cache,
            output_dir=str(tmp_path / "runs"),
            **TINY_SYNTHETIC,
            **{**RUN, "cold_items": 0.0},
            **SIZES["SASRec"],
        )
        cold_start_evaluation(genrec.load_run(train(config)[1], cache_dir=cache))
