"""SimGR and ParallelSID: shared token table, exact item scores, every item scored, padding-safe."""

import numpy as np
import pytest
import torch
from conftest import TINY_FULL_RANKING

from genrec.data import build_interactions, leave_one_out
from genrec.errors import ConfigError
from genrec.evaluation import ranking_metrics, recommend_all
from genrec.models.ParallelSID import ParallelSID
from genrec.models.ParallelSID import Settings as ParallelSettings
from genrec.models.SimGR import AGGREGATORS, SimGR
from genrec.models.SimGR import Settings as SimGRSettings
from genrec.semantic_ids import SemanticIDs

N_ITEMS = 12
SIDS = SemanticIDs(np.array([[i // 4, i % 4, i % 2] for i in range(N_ITEMS)]), [3, 4, 2], report={})
TRANSFORMER = dict(**TINY_FULL_RANKING, dropout_rate=0.0)


def simgr(**settings) -> SimGR:
    torch.manual_seed(0)
    values = {
        **TRANSFORMER,
        "backbone": "scratch",
        "item_aggregator": "mean",
        "temperature": 1.0,
        "instruction": "",
        "lora_rank": 0,
        "lora_alpha": 16.0,
        "sampled_softmax": 0,
        "negative_sampler": "popularity",
        **settings,
    }
    return SimGR(SIDS, max_len=6, settings=SimGRSettings(**values))


def parallel() -> ParallelSID:
    torch.manual_seed(0)
    return ParallelSID(SIDS, max_len=6, settings=ParallelSettings(**TRANSFORMER))


def cyclic_split():
    """Users walk the item cycle (next = last + 1); long enough that training sees every history
    length the test does (positions never seen in training would make the test about them)."""
    rng = np.random.default_rng(0)
    sequences = [(f"u{u}", [f"i{(u + t) % N_ITEMS}" for t in range(int(rng.integers(4, 13)))]) for u in range(40)]
    data = build_interactions("cycle", sequences)
    row = np.array([int(name[1:]) for name in data.item_ids])  # item index -> its SID row
    return data, leave_one_out([row[s] for s in data.sequences], 6)


def gradient_rows(model, embedding, histories, targets):
    model.train()
    model.zero_grad()
    model.loss(histories, np.array(targets), torch.Generator().manual_seed(0)).backward()
    return embedding.weight.grad.abs().sum(dim=1) > 0


@pytest.mark.parametrize("aggregator", AGGREGATORS)
def test_simgr_item_vectors_share_the_embedding_table(aggregator):
    model = simgr(item_aggregator=aggregator)
    table = model.backbone.table
    histories = [np.array([0, 1]), np.array([1])]  # items 0 and 1: codes (0,0,0), (0,1,1)
    touched = gradient_rows(model, model.backbone.embedding, histories, [2, 0])
    unread = table.offsets[0] + 2  # level-0 code 2: only items 8..11, never in the histories
    assert touched[unread]  # reached through the item side, i.e. the same rows score the items
    assert model.item_vectors().shape == (N_ITEMS, 16) and torch.isfinite(model.scores(histories)).all()


def test_parallel_sid_scores_are_the_sum_of_log_marginals():
    model = parallel().eval()
    histories = [np.array([3, 5, 7]), np.array([11])]
    with torch.no_grad():
        marginals = model.level_log_probs(histories)
        scores = model.scores(histories)
    for user in range(2):
        for item, code in enumerate(SIDS.codes.tolist()):
            expected = sum(float(marginals[level][user, c]) for level, c in enumerate(code))
            assert float(scores[user, item]) == pytest.approx(expected, rel=1e-6)
    assert torch.isfinite(scores).all() and scores.shape == (2, N_ITEMS)
    # the item distribution is a product of marginals: it sums to at most 1 over the catalogue
    assert float(torch.logsumexp(scores, dim=1).max()) <= 1e-6


@pytest.mark.parametrize("make", [simgr, parallel], ids=["SimGR", "ParallelSID"])
def test_learn_a_deterministic_sequence(make):
    data, split = cyclic_split()
    model = make()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(300):
        loss = model.loss(split.train.histories, split.train.targets, torch.Generator().manual_seed(0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    ranked = recommend_all(model, split.test, batch_size=64, k=10, num_beams=1)
    assert ranking_metrics(ranked, split.test.targets, N_ITEMS)["recall@1"] == 1.0


@pytest.mark.parametrize("make", [simgr, parallel], ids=["SimGR", "ParallelSID"])
def test_padding_never_changes_a_users_scores(make):
    model = make().eval()
    with torch.no_grad():
        alone = model.scores([np.array([3, 4])])
        batched = model.scores([np.arange(6), np.array([3, 4]), np.array([9])])
    torch.testing.assert_close(alone[0], batched[1])


def tiny_language_model(folder):
    """A randomly initialised GPT-2 with a word-level tokenizer, saved locally (never downloaded)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    torch.manual_seed(0)
    GPT2Model(GPT2Config(vocab_size=40, n_positions=64, n_embd=16, n_layer=1, n_head=2)).save_pretrained(folder)
    words = Tokenizer(models.WordLevel({"[UNK]": 0, "the": 1, "user": 2, "bought": 3}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]", pad_token="[UNK]").save_pretrained(folder)
    return folder


def test_simgr_on_a_local_pretrained_backbone(tmp_path):
    model = simgr(backbone=str(tiny_language_model(tmp_path)), instruction="the user bought")
    assert model.backbone.embedding.num_embeddings == 40 + 3 + 4 + 2  # vocabulary extended with the SID tokens
    assert model.backbone.prefix_ids.tolist() == [1, 2, 3]
    histories = [np.array([0, 1]), np.array([1])]
    tokens, real = model.history_tokens(histories)
    assert tokens[1, -6:].tolist() == [1, 2, 3, *model.backbone.item_token_ids[1].tolist()]  # instruction, item 1
    assert real[1].tolist() == [False] * 3 + [True] * 6  # left padding to the longer row
    touched = gradient_rows(model, model.backbone.embedding, histories, [2, 0])
    assert touched[40 + 2]  # level-0 code 2, read by no history, reached through the item side
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.scores([np.array([1])])[0], model.scores(histories)[1])


def test_simgr_lora_trains_only_adapters_and_sid_token_rows(tmp_path):
    folder = tiny_language_model(tmp_path)
    histories, targets = [np.array([0, 1]), np.array([1])], np.array([2, 0])
    lora = simgr(backbone=str(folder), item_aggregator="proj", lora_rank=2, lora_alpha=4.0).eval()
    with torch.no_grad():
        start = lora.scores(histories)
        with lora.backbone.model.disable_adapter():  # = the pretrained model: LoRA starts as the identity
            torch.testing.assert_close(lora.scores(histories), start)
    trainable = {name for name, p in lora.named_parameters() if p.requires_grad}
    assert any("lora_B" in n for n in trainable) and any("trainable_tokens" in n for n in trainable)
    assert all("lora_" in n or "trainable_tokens" in n or n.startswith("aggregate.") for n in trainable)
    assert "aggregate.project.weight" in trainable  # the item aggregator is ours: it trains in full
    frozen = {name: p.detach().clone() for name, p in lora.named_parameters() if not p.requires_grad}
    all_rows = torch.arange(40 + 3 + 4 + 2)
    rows = lora.backbone.embedding(all_rows).detach().clone()
    optimizer = torch.optim.AdamW(lora.parameters(), lr=0.01, weight_decay=0.1)  # as the trainer builds it
    lora.train()
    for _ in range(3):
        optimizer.zero_grad()
        lora.loss(histories, targets, torch.Generator().manual_seed(0)).backward()
        optimizer.step()
    assert all(torch.equal(p, frozen[name]) for name, p in lora.named_parameters() if not p.requires_grad)
    after = lora.backbone.embedding(all_rows).detach()
    assert torch.equal(after[:40], rows[:40])  # the pretrained vocabulary is frozen
    assert (after[40:] != rows[40:]).any(dim=1).all()  # every SID-token row learned (each scores items)
    lora.eval()
    restored = simgr(backbone=str(folder), item_aggregator="proj", lora_rank=2, lora_alpha=4.0).eval()
    restored.load_state_dict(lora.state_dict())  # a checkpoint resumes the adapted model
    with torch.no_grad():
        assert not torch.allclose(lora.scores(histories), start)
        torch.testing.assert_close(restored.scores(histories), lora.scores(histories))


def test_simgr_settings_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="pretrained backbone"):
        simgr(instruction="hello")
    with pytest.raises(ConfigError, match="lora_rank needs a pretrained backbone"):
        simgr(lora_rank=4)
    with pytest.raises(ConfigError, match="neither 'scratch' nor a local model folder"):
        simgr(backbone=str(tmp_path / "missing"))
