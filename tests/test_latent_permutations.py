"""Latte's latent tokens bound to orders of the ID levels (``latent_mode: permutation``): every latent
token decodes real items in its own order, and a wide beam over the permuted tries equals exhaustive
teacher-forced scoring, on every backbone."""

import itertools

import numpy as np
import pytest
import torch
from conftest import tiny_causal_lm

from genrec.models.sid_decoder import SIDDecoder
from genrec.models.sid_seq2seq import SIDSeq2Seq, SIDVocabulary

LEVELS = (3, 4, 5)
ORDERS = tuple(itertools.permutations(range(3)))


def toy_setup(architecture, seed=0, n_items=20):
    rng = np.random.default_rng(seed)
    space = list(itertools.product(*(range(s) for s in LEVELS)))
    codes = np.array([space[i] for i in rng.choice(len(space), n_items, replace=False)])
    vocab = SIDVocabulary(LEVELS, len(ORDERS), ORDERS)
    torch.manual_seed(seed)
    if architecture == "t5":
        model = SIDSeq2Seq(
            vocab, d_model=16, d_ff=32, num_layers=1, num_decoder_layers=2, num_heads=2, d_kv=8, dropout_rate=0.0
        )
    elif architecture == "decoder":
        model = SIDDecoder(
            vocab, d_model=16, d_ff=32, num_blocks=2, num_heads=2, d_kv=8, dropout_rate=0.0, max_items=20
        )
    else:
        model = tiny_causal_lm("llama", vocab)
    for p in model.parameters():  # spread the logits so that ranks are well separated
        p.data.mul_(4.0)
    histories = [rng.integers(0, n_items, size=n) for n in (3, 1, 5)]
    prompt = vocab.histories if architecture == "t5" else model.prompt
    ids, mask = prompt(histories, vocab.item_tokens(codes))
    return codes, vocab, model.eval(), ids, mask


def exhaustive(model, vocab, codes, ids, mask):
    """[users, latent tokens, items]: summed log-probabilities of every item in every order."""
    items = vocab.item_tokens(codes)
    scores = torch.empty(len(ids), vocab.n_latent, len(codes))
    for k in range(vocab.n_latent):
        targets = vocab.latent_targets(items, torch.full((len(codes),), k))
        for user in range(len(ids)):
            with torch.no_grad():
                scores[user, k] = model.token_log_probs(
                    ids[user : user + 1].expand(len(codes), -1), mask[user : user + 1].expand(len(codes), -1), targets
                ).sum(1)
    return scores


def test_targets_follow_the_order_of_their_latent_token():
    vocab = SIDVocabulary(LEVELS, len(ORDERS), ORDERS)
    tokens = vocab.item_tokens(np.array([[2, 3, 4]]))  # one token per level: 2 + 6 + (0, 3, 7) + code
    assert tokens.tolist() == [[10, 14, 19]]
    assert vocab.latent_targets(tokens, torch.tensor([0])).tolist() == [[2, 10, 14, 19]]
    assert vocab.latent_targets(tokens, torch.tensor([5])).tolist() == [[7, 19, 14, 10]]  # order (2, 1, 0)
    assert vocab.decode_ranges == [(2, 6), (8, 12), (8, 12), (8, 12)]


@pytest.mark.parametrize("architecture", ["t5", "decoder", "hf_causal_lm"])
def test_every_latent_token_decodes_real_items_in_its_order(architecture):
    codes, vocab, model, ids, mask = toy_setup(architecture, seed=1)
    items, scores, tokens = model.generate(ids, mask, vocab.trie(codes), num_beams=12)
    assert (items >= 0).all() and torch.isfinite(scores).all()
    offsets = np.cumsum([0, *LEVELS[:-1]])
    for user, beam in itertools.product(range(len(ids)), range(items.shape[1])):
        order = ORDERS[int(tokens[user, beam, 0])]
        union = tokens[user, beam, 1:].numpy()
        level_of = [int(np.searchsorted(offsets, u, side="right") - 1) for u in union]
        assert level_of == list(order)  # each position holds the level its latent token puts there
        assert (union - offsets[level_of]).tolist() == codes[int(items[user, beam])][list(order)].tolist()


@pytest.mark.parametrize("architecture", ["t5", "decoder", "hf_causal_lm"])
def test_wide_beam_over_permuted_tries_equals_exhaustive(architecture):
    codes, vocab, model, ids, mask = toy_setup(architecture)
    trie = vocab.trie(codes)
    assert trie.n_prefixes[-1] == len(ORDERS) * len(codes)
    items, scores, tokens = model.generate(ids, mask, trie, num_beams=1000)
    expected = exhaustive(model, vocab, codes, ids, mask)
    for user in range(len(ids)):
        found = items[user] >= 0
        assert int(found.sum()) == len(ORDERS) * len(codes)
        latent = tokens[user, found, 0]
        np.testing.assert_allclose(
            scores[user, found].numpy(), expected[user, latent, items[user, found]].numpy(), rtol=1e-4, atol=1e-4
        )
        assert scores[user, found].tolist() == sorted(scores[user, found].tolist(), reverse=True)


def test_fixed_level_order_permutes_the_ids_and_is_validated(make_config):
    from conftest import TINY_SYNTHETIC

    from genrec.errors import ConfigError
    from genrec.pipeline import load_split
    from genrec.semantic_ids import semantic_ids

    base = make_config(**TINY_SYNTHETIC, model="PSID")
    ordered = make_config(**TINY_SYNTHETIC, model="PSID", vq_level_order="2,0,1")
    sids, reordered = (semantic_ids(config, *load_split(config)) for config in (base, ordered))
    assert np.array_equal(reordered.codes, sids.codes[:, [2, 0, 1]])
    assert reordered.level_sizes == [sids.level_sizes[i] for i in (2, 0, 1)] and reordered.report["level_order"] == [
        2,
        0,
        1,
    ]
    assert reordered.fingerprint["codes"] != sids.fingerprint["codes"]  # a checkpoint tells the orders apart
    with pytest.raises(ConfigError, match="vq_level_order"):
        make_config(**TINY_SYNTHETIC, model="PSID", vq_level_order=[0, 0, 1])
    with pytest.raises(ConfigError, match="plus the collision token"):
        make_config(**TINY_SYNTHETIC, model="TIGER", vq_collision="tiger", vq_level_order=[2, 0, 1])


@pytest.mark.parametrize("architecture", ["t5", "decoder", "hf_causal_lm"])
@pytest.mark.parametrize("orders", [(), ORDERS])
def test_a_search_restricted_to_allowed_items_ranks_them_as_exhaustive_scoring(architecture, orders):
    """Masking the trie (filters, removed items) keeps the search exact over the allowed items, in
    plain, latent-token and permuted tries alike."""
    codes, vocab, model, ids, mask = toy_setup(architecture, seed=2)
    vocab = SIDVocabulary(LEVELS, len(orders), orders) if orders else SIDVocabulary(LEVELS)
    if not orders:
        model.vocab = vocab
    allowed = torch.as_tensor(np.random.default_rng(2).random((len(ids), len(codes))) < 0.3)
    trie = vocab.trie(codes)
    items, scores, tokens = model.generate(ids, mask, trie, num_beams=1000, allowed=allowed)
    every, every_scores, every_tokens = model.generate(ids, mask, trie, num_beams=1000)  # == exhaustive (tested above)
    for user in range(len(ids)):
        found = items[user] >= 0
        assert set(items[user, found].tolist()) == set(np.flatnonzero(allowed[user].numpy()).tolist())
        assert int(found.sum()) == int(allowed[user].sum()) * max(1, len(orders))  # every allowed path, nothing else

        def latent(t):
            return t[:, 0].tolist() if orders else [0] * len(t)

        full = dict(zip(zip(latent(every_tokens[user]), every[user].tolist()), every_scores[user].tolist()))
        expected = [full[path] for path in zip(latent(tokens[user, found]), items[user, found].tolist())]
        np.testing.assert_allclose(scores[user, found].numpy(), expected, rtol=1e-5, atol=1e-5)
        assert scores[user, found].tolist() == sorted(scores[user, found].tolist(), reverse=True)
    narrow, _, _ = model.generate(ids, mask, trie, num_beams=3, allowed=allowed)
    assert allowed.gather(1, narrow.clamp_min(0))[narrow >= 0].all() and (narrow >= 0).all()
