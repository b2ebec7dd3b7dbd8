"""Constrained beam search against exhaustive scoring on tiny catalogues."""

import itertools

import numpy as np
import pytest
import torch

from genrec.decoding import INVALID, SIDTrie, aggregate_beams, beam_search


class ToyModel:
    """Log-probabilities that depend on the user and the whole prefix (like a decoder), plus a
    'cache' of prefixes that must be reordered with ``parents`` exactly as a KV cache would."""

    def __init__(self, level_sizes, batch_size, seed=0):
        self.level_sizes = level_sizes
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.table = {}
        self.cache = None

    def log_probs(self, user, prefix):
        key = (user, tuple(prefix))
        if key not in self.table:
            size = self.level_sizes[len(prefix)]
            logits = torch.as_tensor(self.rng.normal(size=size + 3) * 2)  # + 3 tokens outside this level's range
            self.table[key] = torch.log_softmax(logits, 0)[:size].float()
        return self.table[key]

    def step(self, level, tokens, parents):
        if level == 0:
            self.cache = [[[] for _ in range(tokens.shape[1])] for _ in range(self.batch_size)]
        else:  # reorder the cache by parents, append the chosen token, and check it matches `tokens`
            self.cache = [
                [self.cache[b][p] + [int(tokens[b, w, -1])] for w, p in enumerate(parents[b].tolist())]
                for b in range(self.batch_size)
            ]
            assert all(
                self.cache[b][w] == tokens[b, w].tolist()
                for b in range(self.batch_size)
                for w in range(tokens.shape[1])
            )
        return torch.stack(
            [torch.stack([self.log_probs(b, prefix) for prefix in beams]) for b, beams in enumerate(self.cache)]
        )

    def exhaustive(self, user, path):
        return float(sum(self.log_probs(user, path[:level])[token] for level, token in enumerate(path)))


def catalogue(seed, n_items=30, level_sizes=(3, 4, 5)):
    rng = np.random.default_rng(seed)
    all_codes = list(itertools.product(*(range(s) for s in level_sizes)))
    return np.array([all_codes[i] for i in rng.choice(len(all_codes), n_items, replace=False)]), list(level_sizes)


def test_trie_tables():
    codes = np.array([[0, 1], [0, 2], [1, 0]])
    trie = SIDTrie(codes, [2, 3])
    assert trie.children(0, torch.tensor([0])).tolist() == [[0, 1]]
    assert trie.children(1, torch.tensor([[0, 1], [1, 1]])).tolist() == [
        [[-1, 0, 1], [2, -1, -1]],
        [[2, -1, -1], [2, -1, -1]],
    ]
    with pytest.raises(ValueError, match="unique"):
        SIDTrie(np.array([[0, 1], [0, 1]]), [2, 3])


def sparse_everywhere(monkeypatch):
    from genrec.decoding import trie

    monkeypatch.setattr(trie, "SPARSE_ABOVE_BYTES", 0)
    monkeypatch.setattr(trie, "SPARSE_FILL", 1.0)


@pytest.mark.parametrize("latent", [0, 3])
def test_sparse_levels_give_the_dense_tables_rows(monkeypatch, latent):
    codes, sizes = catalogue(7, n_items=40, level_sizes=(3, 4, 5))
    dense = SIDTrie(codes, sizes, free_prefix_size=latent)
    sparse_everywhere(monkeypatch)
    sparse = SIDTrie(codes, sizes, free_prefix_size=latent)
    for level in range(dense.depth):
        nodes = torch.arange(int(dense.reached[level - 1].max()) + 1 if level else 1)
        shuffled = nodes[torch.randperm(len(nodes), generator=torch.Generator().manual_seed(level))]
        both = torch.stack([shuffled, shuffled.flip(0)])  # any shape, repeated nodes
        assert torch.equal(sparse.children(level, both), dense.children(level, both))


def test_a_million_four_level_ids_fit_in_sparse_rows():
    """The dense last level alone would be about a million rows of 256 (1 GB); sparse, the trie is
    80 MB (the third level's 64 MB table stays dense)."""
    rng = np.random.default_rng(0)
    codes = np.unique(rng.integers(0, 256, size=(1_050_000, 4)), axis=0)[:1_000_000]
    trie = SIDTrie(codes, [256] * 4)
    assert trie.nbytes < 100 * 2**20
    nodes = torch.as_tensor(trie.reached[2][:5])
    assert (trie.children(3, nodes).max(-1).values >= 0).all()


@pytest.mark.parametrize("seed, sparse", [(0, False), (1, False), (2, False), (0, True)])
def test_wide_beam_equals_exhaustive_ranking(seed, sparse, monkeypatch):
    if sparse:
        sparse_everywhere(monkeypatch)
    codes, sizes = catalogue(seed)
    model = ToyModel(sizes, batch_size=3, seed=seed)
    items, scores, tokens = beam_search(model.step, SIDTrie(codes, sizes), batch_size=3, num_beams=1000)
    for user in range(3):
        found = items[user] >= 0
        assert int(found.sum()) == len(codes) and not found[len(codes) :].any()  # every valid ID first, then padding
        exhaustive = sorted(((model.exhaustive(user, list(c)), i) for i, c in enumerate(codes.tolist())), reverse=True)
        assert items[user, found].tolist() == [i for _, i in exhaustive]
        np.testing.assert_allclose(scores[user, found].numpy(), [s for s, _ in exhaustive], rtol=1e-5)
        assert (tokens[user, found].numpy() == codes[items[user, found].numpy()]).all()
        assert torch.isinf(scores[user, ~found]).all()


def test_narrow_beam_returns_real_items_with_exact_scores():
    codes, sizes = catalogue(4, n_items=50, level_sizes=(4, 4, 4))
    model = ToyModel(sizes, batch_size=2, seed=4)
    items, scores, _ = beam_search(model.step, SIDTrie(codes, sizes), batch_size=2, num_beams=5)
    assert items.shape == (2, 5) and (items >= 0).all()
    for user in range(2):
        for item, score in zip(items[user].tolist(), scores[user].tolist()):
            assert score == pytest.approx(model.exhaustive(user, codes[item].tolist()), rel=1e-5)
        assert scores[user].tolist() == sorted(scores[user].tolist(), reverse=True)


def test_fewer_items_than_beams_pads_with_minus_one():
    codes, sizes = catalogue(5, n_items=4, level_sizes=(2, 2, 2))
    items, scores, _ = beam_search(ToyModel(sizes, 1).step, SIDTrie(codes, sizes), batch_size=1, num_beams=6)
    assert sorted(i for i in items[0].tolist() if i >= 0) == [0, 1, 2, 3]


@pytest.mark.parametrize("method", ["agg_sum", "agg_max"])
def test_latent_prefix_with_aggregation_equals_exhaustive(method):
    codes, sizes = catalogue(6, n_items=25)
    n_latent = 4
    model = ToyModel([n_latent, *sizes], batch_size=2, seed=6)
    trie = SIDTrie(codes, sizes, free_prefix_size=n_latent)
    items, scores, tokens = beam_search(model.step, trie, batch_size=2, num_beams=10_000)
    assert ((items >= 0).sum(1) == n_latent * len(codes)).all()  # every (latent token, item) path
    ranked, agg = aggregate_beams(items, scores, n_items=len(codes), k=len(codes), method=method)
    reduce = (lambda s: float(torch.logsumexp(torch.tensor(s), 0))) if method == "agg_sum" else max
    for user in range(2):
        per_item = [reduce([model.exhaustive(user, [z, *c]) for z in range(n_latent)]) for c in codes.tolist()]
        expected = sorted(range(len(codes)), key=lambda i: (-per_item[i], i))
        assert ranked[user].tolist() == expected
        np.testing.assert_allclose(agg[user].numpy(), [per_item[i] for i in expected], rtol=1e-5)


def test_unconstrained_wide_beam_ranks_every_code_tuple_and_flags_the_invented_ones():
    codes, sizes = catalogue(7, n_items=20)
    model = ToyModel(sizes, batch_size=2, seed=7)
    items, scores, tokens = beam_search(
        model.step, SIDTrie(codes, sizes), batch_size=2, num_beams=1000, constrained=False
    )
    item_of = {tuple(c): i for i, c in enumerate(codes.tolist())}
    every_tuple = list(itertools.product(*(range(s) for s in sizes)))
    for user in range(2):
        exhaustive = sorted(((model.exhaustive(user, list(t)), t) for t in every_tuple), reverse=True)
        assert [tuple(t) for t in tokens[user].tolist()] == [t for _, t in exhaustive]
        assert items[user].tolist() == [item_of.get(t, INVALID) for _, t in exhaustive]
        np.testing.assert_allclose(scores[user].numpy(), [s for s, _ in exhaustive], rtol=1e-5)
    constrained, _, _ = beam_search(model.step, SIDTrie(codes, sizes), batch_size=2, num_beams=1000)
    assert items[items >= 0].reshape(2, -1).tolist() == constrained[constrained >= 0].reshape(2, -1).tolist()


def test_aggregate_keeps_invalid_beams_as_their_own_slots():
    items = torch.tensor([[1, INVALID, 1, INVALID, 0]])
    scores = torch.log(torch.tensor([[0.3, 0.25, 0.1, 0.2, 0.15]]))
    ranked, agg = aggregate_beams(items, scores, n_items=3, k=4, method="agg_sum")
    assert ranked.tolist() == [[1, INVALID, INVALID, 0]]
    np.testing.assert_allclose(agg[0].numpy(), np.log([0.4, 0.25, 0.2, 0.15]), rtol=1e-6)


def test_aggregate_beams_by_hand():
    items = torch.tensor([[2, 0, 2, -1]])
    scores = torch.tensor([[np.log(0.3), np.log(0.4), np.log(0.2), float("-inf")]], dtype=torch.float32)
    ranked, agg = aggregate_beams(items, scores, n_items=4, k=3, method="agg_sum")
    assert ranked.tolist() == [[2, 0, -1]]
    np.testing.assert_allclose(agg[0, :2].numpy(), np.log([0.5, 0.4]), rtol=1e-6)
    ranked, agg = aggregate_beams(items, scores, n_items=4, k=2, method="agg_max")
    assert ranked.tolist() == [[0, 2]]


@pytest.mark.parametrize("n_latent", [0, 3])
def test_a_beam_wider_than_the_trie_keeps_only_valid_prefixes_and_changes_nothing(n_latent):
    codes, sizes = catalogue(8, n_items=12)
    trie = SIDTrie(codes, sizes, free_prefix_size=n_latent)
    levels = [n_latent, *sizes] if n_latent else sizes
    widths = []

    def step(model):
        def recording(level, tokens, parents):
            widths.append(tokens.shape[1])
            return model.step(level, tokens, parents)

        return recording

    huge = beam_search(step(ToyModel(levels, 2, seed=8)), trie, batch_size=2, num_beams=10**9)
    assert (
        max(widths) <= trie.n_prefixes[-1] and widths[1:] == trie.n_prefixes[:-1]
    )  # a level's beams: the prefixes before it
    exact = beam_search(ToyModel(levels, 2, seed=8).step, trie, batch_size=2, num_beams=trie.n_prefixes[-1])
    assert all(torch.equal(a, b) for a, b in zip(huge, exact))
