import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
if os.environ.get("PYTEST_XDIST_WORKER"):  # parallel workers share the cores: one torch thread each
    import torch

    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# A synthetic catalogue small enough for quick end-to-end tests.
TINY_SYNTHETIC = dict(
    synthetic_n_users=120,
    synthetic_n_items=96,
    synthetic_n_twin_pairs=4,
    synthetic_n_triples=2,
    vq_codebook_size=8,
    vq_kmeans_iters=10,
)

# The smallest semantic-ID backbone (T5 or decoder) that still learns the tiny catalogue.
TINY_BACKBONE = dict(d_model=16, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2, d_kv=8)


def tiny_causal_lm(backbone: str, vocab, max_items: int = 20):
    """A Hugging Face causal LM of model type ``backbone`` at the smallest backbone's sizes, random-initialised."""
    from types import SimpleNamespace

    from genrec.models.sid_causal_lm import build_causal_lm

    settings = SimpleNamespace(
        backbone=backbone,
        backbone_path=None,
        max_item_seq_len=max_items,
        dropout_rate=0.0,
        history_text=[],
        **TINY_BACKBONE,
    )
    return build_causal_lm(settings, vocab)


# The smallest transformer of the item-level models (SASRec, BERT4Rec, SimGR, ParallelSID).
TINY_FULL_RANKING = dict(hidden_size=16, num_layers=1, num_heads=2)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def make_config(tmp_path):
    """load_config with caches and outputs inside the test's temporary folder."""
    from genrec.config import load_config

    def make(argv=None, **overrides):
        overrides.setdefault("cache_dir", str(tmp_path / "cache"))
        overrides.setdefault("output_dir", str(tmp_path / "runs"))
        return load_config(argv or [], **overrides)

    return make


def train_run(root: Path, model: str, **settings) -> Path:
    """Train ``model`` into ``root/runs/<model>`` with its caches in ``root/cache``; its folder."""
    from genrec.config import load_config
    from genrec.pipeline import train

    config = load_config(
        [], model=model, run_name=model, cache_dir=str(root / "cache"), output_dir=str(root / "runs"), **settings
    )
    return train(config)[1]
