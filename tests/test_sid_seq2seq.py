"""The T5 backbone over semantic IDs: beam search with the real KV cache equals exhaustive
teacher-forced scoring of every item."""

import itertools

import numpy as np
import pytest
import torch

from genrec.decoding import SIDTrie, aggregate_beams
from genrec.models.sid_seq2seq import EOS, PAD, SIDSeq2Seq, SIDVocabulary


def tiny_model(vocab, seed=0):
    torch.manual_seed(seed)
    model = SIDSeq2Seq(
        vocab, d_model=16, d_ff=32, num_layers=1, num_decoder_layers=2, num_heads=2, d_kv=8, dropout_rate=0.0
    )
    for p in model.parameters():  # spread the logits so that ranks are well separated
        p.data.mul_(4.0)
    return model.eval()


def toy_setup(seed, level_sizes=(3, 4, 5), n_items=24, n_latent=0):
    rng = np.random.default_rng(seed)
    space = list(itertools.product(*(range(s) for s in level_sizes)))
    codes = np.array([space[i] for i in rng.choice(len(space), n_items, replace=False)])
    vocab = SIDVocabulary(tuple(level_sizes), n_latent)
    histories = [rng.integers(0, n_items, size=n) for n in (3, 1, 5)]
    input_ids, mask = vocab.histories(histories, vocab.item_tokens(codes))
    return codes, vocab, input_ids, mask


def exhaustive(model, vocab, codes, input_ids, mask, latent=None):
    """[users, items] summed log-probabilities of each item's tokens (optionally after a latent token)."""
    items = vocab.item_tokens(codes)
    if latent is not None:
        items = torch.cat([torch.full((len(codes), 1), 2 + latent), items], dim=1)
    scores = []
    for user in range(len(input_ids)):
        ids = input_ids[user : user + 1].expand(len(codes), -1)
        with torch.no_grad():
            scores.append(model.token_log_probs(ids, mask[user : user + 1].expand(len(codes), -1), items).sum(1))
    return torch.stack(scores)


def test_vocabulary_layout():
    vocab = SIDVocabulary((3, 4), n_latent=2)
    assert vocab.level_offsets == [4, 7] and vocab.size == 11
    assert vocab.decode_ranges == [(2, 2), (4, 3), (7, 4)]
    ids, mask = vocab.histories([np.array([1, 0]), np.array([1])], vocab.item_tokens(np.array([[0, 1], [2, 3]])))
    assert ids.tolist() == [[6, 10, 4, 8, EOS], [6, 10, EOS, PAD, PAD]]
    assert mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]


@pytest.mark.parametrize("level_sizes", [(3, 4, 5), (4, 4, 4, 3)])  # PSID-like, and TIGER-like with an extra level
def test_wide_beam_equals_exhaustive(level_sizes):
    codes, vocab, input_ids, mask = toy_setup(0, level_sizes)
    model = tiny_model(vocab)
    items, scores, _ = model.generate(input_ids, mask, SIDTrie(codes, list(level_sizes)), num_beams=500)
    expected = exhaustive(model, vocab, codes, input_ids, mask)
    for user in range(len(input_ids)):
        found = items[user] >= 0
        assert int(found.sum()) == len(codes)
        order = sorted(range(len(codes)), key=lambda i: -float(expected[user, i]))
        assert items[user, found].tolist() == order
        np.testing.assert_allclose(scores[user, found].numpy(), expected[user, order].numpy(), rtol=1e-4, atol=1e-4)


def test_narrow_beam_scores_are_exact():
    codes, vocab, input_ids, mask = toy_setup(1)
    model = tiny_model(vocab, seed=1)
    items, scores, _ = model.generate(input_ids, mask, SIDTrie(codes, list(vocab.level_sizes)), num_beams=4)
    expected = exhaustive(model, vocab, codes, input_ids, mask)
    assert (items >= 0).all()
    np.testing.assert_allclose(scores.numpy(), expected.gather(1, items).numpy(), rtol=1e-4, atol=1e-4)


def test_latent_tokens_one_search_then_aggregate():
    n_latent = 3
    codes, vocab, input_ids, mask = toy_setup(2, n_latent=n_latent)
    model = tiny_model(vocab, seed=2)
    trie = SIDTrie(codes, list(vocab.level_sizes), free_prefix_size=n_latent)
    items, scores, tokens = model.generate(input_ids, mask, trie, num_beams=1000)
    ranked, agg = aggregate_beams(items, scores, len(codes), len(codes), "agg_sum")
    per_latent = torch.stack([exhaustive(model, vocab, codes, input_ids, mask, latent=z) for z in range(n_latent)])
    expected = torch.logsumexp(per_latent, dim=0)
    for user in range(len(input_ids)):
        order = sorted(range(len(codes)), key=lambda i: -float(expected[user, i]))
        assert ranked[user].tolist() == order
        np.testing.assert_allclose(agg[user].numpy(), expected[user, order].numpy(), rtol=1e-4, atol=1e-4)


def test_loss_is_mean_cross_entropy_over_id_and_end():
    codes, vocab, input_ids, mask = toy_setup(3)
    model = tiny_model(vocab, seed=3)
    targets = vocab.item_tokens(codes[:3])
    with_end = torch.cat([targets, torch.full((3, 1), EOS)], dim=1)
    with torch.no_grad():
        logits = model.t5(input_ids=input_ids, attention_mask=mask, labels=with_end).logits  # HF shifts labels right
        reference = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab.size), with_end.reshape(-1))
        assert float(model.loss(input_ids, mask, targets)) == pytest.approx(float(reference), rel=1e-5)
