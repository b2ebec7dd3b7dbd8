"""The embedded Synthetic dataset: deterministic, and its planted patterns are really there."""

import itertools

import numpy as np
import pytest

from genrec.config import load_config
from genrec.datasets.Synthetic import generate
from genrec.pipeline import load_split
from genrec.semantic_ids import semantic_ids


@pytest.fixture(scope="module")
def data():
    return generate(load_config([]))


def raw_sequences(data):
    return [[data.item_ids[i] for i in seq] for seq in data.sequences]


def test_every_generated_item_is_in_the_catalogue_and_has_text(data):
    settings = load_config([])
    planted = 2 * settings.synthetic_n_twin_pairs + 3 * settings.synthetic_n_triples
    assert data.n_items == settings.synthetic_n_items + planted
    assert data.n_users == settings.synthetic_n_users
    assert all(text.get("title") and text.get("description") for text in data.item_text)


def test_deterministic_under_seed(data):
    again = generate(load_config([]))
    assert all(np.array_equal(a, b) for a, b in zip(data.sequences, again.sequences))
    other = generate(load_config(["--synthetic_seed=8"]))
    assert not all(np.array_equal(a, b) for a, b in zip(data.sequences, other.sequences))


def test_twins_are_near_identical_text_preferred_by_opposite_groups(data):
    text = dict(zip(data.item_ids, data.item_text))
    groups = np.array(data.extra["groups"])
    sequences = raw_sequences(data)
    assert len(data.extra["twin_pairs"]) == 16
    for pair in data.extra["twin_pairs"]:
        a, b = pair["items"]
        g1, g2 = pair["groups"]
        words_a, words_b = text[a]["title"].split(), text[b]["title"].split()
        assert len(words_a) == len(words_b) and sum(x != y for x, y in zip(words_a, words_b)) == 1
        assert {k: v for k, v in text[a].items() if k != "title"} == {k: v for k, v in text[b].items() if k != "title"}
        seen_a = {groups[u] for u, s in enumerate(sequences) if a in s}
        seen_b = {groups[u] for u, s in enumerate(sequences) if b in s}
        assert seen_a == {g1} and seen_b == {g2}  # each twin only ever consumed by its own group
        # after the shared anchor, each group moves to its own twin
        follows = {
            g: [
                s[t + 1]
                for u, s in enumerate(sequences)
                if groups[u] == g
                for t in range(len(s) - 1)
                if s[t] == pair["anchor"]
            ]
            for g in (g1, g2)
        }
        assert follows[g1].count(a) > 0 and follows[g2].count(b) > 0
        assert b not in follows[g1] and a not in follows[g2]


def test_intransitive_triples(data):
    sequences = [set(s) for s in raw_sequences(data)]
    assert len(data.extra["triples"]) == 8
    for triple in data.extra["triples"]:
        a, b, c = triple["items"]
        assert any(a in s and b in s for s in sequences)
        assert any(b in s and c in s for s in sequences)
        assert not any(a in s and c in s for s in sequences)


def test_sequences_follow_the_group_path(data):
    groups = data.extra["groups"]
    successor = [{x: p[(k + 1) % len(p)] for k, x in enumerate(p)} for p in data.extra["paths"]]
    follows = total = 0
    for user, seq in enumerate(raw_sequences(data)):
        for x, y in itertools.pairwise(seq):
            follows += successor[groups[user]].get(x) == y
            total += 1
    assert follows / total > 0.75  # follow_prob 0.8 plus chance; learnable order


def test_twins_share_semantic_id_prefixes(tmp_path):
    config = load_config([f"--cache_dir={tmp_path}"])
    data, split = load_split(config)
    sids = semantic_ids(config, data, split)
    index = {item: i for i, item in enumerate(data.item_ids)}
    for pair in data.extra["twin_pairs"]:
        a, b = (sids.codes[index[item]] for item in pair["items"])
        assert a[0] == b[0]
    shared = np.mean(
        [
            (sids.codes[index[p["items"][0]], :2] == sids.codes[index[p["items"][1]], :2]).all()
            for p in data.extra["twin_pairs"]
        ]
    )
    assert shared >= 0.75  # mostly siblings in the semantic-ID tree: what single-tree decoding struggles with
