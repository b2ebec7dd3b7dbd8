"""DPO / S-DPO: the loss against hand-computed values; hard negatives are the model's own best items
but the chosen one; on tiny trained runs (PSID, and Latte with its latent token) the loss starts at
log(1 + K) and a preferred item gains probability."""

import math

import numpy as np
import pytest
import torch
from test_grpo import tiny_run

from genrec.errors import ConfigError
from genrec.finetune import DPOSettings, sdpo_loss
from genrec.finetune.dpo import DPOTrainer


def test_sdpo_loss_by_hand():
    # One negative: DPO, -log sigmoid(beta * (r_chosen - r_rejected)).
    ratios = torch.tensor([[0.5, -0.25], [0.0, 1.0]])
    expected = [-math.log(1 / (1 + math.exp(-2 * 0.75))), -math.log(1 / (1 + math.exp(-2 * -1.0)))]
    assert float(sdpo_loss(ratios, beta=2.0)) == pytest.approx(sum(expected) / 2)
    # Two negatives: -log sigmoid(-log(exp(b(r1 - r0)) + exp(b(r2 - r0)))).
    ratios = torch.tensor([[0.3, 0.1, -0.4]])
    inner = math.log(math.exp(0.5 * (0.1 - 0.3)) + math.exp(0.5 * (-0.4 - 0.3)))
    assert float(sdpo_loss(ratios, beta=0.5)) == pytest.approx(-math.log(1 / (1 + math.exp(inner))))
    # Model and reference agree: every ratio 0, the loss is log(1 + K) whatever beta.
    assert float(sdpo_loss(torch.zeros(4, 6), beta=3.0)) == pytest.approx(math.log(6))
    # Moving the chosen ID up or a rejected one down lowers the loss.
    base = sdpo_loss(torch.tensor([[0.0, 0.2, 0.1]]), 1.0)
    assert sdpo_loss(torch.tensor([[0.3, 0.2, 0.1]]), 1.0) < base > sdpo_loss(torch.tensor([[0.0, -0.2, 0.1]]), 1.0)


@pytest.fixture(scope="module")
def psid(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("dpo"))


def test_hard_negatives_are_the_models_best_items_but_the_chosen_one(psid, tmp_path):
    trainer = DPOTrainer(psid, DPOSettings(negatives=3), tmp_path / "ft")
    histories = [psid.split.train.histories[r] for r in range(12)]
    ids, mask = psid.model.inputs(histories)
    top, _ = psid.model.recommend_scored(histories, k=4, num_beams=4)
    targets = np.array([int(row[0]) if r % 2 else 0 for r, row in enumerate(top)])  # half: the best item is chosen
    rejected = trainer.rejected(ids, mask, targets, torch.Generator().manual_seed(0))
    for row, target in enumerate(targets):
        expected = [item for item in top[row].tolist() if item != target][:3]
        assert rejected[row].tolist() == psid.model.item_tokens[expected].tolist()


def test_random_negatives_never_hold_the_chosen_item_and_settings_are_checked(psid, tmp_path):
    trainer = DPOTrainer(psid, DPOSettings(negatives=5, negative_source="random"), tmp_path / "ft")
    targets = np.arange(40) % psid.interactions.n_items
    rejected = trainer.rejected(None, None, targets, torch.Generator().manual_seed(1))
    table = {tuple(row): item for item, row in enumerate(psid.model.item_tokens.tolist())}
    items = [[table[tuple(tokens)] for tokens in row] for row in rejected.tolist()]
    assert all(len(set(row)) == 5 and target not in row for row, target in zip(items, targets))
    with pytest.raises(ConfigError, match="at most"):
        DPOTrainer(psid, DPOSettings(negatives=psid.interactions.n_items), tmp_path / "other")
    with pytest.raises(ValueError, match="negative_source"):
        DPOSettings(negative_source="popular")


@pytest.mark.parametrize("source", ["beam", "random"])
def test_a_preferred_item_gains_probability_and_the_loss_starts_at_log_1_plus_k(psid, tmp_path, source):
    histories = [psid.split.train.histories[r] for r in range(16)]
    favourite = 7
    model_state = {k: v.clone() for k, v in psid.model.state_dict().items()}
    before = psid.model.path_log_probs(histories)[:, 0, favourite].mean()
    trainer = DPOTrainer(psid, DPOSettings(negatives=3, negative_source=source, lr=3e-3, beta=1.0), tmp_path / "ft")
    generator = torch.Generator().manual_seed(0)
    first = trainer.step(histories, np.full(len(histories), favourite), histories, generator)
    assert first["loss"] == pytest.approx(math.log(4), abs=1e-5) and first["margin"] == pytest.approx(0, abs=1e-6)
    for _ in range(14):
        last = trainer.step(histories, np.full(len(histories), favourite), histories, generator)
    after = psid.model.path_log_probs(histories)[:, 0, favourite].mean()
    assert after > before + 0.5 and last["loss"] < first["loss"] and last["accuracy"] > 0.5
    psid.model.load_state_dict(model_state)  # the module's run, as it was


def test_latte_ids_carry_a_latent_token_and_train(tmp_path):
    run = tiny_run(tmp_path, model="Latte", n_latent_tokens=2)
    histories = [run.split.train.histories[r] for r in range(8)]
    targets = np.array([run.split.train.batch(np.arange(8))[1]]).ravel()
    for source in ("beam", "random"):
        trainer = DPOTrainer(run, DPOSettings(negatives=2, negative_source=source, lr=1e-3), tmp_path / source)
        generator = torch.Generator().manual_seed(0)
        ids, mask = run.model.inputs(histories)
        rejected = trainer.rejected(ids, mask, targets, generator)
        assert rejected.shape == (8, 2, 1 + run.model.item_tokens.shape[1])
        assert set(rejected[:, :, 0].unique().tolist()) <= {2, 3}  # the two latent tokens
        step = trainer.step(histories, targets, histories, generator)
        assert step["loss"] == pytest.approx(math.log(3), abs=1e-5)
