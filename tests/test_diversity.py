"""Diversity levers against plain-Python references: diverse beam search on a toy decoder, the cap
per ID prefix and MMR on random lists, and their use through ``Run.recommend``."""

import math
from collections import Counter

import numpy as np
import pytest
import torch
from test_api import runs  # noqa: F401  (the module's trained tiny runs)
from test_decoding import ToyModel, catalogue

import genrec
from genrec.decoding import SIDTrie, beam_search
from genrec.decoding.diversity import Diversity, cap_per_prefix, mmr
from genrec.errors import ConfigError
from genrec.ranking import EMPTY


def reference_diverse_search(model, codes, user, num_beams, groups, penalty):
    """Diverse beam search written out: groups in turn, each from its own beams, candidates penalised
    by earlier groups' beams on the same prefix, an item an earlier group holds forbidden."""
    depth = codes.shape[1]
    valid = [{tuple(c[:level]) for c in codes.tolist()} for level in range(depth + 1)]
    widths = [num_beams // groups + (g < num_beams % groups) for g in range(groups)]
    beams = [[((), 0.0)] for _ in range(groups)]
    for level in range(depth):
        taken = Counter()
        for group in range(groups):
            candidates = []
            for prefix, score in beams[group]:
                for token in range(model.level_sizes[level]):
                    path = (*prefix, token)
                    if path in valid[level + 1]:
                        true = score + float(model.log_probs(user, list(prefix))[token])
                        if level + 1 == depth:
                            penalised = -math.inf if taken[path] else true
                        else:
                            penalised = true - penalty * taken[path]
                        candidates.append((penalised, true, path))
            candidates.sort(key=lambda c: -c[0])
            beams[group] = [
                (path, true) for penalised, true, path in candidates[: widths[group]] if penalised > -math.inf
            ]
            taken.update(path for path, _ in beams[group])
    index = {tuple(c): i for i, c in enumerate(codes.tolist())}
    return sorted(((index[path], true) for group in beams for path, true in group), key=lambda item: -item[1])


@pytest.mark.parametrize(
    "seed,num_beams,groups,penalty", [(0, 6, 2, 0.5), (1, 8, 4, 2.0), (2, 7, 3, 0.0), (3, 9, 3, 100.0)]
)
def test_diverse_beam_search_equals_the_written_out_reference(seed, num_beams, groups, penalty):
    codes, sizes = catalogue(seed, n_items=40, level_sizes=(4, 4, 5))
    model = ToyModel(sizes, batch_size=2, seed=seed)  # also checks the cache reordering by `parents`
    items, scores, tokens = beam_search(model.step, SIDTrie(codes, sizes), 2, num_beams, groups=groups, penalty=penalty)
    for user in range(2):
        found = items[user] >= 0
        expected = reference_diverse_search(model, codes, user, num_beams, groups, penalty)
        assert items[user, found].tolist() == [item for item, _ in expected]
        np.testing.assert_allclose(scores[user, found].numpy(), [score for _, score in expected], rtol=1e-5)
        assert (tokens[user, found].numpy() == codes[items[user, found].numpy()]).all()
        assert len(set(items[user, found].tolist())) == int(found.sum())  # no item twice


def test_diverse_groups_spread_over_first_tokens_and_the_first_group_is_a_plain_search():
    codes, sizes = catalogue(5, n_items=60, level_sizes=(4, 4, 4))
    model = ToyModel(sizes, batch_size=2, seed=5)
    plain, plain_scores, _ = beam_search(model.step, SIDTrie(codes, sizes), 2, 4)
    items, _, _ = beam_search(model.step, SIDTrie(codes, sizes), 2, 8, groups=2, penalty=1000.0)
    for user in range(2):
        assert set(plain[user].tolist()) <= set(items[user].tolist())  # group 1 = a beam of 4
        first_tokens = {codes[i, 0] for i in items[user].tolist()}
        assert len(first_tokens) > len({codes[i, 0] for i in plain[user].tolist()}) or len(first_tokens) == 4
    with pytest.raises(ValueError, match="groups"):
        beam_search(model.step, SIDTrie(codes, sizes), 2, 3, groups=4)


def reference_cap(items, codes, prefix_length, cap, k):
    kept, counts = [], Counter()
    for item in items:
        key = tuple(codes[item, :prefix_length]) if item >= 0 else None
        if item >= 0 and counts[key] < cap:
            kept.append(item)
            counts[key] += 1
    return (kept + [EMPTY] * k)[:k]


@pytest.mark.parametrize("prefix_length,cap", [(1, 1), (1, 2), (2, 1), (3, 5)])
def test_prefix_cap_equals_the_greedy_walk(prefix_length, cap):
    rng = np.random.default_rng(prefix_length * 10 + cap)
    codes = rng.integers(0, 3, size=(40, 3))
    items = torch.as_tensor(np.stack([rng.permutation(40)[:25] for _ in range(6)]))
    items[0, -4:] = EMPTY
    scores = -torch.arange(25.0).expand(6, -1).clone()
    got, got_scores = cap_per_prefix(items, scores, torch.as_tensor(codes), prefix_length, cap, 10)
    for row in range(6):
        expected = reference_cap(items[row].tolist(), codes, prefix_length, cap, 10)
        assert got[row].tolist() == expected
        position = {item: i for i, item in enumerate(items[row].tolist())}
        assert got_scores[row].tolist() == [scores[row, position[i]].item() if i >= 0 else -math.inf for i in expected]


def reference_mmr(items, scores, vectors, weight, k):
    real = [i for i, item in enumerate(items) if item >= 0]
    low, high = min(scores[i] for i in real), max(scores[i] for i in real)
    relevance = {i: (scores[i] - low) / max(high - low, 1e-12) for i in real}
    chosen = []
    while real and len(chosen) < k:

        def value(i):
            closest = max((float(vectors[items[i]] @ vectors[items[j]]) for j in chosen), default=0.0)
            return weight * relevance[i] - (1 - weight) * closest

        best = max(real, key=lambda i: (value(i), -i))
        chosen.append(best)
        real.remove(best)
    return [items[i] for i in chosen] + [EMPTY] * (k - len(chosen))


@pytest.mark.parametrize("weight", [0.0, 0.3, 0.7, 1.0])
def test_mmr_equals_the_greedy_definition(weight):
    rng = np.random.default_rng(int(weight * 10))
    vectors = rng.normal(size=(30, 5))
    vectors = torch.as_tensor(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), dtype=torch.float32)
    items = torch.as_tensor(np.stack([rng.permutation(30)[:12] for _ in range(4)]))
    items[1, 8:] = EMPTY
    scores = torch.sort(torch.as_tensor(rng.normal(size=(4, 12)), dtype=torch.float32), dim=1, descending=True).values
    scores[1, 8:] = -math.inf
    got, _ = mmr(items, scores, vectors, weight, 10)
    for row in range(4):
        assert got[row].tolist() == reference_mmr(items[row].tolist(), scores[row].tolist(), vectors, weight, 10)
    if weight == 1.0:
        assert got[0].tolist() == items[0, :10].tolist()


def test_run_recommend_applies_each_lever(runs):  # noqa: F811
    folders, cache = runs
    for model in ("PSID", "Latte"):
        run = genrec.load_run(folders[model], cache_dir=str(cache))
        raw = [[run.interactions.item_ids[i] for i in run.split.test.histories[u]] for u in range(8)]
        codes = run.semantic_ids.codes
        capped = run.recommend(raw, k=5, diversity=Diversity(prefix_cap=1))
        for ranked in capped:
            firsts = [codes[run.item_index[item], 0] for item, _ in ranked]
            assert len(firsts) == len(set(firsts))
        plain = run.recommend(raw, k=16)
        diverse = run.recommend(raw, k=16, diversity=Diversity(groups=4, penalty=5.0))
        for b in diverse:
            assert len({item for item, _ in b}) == len(b)
            assert [s for _, s in b] == sorted((s for _, s in b), reverse=True)
        assert any([item for item, _ in a] != [item for item, _ in b] for a, b in zip(plain, diverse))
        by_mmr = run.recommend(raw, k=5, diversity=Diversity(mmr=0.5))
        for ranked, candidates in zip(by_mmr, plain):
            assert {item for item, _ in ranked} <= {item for item, _ in candidates}
        assert run.recommend(raw, k=5, diversity=Diversity(mmr=1.0)) == run.recommend(raw, k=5)
    sasrec = genrec.load_run(folders["SASRec"], cache_dir=str(cache))
    with pytest.raises(ConfigError, match="needs a beam model"):
        sasrec.recommend(raw, diversity=Diversity(groups=2))
    for ranked in sasrec.recommend(raw, k=5, diversity=Diversity(prefix_cap=1)):
        firsts = [sasrec.semantic_ids.codes[sasrec.item_index[item], 0] for item, _ in ranked]
        assert len(firsts) == len(set(firsts)) == 5


def test_recommend_and_analyze_commands(runs, tmp_path, capsys):  # noqa: F811
    import json

    from genrec.cli import main

    folders, cache = runs
    run = genrec.load_run(folders["PSID"], cache_dir=str(cache))
    history = [run.interactions.item_ids[i] for i in run.split.test.histories[0]]
    expected = run.recommend([history], k=4, diversity=Diversity(prefix_cap=1, mmr=0.5))[0]
    common = [f"--run={folders['PSID']}", f"--cache_dir={cache}", "--k=4", f"--history={','.join(history)}"]
    assert main(["recommend", *common, "--diversity=prefix_cap=1,mmr=0.5"]) == 0
    (line,) = [json.loads(text) for text in capsys.readouterr().out.splitlines() if text.startswith("{")]
    assert line["items"] == [item for item, _ in expected]
    assert main(["recommend", *common, "--diversity=prefix_cap=0"]) == 2
    assert "prefix_cap" in capsys.readouterr().err
    assert main(["recommend", *common, "--diversity=spread=1"]) == 2
    assert "spread" in capsys.readouterr().err

    out = tmp_path / "analysis"
    settings = "; num_beams=8; groups=4,num_beams=8; prefix_cap=1; mmr=0.5"
    assert (
        main(
            [
                "analyze",
                "diversity",
                str(folders["PSID"]),
                str(folders["SASRec"]),
                f"--cache_dir={cache}",
                f"--settings={settings}",
                "--users=40",
                f"--output={out}",
            ]
        )
        == 0
    )
    rows = [json.loads(text) for text in (out / "diversity.jsonl").read_text().splitlines()]
    assert [row["setting"] for row in rows] == [
        "plain",
        "plain;beam=10",
        "groups=4,penalty=1;beam=10",
        "cap=1/prefix1",
        "mmr=0.5",
        "plain",
        "cap=1/prefix1",
        "mmr=0.5",
    ]  # SASRec: no beam
    assert all(row["users"] == 40 for row in rows)
    for plain, capped in ((rows[0], rows[3]), (rows[5], rows[6])):  # one item per first token: at least as many
        assert capped["first_tokens@10"] >= plain["first_tokens@10"]
    assert (out / "diversity.png").stat().st_size and (out / "diversity.svg").stat().st_size
