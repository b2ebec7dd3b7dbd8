"""Quantizers checked against their definitions on small random data."""

import numpy as np
import pytest
import torch
from conftest import TINY_SYNTHETIC

from genrec.errors import ConfigError
from genrec.pipeline import load_split
from genrec.semantic_ids import methods, rqvae, semantic_ids
from genrec.semantic_ids.frozen import residual_codebooks
from genrec.semantic_ids.letter import LetterRegularizer
from genrec.semantic_ids.opq import opq
from genrec.semantic_ids.per_modality import per_modality
from genrec.semantic_ids.quantization import squared_distances
from genrec.semantic_ids.rqkmeans import rq_kmeans
from genrec.semantic_ids.rqvae import RQVAE, assign, reset_dead_codes, rq_vae


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 24)) * 3
    return (centres[rng.integers(12, size=600)] + rng.normal(size=(600, 24))).astype(np.float32)


def test_rqkmeans_matches_definition(vectors):
    q = rq_kmeans(vectors, n_levels=3, codebook_size=16, iters=15, seed=1)
    codebooks = q.info["codebooks"]
    residual = vectors.astype(np.float64)
    for level in range(3):
        d = ((residual[:, None, :] - codebooks[level][None].astype(np.float64)) ** 2).sum(-1)
        np.testing.assert_allclose(q.distances[:, level], d, rtol=1e-3, atol=1e-2)
        assert (q.codes[:, level] == d.argmin(1)).mean() > 0.999  # nearest centroid (float ties aside)
        residual = residual - codebooks[level][q.codes[:, level]]
        expected = (residual**2).sum() / (vectors.astype(np.float64) ** 2).sum()
        assert q.level_errors[level] == pytest.approx(expected, rel=1e-4)
    assert q.level_errors[0] > q.level_errors[1] > q.level_errors[2]
    assert q.codes.shape == (600, 3) and q.codes.max() < 16


def test_rqkmeans_is_deterministic_under_seed(vectors):
    a = rq_kmeans(vectors, 2, 16, 10, seed=3)
    b = rq_kmeans(vectors, 2, 16, 10, seed=3)
    c = rq_kmeans(vectors, 2, 16, 10, seed=4)
    assert np.array_equal(a.codes, b.codes)
    assert not np.array_equal(a.codes, c.codes)


def test_opq_codes_are_nearest_per_subspace(vectors):
    q = opq(vectors, n_levels=3, codebook_size=16, iters=10, seed=0)
    assert q.codes.shape == (600, 3)
    assert np.array_equal(q.codes, q.distances.argmin(-1))
    assert q.level_errors[0] > q.level_errors[1] > q.level_errors[2]
    again = opq(vectors, n_levels=3, codebook_size=16, iters=10, seed=0)
    assert np.array_equal(q.codes, again.codes)


def test_opq_needs_power_of_two():
    with pytest.raises(ConfigError, match="power-of-two"):
        opq(np.zeros((100, 8), np.float32), 2, 12, 5, 0)


def test_opq_needs_more_items_than_dimensions():
    with pytest.raises(
        ConfigError, match="at least as many items \\(100\\) as embedding dimensions \\(384\\).*sent_emb_pca"
    ):
        opq(np.zeros((100, 384), np.float32), 3, 8, 5, 0)


def test_codebook_larger_than_catalogue_is_an_error():
    with pytest.raises(ConfigError, match="vq_codebook_size=256 exceeds the number of items \\(50\\)"):
        rq_kmeans(np.zeros((50, 4), np.float32), 3, 256, 5, 0)


def test_rqvae_trains_and_residual_error_falls(vectors):
    kwargs = dict(
        n_levels=3,
        codebook_size=16,
        hidden=[32],
        latent_dim=8,
        epochs=30,
        batch_size=128,
        lr=3e-3,
        beta=0.25,
        kmeans_iters=10,
        seed=0,
    )
    q = rq_vae(vectors, **kwargs)
    assert q.codes.shape == (600, 3)
    assert np.array_equal(q.codes, q.distances.argmin(-1))
    assert q.level_errors[0] > q.level_errors[1] > q.level_errors[2]
    assert q.info["decoder_relative_error"] < 0.5  # the auto-encoder learned something
    assert len(np.unique(q.codes[:, 0])) >= 8  # dead-code reset keeps the first level in use
    assert np.array_equal(q.codes, rq_vae(vectors, **kwargs).codes)


def small_rqvae(vectors) -> tuple[RQVAE, torch.Tensor]:
    torch.manual_seed(0)
    model = RQVAE(vectors.shape[1], [32], 8, 3, 16)
    with torch.no_grad():
        model.codebooks.normal_()
    return model, torch.as_tensor(vectors)


def test_rqvae_assigns_in_chunks_as_in_one_pass(vectors, monkeypatch):
    model, data = small_rqvae(vectors)
    codes, distances, errors, reconstruction = assign(model, data)
    with torch.no_grad():  # the definitions, on the whole catalogue at once
        z = model.encoder(data)
        residual, quantized = z, torch.zeros_like(z)
        expected_errors = []
        for codebook in model.codebooks:
            chosen = codebook[torch.cdist(residual, codebook).argmin(1)]
            quantized, residual = quantized + chosen, residual - chosen
            expected_errors.append(float(residual.pow(2).sum() / z.pow(2).sum()))
        expected_reconstruction = float((model.decoder(quantized) - data).pow(2).sum() / data.pow(2).sum())
    monkeypatch.setattr(rqvae, "CHUNK", 7)  # 600 items: 85 full chunks and a last one of 5
    chunked = assign(model, data)
    assert np.array_equal(codes, chunked[0]) and np.array_equal(codes, distances.argmin(-1))
    np.testing.assert_allclose(distances, chunked[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(errors, expected_errors, rtol=1e-4)
    np.testing.assert_allclose(chunked[2], expected_errors, rtol=1e-4)
    assert reconstruction == pytest.approx(expected_reconstruction, rel=1e-4)
    assert chunked[3] == pytest.approx(expected_reconstruction, rel=1e-4)


def test_rqvae_reset_moves_only_dead_codes_onto_items_residuals(vectors):
    model, data = small_rqvae(vectors)
    with torch.no_grad():
        _, _, _, residuals = model.quantize(model.encoder(data))
    used = torch.ones(3, 16, dtype=torch.bool)
    used[0, [1, 5]] = used[2, [0, 3, 15]] = False  # level 1 has no dead code
    before = model.codebooks.detach().clone()
    reset_dead_codes(model, data, used, torch.Generator().manual_seed(0))
    after = model.codebooks.detach()
    assert torch.equal(after[used], before[used])
    for level, code in (~used).nonzero().tolist():
        # each reset code is the residual entering its level of some item, under the old codebooks
        gap = (residuals[level] - after[level, code]).abs().max(1).values.min()
        assert gap < 1e-5 and not torch.equal(after[level, code], before[level, code])


def test_squared_distances():
    x = np.array([[0.0, 0.0], [1.0, 1.0]], np.float32)
    c = np.array([[1.0, 0.0], [3.0, 1.0]], np.float32)
    np.testing.assert_allclose(squared_distances(x, c), [[1, 10], [1, 4]])


def test_rqvae_is_deterministic_at_realistic_size():
    # the paper-size shape (384-d text vectors, 256 codes) at which torch's default CPU backward
    # kernels made two runs differ before genrec forced deterministic algorithms
    x = np.random.default_rng(1).normal(size=(4000, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    kwargs = dict(
        n_levels=3,
        codebook_size=256,
        hidden=[512, 256, 128],
        latent_dim=32,
        epochs=2,
        batch_size=1024,
        lr=1e-3,
        beta=0.25,
        kmeans_iters=5,
        seed=0,
    )
    a, b = rq_vae(x, **kwargs), rq_vae(x, **kwargs)
    assert np.array_equal(a.codes, b.codes) and a.level_errors == b.level_errors


def test_per_modality_levels_cluster_their_own_vectors(vectors):
    rng = np.random.default_rng(3)
    categories = rng.normal(size=(3, 5)).astype(np.float32)[rng.integers(3, size=len(vectors))]  # 3 distinct paths
    parts = [vectors[:, :12], categories, vectors[:, 12:]]
    q = per_modality(parts, codebook_size=8, iters=15, seed=1)
    assert q.codes.shape == (len(vectors), 3) and q.distances.shape == (len(vectors), 3, 8)
    for level in range(len(parts)):
        assert (q.codes[:, level] == q.distances[:, level].argmin(1)).all()  # nearest code of its own modality
        assert q.codes[:, level].max() < 8 and 0 <= q.level_errors[level] < 1
    # fewer distinct vectors than codes: one code per category path, the rest out of reach
    assert len(np.unique(q.codes[:, 1])) == 3 and np.isinf(q.distances[:, 1, 3:]).all()
    _, first = np.unique(categories, axis=0, return_inverse=True)
    assert len(set(zip(first.ravel().tolist(), q.codes[:, 1].tolist()))) == 3  # same path, same code
    assert q.level_errors[1] == pytest.approx(0.0, abs=1e-6)  # every path is its own centroid


def test_per_modality_ids_on_synthetic(make_config):
    from conftest import TINY_SYNTHETIC

    from genrec.pipeline import load_split
    from genrec.semantic_ids import semantic_ids

    config = make_config(**TINY_SYNTHETIC, model="PSID", vq_method="per_modality", vq_modalities="cf,category,text")
    sids = semantic_ids(config, *load_split(config))
    assert sids.report["embedding_source"] == "cf+category+text" and sids.report["unique"] == 1.0
    assert sids.codes.shape[1] == 3 and sids.level_sizes == [8, 8, 8]
    with pytest.raises(ConfigError, match="one level per modality"):
        make_config(**TINY_SYNTHETIC, model="PSID", vq_method="per_modality", vq_modalities="cf,text")


def test_a_registered_quantizer_is_a_vq_method(make_config, monkeypatch):
    """The configuration accepts exactly the registry's quantizers; a new one needs a register() only,
    and its own settings join the cache key (it never reads another method's cached IDs)."""
    calls = []

    def quantize(config, vectors):
        calls.append(config.vq_method)
        return methods.get("rqkmeans").quantize(config, vectors)

    mine = methods.Quantizer("my_rq", quantize, residual_codebooks, lambda config: {"flavour": 1})
    monkeypatch.setitem(methods.QUANTIZERS, "my_rq", mine)
    config = make_config(**TINY_SYNTHETIC, vq_method="my_rq")
    data, split = load_split(config)
    sids = semantic_ids(config, data, split)
    assert calls == ["my_rq"] and sids.report["method"] == "my_rq"
    plain = semantic_ids(make_config(**TINY_SYNTHETIC, vq_method="rqkmeans"), data, split)
    assert plain.cache_key != sids.cache_key and calls == ["my_rq"]
    np.testing.assert_array_equal(plain.codes, sids.codes)  # the same algorithm underneath
    with pytest.raises(
        ConfigError, match="no such quantizer; registered: letter, my_rq, opq, per_modality, rqkmeans, rqvae"
    ):
        make_config(vq_method="rq_kmeans")


LETTER_RQVAE = dict(
    n_levels=2,
    codebook_size=8,
    hidden=[32],
    latent_dim=8,
    epochs=25,
    batch_size=128,
    lr=3e-3,
    beta=0.25,
    kmeans_iters=10,
)


def letter_term(collaborative, cf_weight, diversity_weight, clusters=3):
    return lambda latent_dim: LetterRegularizer(
        collaborative, latent_dim, cf_weight, diversity_weight, clusters, temperature=0.1, kmeans_iters=10, seed=0
    )


def test_letter_without_its_terms_is_rq_vae(vectors):
    """LETTER is RQ-VAE plus two terms: at weight 0 its codes are RQ-VAE's, bit for bit."""
    collaborative = np.random.default_rng(1).normal(size=(len(vectors), 10)).astype(np.float32)
    plain = rq_vae(vectors, seed=0, **LETTER_RQVAE)
    letter = rq_vae(vectors, seed=0, make_regularizer=letter_term(collaborative, 0.0, 0.0), **LETTER_RQVAE)
    assert np.array_equal(plain.codes, letter.codes)
    np.testing.assert_array_equal(plain.info["codebooks"], letter.info["codebooks"])


def test_letter_terms_match_their_definitions():
    """The alignment is in-batch InfoNCE of quantized latents against collaborative vectors (cosines /
    temperature); the diversity term, per level, a softmax over the codebook's dot products
    with the assigned code's own entry removed and a sibling of its group as the target."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    collaborative = rng.normal(size=(10, 4)).astype(np.float32)
    term = letter_term(collaborative, 0.5, 0.25, clusters=2)(4)
    model = RQVAE(5, [7], 4, 2, 6)
    with torch.no_grad():
        model.codebooks.normal_()
    term.start_epoch(model)
    rows = torch.tensor([3, 0, 7, 9])
    quantized = torch.randn(4, 4)
    codes = torch.tensor([[0, 1], [2, 5], [4, 4], [1, 0]])
    generator_state = term.generator.get_state()
    got = term(model, rows, quantized, codes)

    q = torch.nn.functional.normalize(quantized, dim=1)
    h = torch.nn.functional.normalize(torch.as_tensor(collaborative[rows.numpy()]), dim=1)
    logits = (q @ h.T / 0.1).double()
    alignment = -torch.mean(torch.stack([logits[i, i] - torch.logsumexp(logits[i], 0) for i in range(4)]))

    term.generator.set_state(generator_state)  # the same sibling draws, level by level
    diversity = 0.0
    for level, codebook in enumerate(model.codebooks):
        siblings = term.siblings[level]
        weights = siblings[codes[:, level]].float()
        alone = weights.sum(1) == 0
        weights[alone, codes[alone, level]] = 1
        positives = torch.multinomial(weights, 1, generator=term.generator).squeeze(1)
        for i in range(4):
            code, positive = int(codes[i, level]), int(positives[i])
            assert positive != code or bool(alone[i])
            assert bool(siblings[code, positive]) or bool(alone[i])  # a code of the same group
            scores = (codebook[code] @ codebook.T).detach().double()
            if not alone[i]:
                scores[code] = float("-inf")
            diversity += float(torch.logsumexp(scores, 0) - scores[positive]) / 4
    diversity = float(diversity)
    expected = 0.5 * float(alignment) + 0.25 * diversity / 2
    assert float(got.detach()) == pytest.approx(expected, rel=1e-5)


def test_letter_codes_carry_the_collaborative_groups():
    """Twelve text clusters, merged into three collaborative groups the text does not show: LETTER's
    quantized latents (the sum of each item's code vectors) bring an item nearer its group's items
    than RQ-VAE's do (mean cosine within groups minus across them), for each of two seeds and by
    more than 0.1 on average (seeds 0-4 measured: +0.10 to +0.33; the exact values move with the
    CPU's kernels and the libraries' versions)."""
    rng = np.random.default_rng(0)
    cluster = rng.integers(12, size=600)
    texts = (rng.normal(size=(12, 24))[cluster] * 3 + rng.normal(size=(600, 24))).astype(np.float32)
    groups = cluster % 3
    collaborative = (np.eye(8)[groups] * 3 + rng.normal(size=(600, 8)) * 0.3).astype(np.float32)
    same = groups[:, None] == groups[None, :]

    def separation(q):
        latents = sum(codebook[q.codes[:, level]] for level, codebook in enumerate(q.info["codebooks"]))
        unit = latents / np.linalg.norm(latents, axis=1, keepdims=True)
        cosines = unit @ unit.T
        return cosines[same].mean() - cosines[~same].mean()

    settings = {**LETTER_RQVAE, "codebook_size": 4, "epochs": 40}
    gains = []
    for seed in (0, 1):
        plain = rq_vae(texts, seed=seed, **settings)
        letter = rq_vae(texts, seed=seed, make_regularizer=letter_term(collaborative, 10.0, 1e-4), **settings)
        gains.append(separation(letter) - separation(plain))
    assert min(gains) > 0.05 and np.mean(gains) > 0.1, gains


def test_letter_ids_are_built_cached_and_keyed_by_the_collaborative_vectors(make_config):
    settings = dict(
        **TINY_SYNTHETIC,
        vq_method="letter",
        letter_clusters=4,
        rqvae_epochs=5,
        rqvae_hidden_dims=[32],
        rqvae_latent_dim=8,
    )
    config = make_config(**settings)
    data, split = load_split(config)
    sids = semantic_ids(config, data, split)
    assert sids.report["method"] == "letter" and sids.report["unique"] == 1.0
    heavier = semantic_ids(make_config(**settings, letter_cf_weight=0.5), data, split)
    other_cf = semantic_ids(make_config(**settings, cf_emb_dim=16), data, split)
    assert len({sids.cache_key, heavier.cache_key, other_cf.cache_key}) == 3
    with pytest.raises(ConfigError, match="letter_clusters=9 groups more codes than a level has"):
        semantic_ids(make_config(**{**settings, "letter_clusters": 9}), data, split)
