"""SASRec, GRU4Rec and BERT4Rec: they learn, their masks hold, padding never changes a user's scores."""

import numpy as np
import pytest
import torch

from genrec import models
from genrec.config import load_config
from genrec.data import build_interactions, leave_one_out
from genrec.evaluation import ranking_metrics, recommend_all

N_ITEMS = 12
TINY = dict(hidden_size=32, num_layers=1, num_heads=2, dropout_rate=0.0, max_item_seq_len=6)
VARIANTS = [
    ("SASRec", {"loss_type": "ce"}),
    ("SASRec", {"loss_type": "bce"}),
    ("GRU4Rec", {}),
    ("BERT4Rec", {"mask_prob": 0.3}),
    ("SASRec", {"loss_type": "ce", "sampled_softmax": 3, "negative_sampler": "uniform"}),
    ("GRU4Rec", {"sampled_softmax": 3, "negative_sampler": "popularity"}),
]


def cyclic_data():
    """Each user walks the item cycle from their own start: the next item is always last + 1."""
    rng = np.random.default_rng(0)
    sequences = [(f"u{u}", [f"i{(u + t) % N_ITEMS}" for t in range(int(rng.integers(4, 9)))]) for u in range(40)]
    data = build_interactions("cycle", sequences)
    return data, leave_one_out(data.sequences, TINY["max_item_seq_len"])


def build(name, data, split, **settings):
    keys = {
        k: v
        for k, v in {**TINY, **settings}.items()
        if k in models.get(name).Settings.model_fields or k == "max_item_seq_len"
    }
    torch.manual_seed(0)
    return models.get(name).build(load_config([], model=name, **keys), data, split)


@pytest.mark.parametrize(
    "name,settings",
    VARIANTS,
    ids=["SASRec-ce", "SASRec-bce", "GRU4Rec", "BERT4Rec", "SASRec-sampled", "GRU4Rec-sampled"],
)
def test_overfits_a_deterministic_sequence_to_perfect_recall_at_1(name, settings):
    data, split = cyclic_data()
    model = build(name, data, split, **settings)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(0)

    def recall_at_1(examples):
        ranked = recommend_all(model, examples, batch_size=64, k=10, num_beams=1)
        return ranking_metrics(ranked, examples.targets, data.n_items)["recall@1"]

    for _ in range(20):  # up to 2,000 steps; the count it needs varies with the CPU's thread count
        model.train()
        for _ in range(100):
            loss = model.loss(split.train.histories, split.train.targets, generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if recall_at_1(split.train) == recall_at_1(split.test) == 1.0:
            break
    assert recall_at_1(split.train) == 1.0 and recall_at_1(split.test) == 1.0


def hidden_pair(model, tokens, change_from):
    """Hidden states for ``tokens`` and for a copy whose items from ``change_from`` on differ."""
    changed = tokens.clone()
    changed[:, change_from:] = changed[:, change_from:] % N_ITEMS + 1
    model.eval()
    with torch.no_grad():
        return model.hidden_states(tokens), model.hidden_states(changed)


def test_sasrec_never_looks_ahead_and_bert4rec_does():
    data, split = cyclic_data()
    tokens = torch.tensor([[0, 0, 3, 5, 7, 2], [4, 1, 8, 8, 2, 6]])
    original, changed = hidden_pair(build("SASRec", data, split), tokens, change_from=3)
    torch.testing.assert_close(original[:, :3], changed[:, :3])  # positions before the change see nothing of it
    assert not torch.allclose(original[:, 3:], changed[:, 3:])
    original, changed = hidden_pair(build("BERT4Rec", data, split), tokens, change_from=3)
    assert not torch.allclose(original[:, :3], changed[:, :3])  # the same check catches attention to the future


def test_bert4rec_cloze_never_shows_the_items_it_predicts():
    data, split = cyclic_data()
    model = build("BERT4Rec", data, split, mask_prob=0.4).eval()
    histories, targets = split.train.histories[:16], split.train.targets[:16]
    inputs, masked, labels = model.training_batch(histories, targets, torch.Generator().manual_seed(5))
    assert (inputs[masked] == model.mask_token).all() and masked.any(dim=1).all()
    assert (inputs[~masked] != model.mask_token).all()
    # Replace every masked item by another one: the inputs, hence the predictions, must not move.
    real = [np.append(h, t) for h, t in zip(histories, targets)]
    flat = masked[:, -max(len(r) for r in real) :]
    swapped = [np.where(flat[row, -len(r) :].numpy(), (r + 5) % N_ITEMS, r) for row, r in enumerate(real)]
    inputs2, masked2, labels2 = model.training_batch(
        [s[:-1] for s in swapped], [s[-1] for s in swapped], torch.Generator().manual_seed(5)
    )
    assert torch.equal(masked, masked2) and torch.equal(inputs, inputs2) and not torch.equal(labels, labels2)
    with torch.no_grad():
        torch.testing.assert_close(
            model.item_logits(model.hidden_states(inputs)[masked]),
            model.item_logits(model.hidden_states(inputs2)[masked2]),
        )


@pytest.mark.parametrize("name", ["SASRec", "GRU4Rec", "BERT4Rec"])
def test_padding_never_changes_a_users_scores(name):
    data, split = cyclic_data()
    model = build(name, data, split).eval()
    short, long = np.array([3, 4]), np.array([0, 1, 2, 3, 4, 5])
    with torch.no_grad():
        alone = model.scores([short])
        batched = model.scores([long, short, long[:4]])
    torch.testing.assert_close(alone[0], batched[1])
    assert alone.shape == (1, data.n_items) and torch.isfinite(batched).all()
