"""The decoding helpers of genrec/models/beam_cache.py: length groups are the cheapest cut of the
sorted rows (checked against every cut), the grouped history passes (T5, genrec's decoder, a Hugging
Face LM) give every row the states of one padded pass, the generated keys follow reordered beams as
a copied cache would, and the tree masks let each beam see exactly the history's tokens and its own
ancestors (checked against paths followed back one beam at a time)."""

import itertools

import numpy as np
import pytest
import torch
from conftest import tiny_causal_lm
from transformers import DynamicCache

from genrec.models.beam_cache import BeamTree, GeneratedKeys, length_groups
from genrec.models.sid_causal import positions_of
from genrec.models.sid_causal_lm import layer_tensors
from genrec.models.sid_decoder import SIDDecoder
from genrec.models.sid_seq2seq import SIDSeq2Seq, SIDVocabulary


def cost(groups, lengths, overhead):
    return sum(len(g) * max(lengths[g]) + overhead for g in groups)


@pytest.mark.parametrize("overhead", [0, 3, 10, 1000])
def test_length_groups_are_the_cheapest_cut(overhead):
    rng = np.random.default_rng(overhead)
    for _ in range(20):
        lengths = rng.integers(1, 12, size=int(rng.integers(1, 8)))
        groups = length_groups(lengths, overhead)
        assert sorted(np.concatenate(groups).tolist()) == list(range(len(lengths)))  # a partition
        ordered = np.argsort(lengths, kind="stable")
        best = min(
            cost(np.split(ordered, list(cuts)), lengths, overhead)
            for r in range(len(lengths))
            for cuts in itertools.combinations(range(1, len(lengths)), r)
        )
        assert cost(groups, lengths, overhead) == best


def test_length_groups_keep_one_group_when_calls_are_dear():
    assert len(length_groups(np.array([3, 50, 4, 49]), overhead=10_000)) == 1
    assert [sorted(g.tolist()) for g in length_groups(np.array([3, 50, 4, 49]), overhead=1)] == [[0, 2], [1, 3]]


def test_t5_grouped_encoding_equals_one_padded_pass():
    torch.manual_seed(0)
    vocab = SIDVocabulary((5, 6))
    model = SIDSeq2Seq(
        vocab, d_model=16, d_ff=32, num_layers=2, num_decoder_layers=1, num_heads=2, d_kv=8, dropout_rate=0.0
    )
    codes = np.array([[i % 5, i % 6] for i in range(30)])
    histories = [np.arange(n) for n in (1, 12, 2, 11) * 10]  # two groups: the short rows and the long ones
    ids, mask = vocab.histories(histories, vocab.item_tokens(codes))
    with torch.no_grad():
        assert len(length_groups(mask.sum(1).numpy())) == 2
        grouped = model.eval().encode(ids, mask)
        padded = model.t5.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    torch.testing.assert_close(grouped[real], padded[real], rtol=1e-5, atol=1e-5)


def test_decoder_grouped_prefill_equals_one_padded_pass():
    torch.manual_seed(0)
    vocab = SIDVocabulary((5, 6))
    model = SIDDecoder(vocab, d_model=16, d_ff=32, num_blocks=2, num_heads=2, d_kv=8, dropout_rate=0.0, max_items=20)
    codes = np.array([[i % 5, i % 6] for i in range(30)])
    ids, mask = model.prompt([np.arange(n) for n in (1, 12, 2, 11) * 10], vocab.item_tokens(codes))
    with torch.no_grad():
        assert len(length_groups(mask.sum(1).numpy())) == 2
        last, history, _ = model.eval().prefill(ids, mask)
        hidden, cache, _ = model.hidden_states(ids, mask)
    torch.testing.assert_close(last, hidden[:, -1], rtol=1e-5, atol=1e-5)
    real = mask.bool()
    for (keys, values), (k, v) in zip(history, cache):
        torch.testing.assert_close(keys.transpose(-1, -2).transpose(1, 2)[real], k.transpose(1, 2)[real])
        torch.testing.assert_close(values.transpose(1, 2)[real], v.transpose(1, 2)[real])


@pytest.mark.parametrize("backbone", ["llama", "gpt2"])
def test_causal_lm_grouped_prefill_equals_one_padded_pass(backbone):
    torch.manual_seed(0)
    vocab = SIDVocabulary((5, 6))
    model = tiny_causal_lm(backbone, vocab).eval()
    codes = np.array([[i % 5, i % 6] for i in range(30)])
    ids, mask = model.prompt([np.arange(n) for n in (1, 12, 2, 11) * 10], vocab.item_tokens(codes))
    with torch.no_grad():
        assert len(length_groups(mask.sum(1).numpy())) == 2
        last, cache = model.prefill(ids, mask)
        hidden, padded = model.run(ids, mask, positions_of(mask), DynamicCache(), use_cache=True)
    torch.testing.assert_close(last, hidden[:, -1], rtol=1e-5, atol=1e-5)
    real = mask.bool()
    for grouped, whole in zip(layer_tensors(cache), layer_tensors(padded)):
        for mine, theirs in zip(grouped, whole):
            torch.testing.assert_close(mine.transpose(1, 2)[real], theirs.transpose(1, 2)[real], rtol=1e-5, atol=1e-5)


def test_generated_keys_follow_reordered_beams_like_a_copied_cache():
    torch.manual_seed(0)
    users, heads, d_kv = 2, 3, 4
    keys, copied = GeneratedKeys(blocks=1), None
    width, parents_seen = 1, []
    for level, new_width in enumerate([1, 3, 4]):
        if level:
            parents = torch.randint(width, (users, new_width))
            parents_seen.append(parents)
            keys.reorder(parents)
            copied = [c.gather(1, parents[:, :, None, None].expand(-1, -1, heads, d_kv)) for c in copied]
        width = new_width
        fresh = torch.randn(users * width, heads, d_kv)
        keys.start(users, width)
        keys.add(0, fresh, fresh * 2)
        copied = (copied or []) + [fresh.view(users, width, heads, d_kv)]
        query = torch.randn(users, width, heads, d_kv)
        expected = torch.stack([(query * c).sum(-1) for c in copied])  # [positions, B, W, heads]
        torch.testing.assert_close(keys.scores(0, query), expected)
        weights = torch.rand(len(copied), users, width, heads)
        torch.testing.assert_close(
            keys.attend(0, weights), sum(weights[p, ..., None] * 2 * c for p, c in enumerate(copied))
        )


def test_tree_masks_show_each_beam_the_history_and_its_own_ancestors_only():
    rng = np.random.default_rng(0)
    history = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])  # left-padded: user 0 has two tokens
    users, length = history.shape
    tree, fed = BeamTree(history), []  # fed: the beams of each step, the cache's blocks after the history
    paths = [[[]] for _ in range(users)]  # per user and beam: the columns of its fed ancestors (the root: none)
    for width in [3, 5, 2, 4]:  # the beams fed at each level from the second on
        parents = rng.integers(0, len(paths[0]), size=(users, width))
        start = length + sum(fed[:-1])  # the newest block: the parents' tokens, if a step fed them
        paths = [[paths[b][p] + ([start + p] if fed else []) for p in parents[b]] for b in range(users)]
        mask = tree.mask(torch.as_tensor(parents))
        assert mask.shape == (users, 1, width, length + sum(fed) + width)
        for b in range(users):
            for w in range(width):
                seen = {i for i in range(length) if history[b, i]} | set(paths[b][w]) | {length + sum(fed) + w}
                assert set(torch.nonzero(mask[b, 0, w] == 0).flatten().tolist()) == seen
                assert torch.isneginf(mask[b, 0, w]).sum() == mask.shape[-1] - len(seen)
        fed.append(width)
