"""Every registered model keeps the contract of :class:`genrec.models.base.Recommender`: its declared
capabilities are true of it, its batches are CPU tensors drawn from the generator alone, its loss
trains, and its lists are best first, in the catalogue, and never hold an excluded or disallowed
item. A new model is checked here without being named: the registry lists it."""

import itertools

import numpy as np
import pytest
import torch
from conftest import TINY_BACKBONE, TINY_FULL_RANKING, TINY_SYNTHETIC

from genrec import models
from genrec.models.base import Recommender
from genrec.pipeline import load_split
from genrec.ranking import EMPTY
from genrec.semantic_ids import SemanticIDs
from genrec.trainer import training_data

TINY_ITEMS = TINY_FULL_RANKING
VARIANTS = [
    (name, architecture)
    for name in models.names()
    for architecture in (
        ("t5", "decoder", "hf_causal_lm", "hf_causal_lm+history_text")
        if "architecture" in models.get(name).Settings.model_fields
        else (None,)
    )
]


@pytest.fixture(scope="module", params=VARIANTS, ids=[f"{n}-{a}" if a else n for n, a in VARIANTS])
def built(request, tmp_path_factory):
    from genrec.config import load_config

    name, architecture = request.param
    declared = models.get(name).Settings.model_fields
    sizes = {k: v for k, v in {**TINY_ITEMS, **TINY_BACKBONE}.items() if k in declared}
    if architecture:
        architecture, _, text = architecture.partition("+")
        sizes["architecture"] = architecture
        if text:  # the items' titles after their IDs in the LM's sequences
            sizes["history_text"] = ["title"]
    folder = tmp_path_factory.mktemp(name)
    config = load_config(
        [], model=name, cache_dir=str(folder / "cache"), output_dir=str(folder / "runs"), **TINY_SYNTHETIC, **sizes
    )
    interactions, split = load_split(config)
    torch.manual_seed(0)
    return config, models.get(name).build(config, interactions, split), split


def test_capabilities_are_declared_and_true(built):
    config, model, _ = built
    assert isinstance(model, Recommender)
    settings = config.model_dump()
    assert model.learns_windows == (settings.get("architecture") in ("decoder", "hf_causal_lm"))
    assert model.latent_tokens == settings.get("n_latent_tokens", 0)
    if model.semantic_ids is not None:
        assert isinstance(model.semantic_ids, SemanticIDs) and len(model.semantic_ids.codes) == model.n_items
    assert model.adds_items <= (model.semantic_ids is not None)  # new items enter through their IDs
    if model.returns_beams:
        assert model.max_beams >= 1 and model.beams_per_item == max(1, model.latent_tokens)


def test_batches_are_cpu_tensors_drawn_from_the_generator_alone_and_the_loss_trains(built):
    config, model, split = built
    data = training_data(model, split, config.max_item_seq_len)
    histories, targets = data.batch(np.arange(8))
    model.train()
    first = model.training_batch(histories, targets, torch.Generator().manual_seed(5))
    again = model.training_batch(histories, targets, torch.Generator().manual_seed(5))
    assert all(t.device.type == "cpu" for t in first)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    loss = model.batch_loss(*model.on_device(first))
    assert loss.dim() == 0 and torch.isfinite(loss)
    model.zero_grad()
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def check_lists(items: torch.Tensor, scores: torch.Tensor, n_items: int, forbidden: list[set[int]]) -> None:
    for row, banned in zip(range(len(items)), forbidden):
        listed = [i for i in items[row].tolist() if i != EMPTY]
        assert all(0 <= i < n_items for i in listed) and len(set(listed)) == len(listed)
        assert not set(listed) & banned
        real = scores[row][items[row] != EMPTY]
        assert torch.all(real[:-1] >= real[1:])  # best first


def test_lists_are_best_first_and_keep_out_excluded_and_disallowed_items(built):
    _, model, split = built
    model.eval()
    histories = split.test.histories[:6]
    k, beams = 5, 16
    items, scores = model.recommend_scored(histories, k, beams)
    assert items.shape == scores.shape == (6, k)
    assert torch.equal(model.recommend(histories, k, beams), items)
    check_lists(items, scores, model.n_items, [set()] * 6)
    exclude = [items[row, :2][items[row, :2] >= 0].numpy() for row in range(6)]
    kept, kept_scores = model.recommend_scored(histories, k, beams, exclude)
    check_lists(kept, kept_scores, model.n_items, [set(e.tolist()) for e in exclude])
    allowed = torch.zeros(6, model.n_items, dtype=torch.bool)
    allowed[:, ::3] = True
    within, within_scores = model.recommend_scored(histories, k, beams, allowed=allowed)
    check_lists(within, within_scores, model.n_items, [set(range(model.n_items)) - set(range(0, model.n_items, 3))] * 6)
    assert (within != EMPTY).any()


def free_codes(sids: SemanticIDs, n: int) -> np.ndarray:
    taken = {tuple(code) for code in sids.codes.tolist()}
    free = (c for c in itertools.product(*(range(size) for size in sids.level_sizes)) if c not in taken)
    return np.array(list(itertools.islice(free, n)), dtype=np.int64)


def test_new_items_are_recommendable_at_once_exactly_when_declared(built):
    _, model, split = built
    if not model.adds_items:
        with pytest.raises(NotImplementedError, match="adds_items is False"):
            model.add_items(np.zeros((1, 3), dtype=np.int64), [{"title": "a new item"}])
        return
    before = model.n_items
    model.add_items(free_codes(model.semantic_ids, 2), [{"title": "one"}, {"title": "two"}])
    assert model.n_items == before + 2 and len(model.semantic_ids.codes) == before + 2
    model.eval()
    allowed = torch.zeros(2, model.n_items, dtype=torch.bool)
    allowed[:, before:] = True
    items, _ = model.recommend_scored(split.test.histories[:2], 2, 16, allowed=allowed)
    assert sorted(items[0].tolist()) == [before, before + 1]
    items, _ = model.recommend_scored([np.array([before, 0, before + 1])], 2, 16)  # histories may hold them
    assert (items >= 0).all()
