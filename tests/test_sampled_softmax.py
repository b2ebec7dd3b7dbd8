"""The sampled softmax: its loss by its definition, candidate scores equal to the full scores, and
the settings that cannot work together."""

import math

import numpy as np
import pytest
import torch
from conftest import TINY_SYNTHETIC

from genrec import models
from genrec.errors import ConfigError
from genrec.models.sampled_softmax import SampledSoftmax
from genrec.pipeline import load_split


def test_loss_by_its_definition():
    train_targets = np.array([0, 0, 0, 1, 2, 2, 3, 4])  # item 5 never a target
    sampler = SampledSoftmax(train_targets, 6, 3, "popularity")
    targets, negatives = torch.tensor([0, 2, 0]), torch.tensor([1, 2, 4])
    scores = torch.randn(3, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    share = np.bincount(train_targets, minlength=6) / len(train_targets)
    candidates = [0, 2, 0, 1, 2, 4]
    expected = 0.0
    for row, target in enumerate(targets.tolist()):
        logits = []
        for column, item in enumerate(candidates):
            if item == target and column != row:
                continue  # the target's own item elsewhere: an accidental hit
            corrected = scores[row, column].item() - math.log(3 * share[item] + 3 * share[item])
            logits.append((corrected, column == row))
        positive = next(value for value, own in logits if own)
        expected += -(positive - math.log(sum(math.exp(value) for value, _ in logits))) / 3
    assert sampler.loss(scores, targets, negatives).item() == pytest.approx(expected, rel=1e-5)
    uniform = SampledSoftmax(train_targets, 6, 3, "uniform")
    assert torch.allclose(uniform.proposal, torch.full((6,), 1 / 6, dtype=torch.float64))
    drawn = sampler.draw(torch.Generator().manual_seed(0))
    assert drawn.shape == (3,) and 5 not in drawn.tolist()  # never a target: never drawn by popularity


@pytest.mark.parametrize("name", ["SASRec", "GRU4Rec", "SimGR"])
def test_candidate_scores_are_the_full_scores_of_those_items(name, make_config):
    config = make_config(model=name, **TINY_SYNTHETIC, sampled_softmax=5, hidden_size=16, num_layers=1)
    data, split = load_split(config)
    torch.manual_seed(0)
    model = models.get(name).build(config, data, split).eval()
    batch = model.training_batch(split.train.histories[:8], split.train.targets[:8], torch.Generator().manual_seed(0))
    *inputs, targets, negatives = batch
    items = model.sampled.candidates(targets, negatives)
    with torch.no_grad():
        assert torch.allclose(
            model.candidate_scores(*inputs, items=items), model.scores_of(*inputs)[:, items], atol=1e-5
        )
        assert torch.isfinite(model.batch_loss(*batch))


def test_bce_samples_its_own_negative(make_config):
    config = make_config(model="SASRec", **TINY_SYNTHETIC, loss_type="bce", sampled_softmax=5)
    with pytest.raises(ConfigError, match="use it with loss_type=ce"):
        models.get("SASRec").build(config, *load_split(config))
