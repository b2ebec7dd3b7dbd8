"""Cold start: the kept quantizer gives the catalogue's items the codes training gave them, and an
item added to a trained run gets a unique ID by the run's collision rule and is recommendable at
once, with its exact score."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_BACKBONE, TINY_FULL_RANKING, TINY_SYNTHETIC, train_run

import genrec
from genrec.embeddings import item_embeddings, new_item_encoder
from genrec.errors import ConfigError, GenrecError
from genrec.pipeline import load_split
from genrec.semantic_ids import frozen_quantizer, quantize, semantic_ids

RUN = dict(batch_size=64, warmup_steps=5, eval_batch_size=64, num_beams=8, test_num_beams=16, seed=3, epochs=2)
TINY = dict(**TINY_BACKBONE, **RUN)
FULL_RANKING = TINY_FULL_RANKING


@pytest.mark.parametrize(
    "method",
    [
        {},
        {"vq_method": "per_modality", "vq_modalities": "category,text", "vq_n_codebooks": 2, "vq_codebook_size": 16},
        {"vq_method": "opq", "sent_emb_pca": 24},
        {"vq_method": "rqvae", "rqvae_epochs": 5, "rqvae_hidden_dims": [32], "rqvae_latent_dim": 8},
        {
            "vq_method": "letter",
            "letter_clusters": 4,
            "rqvae_epochs": 5,
            "rqvae_hidden_dims": [32],
            "rqvae_latent_dim": 8,
        },
    ],
)
def test_the_kept_quantizer_gives_the_catalogue_its_training_codes(make_config, tmp_path, method):
    config = make_config(**{**TINY_SYNTHETIC, "model": "PSID", **method})
    interactions, split = load_split(config)
    sids = semantic_ids(config, interactions, split)
    vectors = item_embeddings(config, interactions, split)
    again = new_item_encoder(config, interactions)(interactions.item_text[:6])  # embedded as the catalogue was
    np.testing.assert_allclose(again, vectors.vectors[:6], atol=1e-4)
    quantizer = frozen_quantizer(config, interactions, split)
    codes, distances = quantizer.assign(vectors.vectors)
    assert np.array_equal(codes, quantize(config, vectors).codes)  # the nearest-code rule of training
    assert np.array_equal(codes, distances.argmin(axis=2))
    moved = (codes != sids.codes).any(axis=1)
    assert moved.sum() == sids.report["moved_items"]  # only the items collision handling moved differ
    for entry in (tmp_path / "cache").rglob("quantizer-*"):  # IDs cached before the quantizer was kept
        entry.unlink()
    again = frozen_quantizer(config, interactions, split)  # quantized again, checked against the cached IDs
    assert all(np.array_equal(a, b) for a, b in zip(again.codebooks, quantizer.codebooks))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cold")
    folders = {}
    for model, extra in (
        ("PSID", {}),
        ("Latte", {"n_latent_tokens": 2}),
        ("TIGER", {"vq_collision": "tiger"}),
        ("SimGR", FULL_RANKING),
        ("ParallelSID", FULL_RANKING),
    ):
        settings = {**TINY, **extra} if extra is not FULL_RANKING else {**RUN, **FULL_RANKING}
        folders[model] = train_run(root, model, **TINY_SYNTHETIC, **settings)
    return folders, root / "cache"


@pytest.mark.parametrize("model", ["PSID", "Latte"])
def test_an_added_item_is_recommendable_at_once_with_its_exact_score(runs, model):
    folders, cache = runs
    run = genrec.load_run(folders[model], cache_dir=str(cache))
    twin = 5  # a new item with the text of item 5 quantizes to item 5's code: a collision to resolve
    text = dict(run.interactions.item_text[twin])
    ((new, code),) = run.add_items([{"id": "new-1", **text}])
    existing = {tuple(c) for c in run.model.semantic_ids.codes[:-1].tolist()}
    assert new == "new-1" and code not in existing and run.model.n_items == run.interactions.n_items
    history = run.split.test.histories[0]
    raw = [[run.interactions.item_ids[i] for i in history]]
    ((only,),) = run.recommend(raw, k=1, allow=["new-1"])
    paths = run.model.path_log_probs([history])[0]
    exact = float(paths.logsumexp(0)[-1]) if model == "Latte" else float(paths[0, -1])
    assert only[0] == "new-1" and only[1] == pytest.approx(exact, abs=1e-4)
    everything = run.recommend(raw, k=run.model.n_items, num_beams=run.model.max_beams)[0]
    assert "new-1" in [item for item, _ in everything] and len(everything) == run.model.n_items
    run.remove(["new-1"])
    assert "new-1" not in [
        item for item, _ in run.recommend(raw, k=run.model.n_items, num_beams=run.model.max_beams)[0]
    ]


def test_items_added_one_by_one_get_the_ids_of_one_addition_and_touch_no_cache(runs, monkeypatch):
    """A server adds items one request at a time. Each addition must embed and quantize against the
    catalogue the run was trained on: built from the grown catalogue, every later addition missed the
    caches, embedded every item again and refit the PCA and the quantizer (memory grew by GBs over a
    long session, and the later items' IDs came from a quantizer that was not the model's)."""
    from genrec.embeddings import text

    folders, cache = runs
    texts = [
        dict(text_, id=f"one-{n}")
        for n, text_ in enumerate(genrec.load_run(folders["PSID"], cache_dir=str(cache)).interactions.item_text[3:9])
    ]
    together = genrec.load_run(folders["PSID"], cache_dir=str(cache)).add_items(texts)
    run = genrec.load_run(folders["PSID"], cache_dir=str(cache))
    run.add_items(texts[:1])
    files = sorted(path.name for path in Path(cache).rglob("*"))
    encoded = []
    real = text.encode
    monkeypatch.setattr(text, "encode", lambda sentences, *a: encoded.append(len(sentences)) or real(sentences, *a))
    monkeypatch.setattr("genrec.embeddings.encode", text.encode)
    one_by_one = [added for item in texts[1:] for added in run.add_items([item])]
    assert [together[0], *one_by_one] == together
    assert encoded == [1] * 5  # each new item's own text, never the catalogue's
    assert sorted(path.name for path in Path(cache).rglob("*")) == files


@pytest.mark.parametrize("model", ["SimGR", "ParallelSID"])
def test_full_ranking_models_score_an_added_item_from_its_tokens(runs, model):
    folders, cache = runs
    run = genrec.load_run(folders[model], cache_dir=str(cache))
    ((new, code),) = run.add_items([{"id": "new-1", **run.interactions.item_text[7]}])
    history = run.split.test.histories[0]
    raw = [[run.interactions.item_ids[i] for i in history]]
    ((only,),) = run.recommend(raw, k=1, allow=["new-1"])
    with torch.no_grad():
        if model == "SimGR":
            backbone = run.model.backbone
            tokens = torch.as_tensor(np.asarray(code) + np.array(backbone.offsets))
            user = backbone.last_hidden(*run.model.history_tokens([history]))[0]
            exact = float(user @ run.model.aggregate(backbone.embedding(tokens[None]))[0] / run.model.temperature)
        else:
            exact = float(sum(log_probs[0, c] for log_probs, c in zip(run.model.level_log_probs([history]), code)))
    assert only[0] == "new-1" and only[1] == pytest.approx(exact, abs=1e-4)
    everything = run.recommend(raw, k=run.model.n_items)[0]
    assert len(everything) == run.interactions.n_items == run.model.n_items and "new-1" in dict(everything)


def test_tiger_appends_the_next_collision_token(runs):
    folders, cache = runs
    run = genrec.load_run(folders["TIGER"], cache_dir=str(cache))
    sids = run.model.semantic_ids
    groups = {}
    for code in map(tuple, sids.codes[:, :-1].tolist()):
        groups[code] = groups.get(code, 0) + 1
    item = next(
        i for i, code in enumerate(map(tuple, sids.codes[:, :-1].tolist())) if groups[code] < sids.level_sizes[-1]
    )
    ((_, code),) = run.add_items([{"id": "new-t", **run.interactions.item_text[item]}])
    assert code[:-1] == tuple(sids.codes[item, :-1].tolist()) and code[-1] == groups[code[:-1]]


def test_adding_items_is_refused_where_it_cannot_work(runs, make_config, tmp_path):
    folders, cache = runs
    run = genrec.load_run(folders["PSID"], cache_dir=str(cache))
    with pytest.raises(GenrecError, match="new, distinct"):
        run.add_items([{"id": run.interactions.item_ids[0], "title": "x"}])
    config = make_config(**TINY_SYNTHETIC, model="PSID", item_emb="cf")
    interactions, split = load_split(config)
    with pytest.raises(ConfigError, match="collaborative"):
        new_item_encoder(config, interactions)
