"""Semantic-ID and embedding caches: reused only when nothing that affects them changed."""

import numpy as np
import pytest
from conftest import TINY_SYNTHETIC

import genrec.semantic_ids as sid_module
from genrec.cache import ArrayCache, digest
from genrec.pipeline import load_split
from genrec.semantic_ids import semantic_ids


@pytest.fixture
def count_quantize(monkeypatch):
    calls = []
    real = sid_module.quantize

    def counting(config, vectors):
        calls.append(config)
        return real(config, vectors)

    monkeypatch.setattr(sid_module, "quantize", counting)
    return calls


def build(make_config, **changes):
    config = make_config(**{**TINY_SYNTHETIC, **changes})
    data, split = load_split(config)
    return semantic_ids(config, data, split)


CHANGES = [
    {"vq_method": "opq", "sent_emb_pca": 16},  # OPQ needs more items than dimensions
    {"vq_method": "rqvae", "rqvae_epochs": 2, "rqvae_hidden_dims": [16], "rqvae_latent_dim": 8},
    {"vq_n_codebooks": 4},
    {"vq_codebook_size": 16},
    {"vq_collision": "tiger"},
    {"vq_kmeans_iters": 11},
    {"seed": 1},
    {"sent_emb_fields": ["title"]},
    {"sent_emb_max_chars": 40},
    {"sent_emb_pca": 8},
    {"item_emb": "cf", "cf_emb_dim": 8},
    {"item_emb": "text+cf", "cf_emb_dim": 8},
    {"synthetic_seed": 3},  # different data: the content fingerprint changes
    {"vq_method": "per_modality"},
    {"vq_method": "per_modality", "vq_modalities": ["text", "category", "cf"]},
    {"vq_modalities": ["text", "category", "cf"]},  # read by per_modality only
    {"max_item_seq_len": 5},  # affects neither embeddings nor IDs
    {"vq_level_order": [2, 0, 1]},  # applied to the cached IDs on loading
]
REUSING = ({"vq_modalities": ["text", "category", "cf"]}, {"max_item_seq_len": 5}, {"vq_level_order": [2, 0, 1]})


def test_every_setting_that_matters_invalidates_and_nothing_else_does(make_config, count_quantize, tmp_path):
    base = build(make_config)
    assert len(count_quantize) == 1
    again = build(make_config)
    assert len(count_quantize) == 1  # cache hit: nothing recomputed
    assert (again.codes == base.codes).all() and again.report == base.report
    for change in CHANGES:
        before = len(count_quantize)
        build(make_config, **change)
        recomputed = len(count_quantize) - before
        assert recomputed == (0 if change in REUSING else 1), change
    entries = list((tmp_path / "cache").rglob("sids-*.npz"))
    assert len(entries) == 1 + len(CHANGES) - len(REUSING)
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # atomic writes leave no temporaries


def test_cache_sidecar_records_the_key(tmp_path):
    cache = ArrayCache(tmp_path)
    key = {"method": "rqkmeans", "seed": 1}
    import numpy as np

    path = cache.save("sids", key, {"codes": np.arange(6).reshape(3, 2)})
    assert path.name == f"sids-{digest(key)[:20]}.npz"
    assert '"seed": 1' in path.with_suffix(".json").read_text()
    assert (cache.load("sids", key)["codes"] == np.arange(6).reshape(3, 2)).all()
    assert cache.load("sids", {"method": "rqkmeans", "seed": 2}) is None


def test_report_content(make_config):
    sids = build(make_config)
    report = sids.report
    assert report["unique"] == 1.0 and report["id_length"] == 3 and sids.level_sizes == [8, 8, 8]
    errors = [level["recon_error"] for level in report["levels"]]
    assert errors == sorted(errors, reverse=True)
    assert all(0 < level["utilisation"] <= 1 for level in report["levels"])
    tiger = build(make_config, vq_collision="tiger")
    assert tiger.codes.shape[1] == 4 and tiger.level_sizes == [8, 8, 8, tiger.report["extra_token_values"]]
    assert tiger.report["unique"] == 1.0
    # tiger keeps the raw quantizer codes; conflict-free changed exactly the rows it reports as moved
    unchanged = (sids.codes == tiger.codes[:, :3]).all(axis=1).sum()
    assert unchanged == report["n_items"] - report["moved_items"] and report["moved_items"] > 0


def test_algorithm_version_is_part_of_the_key(make_config, count_quantize, monkeypatch):
    build(make_config)
    monkeypatch.setattr(sid_module, "ALGORITHM_VERSION", sid_module.ALGORITHM_VERSION + 1)
    build(make_config)
    assert len(count_quantize) == 2  # a code change that alters results never reuses old IDs


def sids_entry(tmp_path):
    (entry,) = (tmp_path / "cache").rglob("sids-*.npz")
    return entry


def zero_codes(path):
    import numpy as np

    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    arrays["codes"] = np.zeros_like(arrays["codes"])
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


@pytest.mark.parametrize(
    "damage, says",
    [
        (
            zero_codes,
            "invalid (semantic IDs are not unique)",
        ),  # readable but wrong: once used, and reported 100% unique
        (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "unreadable"),  # truncated
        (lambda p: p.write_bytes(b"garbage" * 50), "unreadable"),
    ],
)
def test_a_damaged_sids_entry_is_rebuilt_with_a_warning(make_config, count_quantize, tmp_path, caplog, damage, says):
    import numpy as np

    base = build(make_config)
    entry = sids_entry(tmp_path)
    damage(entry)
    rebuilt = build(make_config)
    assert len(count_quantize) == 2 and np.array_equal(rebuilt.codes, base.codes)
    assert f"cache entry {entry} is {says}" in caplog.text and "rebuilding it" in caplog.text
    assert (
        np.array_equal(build(make_config).codes, base.codes) and len(count_quantize) == 2
    )  # the rewritten entry is good


@pytest.mark.parametrize("kind, change", [("text-emb", {}), ("cf-emb", {"item_emb": "cf", "cf_emb_dim": 8})])
def test_non_finite_cached_vectors_are_rebuilt(make_config, tmp_path, caplog, kind, change):
    import numpy as np

    build(make_config, **change)
    (entry,) = (tmp_path / "cache").rglob(f"{kind}-*.npz")
    with np.load(entry) as data:
        vectors = data["vectors"].copy()
    vectors[3, 1] = np.nan
    with open(entry, "wb") as handle:
        np.savez(handle, vectors=vectors)
    build(make_config, **change)
    assert f"cache entry {entry} is invalid (non-finite values)" in caplog.text
    with np.load(entry) as data:
        assert np.isfinite(data["vectors"]).all()


def test_entries_used_records_what_a_block_loaded_or_saved(tmp_path):
    from genrec.cache import entries_used

    cache = ArrayCache(tmp_path)
    cache.save("a", {"k": 1}, {"x": np.zeros(2)})
    with entries_used() as used:
        assert cache.load("a", {"k": 1}) is not None
        assert cache.load("a", {"k": 2}) is None  # a miss is not a use
        saved = cache.save("b", {"k": 1}, {"x": np.ones(2)})
        cache.load("b", {"k": 1})
    assert used == [cache.path("a", {"k": 1}), saved]
    cache.load("a", {"k": 1})  # outside the block: not recorded
    assert len(used) == 2
