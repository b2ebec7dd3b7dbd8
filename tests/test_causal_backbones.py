"""The causal backbones (genrec's decoder and Hugging Face causal LMs of five families): beam search
with its cache equals exhaustive teacher-forced scoring, padding never changes a user's scores, and
window training is the prefix examples' loss computed in one pass (so nothing is looked ahead at)."""

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import tiny_causal_lm

from genrec.data import leave_one_out, training_windows
from genrec.decoding import SIDTrie, aggregate_beams
from genrec.errors import ConfigError, GenrecError
from genrec.models.sid_causal_lm import SIDCausalLM, build_causal_lm
from genrec.models.sid_decoder import RotaryPositions, SIDDecoder, rotated
from genrec.models.sid_seq2seq import SIDVocabulary

# genrec's own (with T5's relative bias, then with rotary positions), then Hugging Face model types
BACKBONES = ["decoder", "decoder_rotary", "llama", "qwen2", "mistral", "gpt2", "phi"]


@pytest.fixture(params=BACKBONES)
def backbone(request):
    return request.param


def tiny_backbone(backbone: str, vocab: SIDVocabulary):
    if backbone.startswith("decoder"):
        position_encoding = "rotary" if backbone == "decoder_rotary" else "relative_bias"
        return SIDDecoder(vocab, 16, 32, 2, 2, 8, dropout_rate=0.0, max_items=20, position_encoding=position_encoding)
    return tiny_causal_lm(backbone, vocab)


def toy_setup(seed, level_sizes=(3, 4, 5), n_items=24, n_latent=0, backbone="decoder"):
    rng = np.random.default_rng(seed)
    space = list(itertools.product(*(range(s) for s in level_sizes)))
    codes = np.array([space[i] for i in rng.choice(len(space), n_items, replace=False)])
    vocab = SIDVocabulary(tuple(level_sizes), n_latent)
    torch.manual_seed(seed)
    model = tiny_backbone(backbone, vocab)
    for p in model.parameters():  # spread the logits so that ranks are well separated
        p.data.mul_(20.0)
    histories = [rng.integers(0, n_items, size=n) for n in (3, 1, 5)]
    return codes, vocab, model.eval(), histories


def all_targets(vocab, codes):
    """Every item's generated tokens, once per latent token when there are latent tokens."""
    items = vocab.item_tokens(codes)
    if not vocab.n_latent:
        return items
    return torch.cat([torch.cat([torch.full((len(codes), 1), 2 + z), items], dim=1) for z in range(vocab.n_latent)])


def exhaustive(model, vocab, codes, histories):
    """[users, targets] summed log-probabilities of each target sequence, each user decoded alone."""
    targets = all_targets(vocab, codes)
    scores = []
    for history in histories:
        ids, mask = model.prompt([history], vocab.item_tokens(codes))
        with torch.no_grad():
            scores.append(
                model.token_log_probs(ids.expand(len(targets), -1), mask.expand(len(targets), -1), targets).sum(1)
            )
    return torch.stack(scores)


@pytest.mark.parametrize("level_sizes", [(3, 4, 5), (4, 4, 4, 3)])
def test_wide_beam_equals_exhaustive(level_sizes, backbone):
    codes, vocab, model, histories = toy_setup(0, level_sizes, backbone=backbone)
    ids, mask = model.prompt(histories, vocab.item_tokens(codes))
    items, scores, _ = model.generate(ids, mask, SIDTrie(codes, list(level_sizes)), num_beams=500)
    expected = exhaustive(model, vocab, codes, histories)
    for user in range(len(histories)):
        found = items[user] >= 0
        assert int(found.sum()) == len(codes)
        order = sorted(range(len(codes)), key=lambda i: -float(expected[user, i]))
        assert items[user, found].tolist() == order
        np.testing.assert_allclose(scores[user, found].numpy(), expected[user, order].numpy(), rtol=1e-4, atol=1e-4)


def test_narrow_beam_scores_are_exact_and_batching_changes_nothing(backbone):
    codes, vocab, model, histories = toy_setup(1, backbone=backbone)
    trie = SIDTrie(codes, list(vocab.level_sizes))
    ids, mask = model.prompt(histories, vocab.item_tokens(codes))
    items, scores, _ = model.generate(ids, mask, trie, num_beams=4)
    expected = exhaustive(model, vocab, codes, histories)
    np.testing.assert_allclose(scores.numpy(), expected.gather(1, items).numpy(), rtol=1e-4, atol=1e-4)
    for user, history in enumerate(histories):  # left padding in a batch == the user alone
        alone = model.generate(*model.prompt([history], vocab.item_tokens(codes)), trie, num_beams=4)
        assert torch.equal(alone[0][0], items[user])
        np.testing.assert_allclose(alone[1][0].numpy(), scores[user].numpy(), rtol=1e-5, atol=1e-5)


def test_latent_tokens_one_search_then_aggregate(backbone):
    n_latent = 3
    codes, vocab, model, histories = toy_setup(2, n_latent=n_latent, backbone=backbone)
    ids, mask = model.prompt(histories, vocab.item_tokens(codes))
    assert ids[2, -20::4].tolist() == [2, 3, 4, 2, 3]  # the history's latent tokens cycle, item j: j mod n
    items, scores, tokens = model.generate(
        ids, mask, SIDTrie(codes, list(vocab.level_sizes), free_prefix_size=n_latent), 500
    )
    expected = exhaustive(model, vocab, codes, histories).view(len(histories), n_latent, len(codes))
    assert (items >= 0).all() and items.shape[1] == n_latent * len(codes)
    paths = scores.new_full((len(histories), n_latent, len(codes)), float("nan"))
    for user in range(len(histories)):
        paths[user, tokens[user, :, 0], items[user]] = scores[user]
    np.testing.assert_allclose(paths.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)
    ranked, _ = aggregate_beams(items, scores, len(codes), 10, "agg_sum")
    assert ranked.tolist() == torch.logsumexp(expected, dim=1).topk(10).indices.tolist()


def test_window_loss_is_the_prefix_examples_loss_in_one_pass(backbone):
    codes, vocab, model, _ = toy_setup(3, n_items=24, backbone=backbone)
    rng = np.random.default_rng(3)
    sequences = [rng.integers(0, 24, size=n) for n in (4, 9, 30)]
    split = leave_one_out(sequences, max_item_seq_len=6)
    windows = training_windows(split.train_sequences, 6)
    item_tokens = vocab.item_tokens(codes)
    losses = []
    with torch.no_grad():
        got = model.window_loss(
            *model.window_batch(model.sequence_tokens(windows.items, item_tokens, None), windows.loss_from)
        )
        for window, first in zip(
            windows.items, windows.loss_from
        ):  # each target alone, from the window's items before it
            for j in range(first, len(window)):
                ids, mask = model.prompt([window[:j]], item_tokens)
                losses.append(-model.token_log_probs(ids, mask, item_tokens[window[j]][None]).squeeze(0))
    np.testing.assert_allclose(float(got), float(torch.cat(losses).mean()), rtol=1e-5)


def test_training_windows_cover_every_training_target_once():
    rng = np.random.default_rng(0)
    sequences = [rng.permutation(100)[:n] for n in (3, 4, 8, 21, 22, 23, 40, 61)]  # distinct items: a position per item
    for max_len in (1, 2, 5, 20):
        split = leave_one_out(sequences, max_item_seq_len=max_len)
        context = (max_len + 1) // 2
        total = 0
        for sequence in split.train_sequences:
            windows = training_windows([sequence], max_len)
            position = {int(item): t for t, item in enumerate(sequence)}
            covered = []
            for window, first in zip(windows.items, windows.loss_from):
                assert len(window) <= max_len + 1
                for j in range(first, len(window)):
                    t = position[int(window[j])]
                    assert window[:j].tolist() == sequence[t - j : t].tolist()  # the items just before it
                    assert min(t, context) <= j <= max_len  # its whole past, or at least `context` items
                    covered.append(t)
            assert sorted(covered) == list(range(1, len(sequence)))  # every training target, once
            total += windows.n_targets
        assert total == len(split.train)


def test_window_training_never_looks_ahead(backbone):
    codes, vocab, model, _ = toy_setup(4, backbone=backbone)
    item_tokens = vocab.item_tokens(codes)
    window = np.array([3, 8, 1, 17, 5, 11])
    changed = window.copy()
    changed[4:] = [20, 2]  # every item after the fourth
    with torch.no_grad():
        (ids, trained), (changed_ids, _) = (
            model.window_batch(model.sequence_tokens([w], item_tokens, None), np.array([1])) for w in (window, changed)
        )
        before, after = model.window_log_probs(ids, trained), model.window_log_probs(changed_ids, trained)
    assert trained[0].tolist() == [False] + [False] * 3 + [True] * 15  # the start token and the first item are context
    up_to_fourth = 1 + 4 * 3
    assert torch.equal(before[0, :up_to_fourth], after[0, :up_to_fourth])
    assert not torch.equal(before[0, up_to_fourth:], after[0, up_to_fourth:])


def test_rotary_positions_are_the_complex_rotation_and_scores_depend_on_distance_only():
    rotary = RotaryPositions(8)
    torch.manual_seed(0)
    q, k = torch.randn(2, 8, dtype=torch.float64).unbind(0)
    # the definition: pair (x_i, x_{i + d/2}) as one complex number, turned by position * base^(-2i/d)
    frequency = 10_000.0 ** -(torch.arange(4, dtype=torch.float64) * 2 / 8)
    complex_q = torch.complex(q[:4], q[4:]) * torch.polar(torch.ones(4, dtype=torch.float64), 3 * frequency)
    turned = rotated(q, rotary(torch.tensor(3)))
    assert torch.allclose(turned, torch.cat([complex_q.real, complex_q.imag]).to(turned.dtype), atol=1e-6)

    def score(query_position, key_position):
        return (
            rotated(q, rotary(torch.tensor(query_position))) @ rotated(k, rotary(torch.tensor(key_position)))
        ).item()

    assert score(7, 4) == pytest.approx(score(12, 9), abs=1e-5) and score(7, 4) != pytest.approx(score(7, 5), abs=1e-3)
    with pytest.raises(GenrecError, match="even d_kv"):
        RotaryPositions(7)


def causal_lm_settings(**settings):
    sizes = dict(d_model=16, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2, d_kv=8, dropout_rate=0.0)
    defaults = {"backbone": "llama", "backbone_path": None, "max_item_seq_len": 20, "history_text": []}
    return SimpleNamespace(**{**defaults, **sizes, **settings})


def test_a_pretrained_folder_keeps_its_text_tokens_and_adds_the_semantic_id_tokens(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    text_vocab = 50
    config = LlamaConfig(
        vocab_size=text_vocab,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
    )
    pretrained = LlamaForCausalLM(config)
    pretrained.save_pretrained(tmp_path / "lm")
    codes, vocab, _, histories = toy_setup(5)
    model = build_causal_lm(causal_lm_settings(backbone_path=str(tmp_path / "lm"), d_model=8), vocab).eval()
    assert model.offset == text_vocab and model.lm.config.hidden_size == 16  # the folder's sizes, not the settings'
    embeddings = model.lm.get_input_embeddings().weight
    assert embeddings.shape[0] == text_vocab + vocab.size
    assert torch.equal(embeddings[:text_vocab], pretrained.get_input_embeddings().weight)
    assert len(torch.unique(embeddings[text_vocab:], dim=0)) == vocab.size  # the new tokens start apart
    for p in model.parameters():  # spread the logits so that ranks are well separated
        p.data.mul_(20.0)
    ids, mask = model.prompt(histories, vocab.item_tokens(codes))
    with torch.no_grad():
        # the text tokens keep part of the probability: genrec's tokens are normalised with them
        assert float(model.output_log_probs(model.states(ids, mask)[:, -1]).exp().sum(-1).max()) < 1
    items, scores, _ = model.generate(ids, mask, SIDTrie(codes, list(vocab.level_sizes)), num_beams=500)
    expected = exhaustive(model, vocab, codes, histories)
    for user in range(len(histories)):
        order = sorted(range(len(codes)), key=lambda i: -float(expected[user, i]))
        assert items[user].tolist() == order
        np.testing.assert_allclose(scores[user].numpy(), expected[user, order].numpy(), rtol=1e-4, atol=1e-4)

    config.save_pretrained(tmp_path / "config-only")  # no weights: that architecture, initialised at random
    fresh = build_causal_lm(causal_lm_settings(backbone_path=str(tmp_path / "config-only")), vocab)
    assert fresh.offset == 0 and fresh.lm.get_input_embeddings().num_embeddings == vocab.size
    assert fresh.lm.config.num_key_value_heads == 1


def test_backbone_settings_a_model_cannot_take_fail_with_the_setting_named(tmp_path):
    vocab = SIDVocabulary((3, 4, 5))
    with pytest.raises(ConfigError, match="backbone='no-such-model' is no Hugging Face model type"):
        build_causal_lm(causal_lm_settings(backbone="no-such-model"), vocab)
    with pytest.raises(ConfigError, match="backbone=gpt2 has heads of d_model / num_heads: set d_kv=8"):
        build_causal_lm(causal_lm_settings(backbone="gpt2", d_kv=4), vocab)
    with pytest.raises(ConfigError, match="no config.json"):
        build_causal_lm(causal_lm_settings(backbone_path=str(tmp_path)), vocab)
    from transformers import GPT2Config

    GPT2Config(n_positions=32, n_embd=16, n_layer=1, n_head=2).save_pretrained(tmp_path / "short")
    with pytest.raises(ConfigError, match="reads at most 32 positions, a window of max_item_seq_len=20 needs 64"):
        build_causal_lm(causal_lm_settings(backbone_path=str(tmp_path / "short")), vocab)


def test_a_class_without_residual_dropout_gets_it_as_genrec_s_decoder_has_it():
    """Llama-like classes drop out attention weights only: each block's attention and feed-forward
    outputs get the backbone's dropout (in training only); GPT-2, which has its own, gets none."""
    vocab = SIDVocabulary((3, 4, 5))
    ids = torch.randint(2, vocab.size, (2, 10))
    for backbone, hooked in (("llama", 4), ("qwen2", 4), ("gpt2", 0)):
        model = build_causal_lm(causal_lm_settings(backbone=backbone, dropout_rate=0.5, num_decoder_layers=1), vocab)
        assert sum(len(module._forward_hooks) for module in model.modules()) == hooked  # 2 blocks x 2 branches
        model.train()
        assert not torch.equal(model.states(ids, torch.ones_like(ids)), model.states(ids, torch.ones_like(ids)))
        model.eval()
        assert torch.equal(model.states(ids, torch.ones_like(ids)), model.states(ids, torch.ones_like(ids)))


@pytest.mark.parametrize("failure", ["own causal mask", "error"])
def test_a_class_whose_attention_ignores_four_d_masks_is_refused(monkeypatch, failure):
    original = SIDCausalLM.run

    def without_four_d_masks(self, ids, mask, positions, cache=None, use_cache=False):
        if mask.dim() == 4:
            if failure == "error":
                raise ValueError("attention_mask must be 2-D")
            mask = torch.ones(ids.shape)  # what such a class does: its own causal mask over every token
        return original(self, ids, mask, positions, cache, use_cache)

    monkeypatch.setattr(SIDCausalLM, "run", without_four_d_masks)
    with pytest.raises(ConfigError, match="ignores the 4-D attention masks"):
        tiny_backbone("llama", SIDVocabulary((3, 4, 5)))


@pytest.mark.parametrize("width", [4, 64, 512])
def test_a_causal_lm_search_plans_for_its_tree_masks_at_any_width(width):
    """The mask and score rows of the deepest level (a column for the history and for every token the
    user's beams fed) fit in what memory planning counts for the user's beams."""
    vocab = SIDVocabulary((8, 8, 8))
    model = tiny_backbone("llama", vocab)
    heads = model.config.num_attention_heads
    rows = 4 * (heads + 1) * width * (model.history_tokens + (model.item_length - 1) * width)
    assert width * model.bytes_per_beam() + width**2 * model.bytes_per_beam_pair() >= rows
