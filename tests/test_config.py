"""Layered configuration: order of the layers, validation errors, round trip."""

from types import SimpleNamespace

import pytest
import yaml

from genrec import models
from genrec.config import dump_config, load_config, parse_flags
from genrec.errors import ConfigError
from genrec.schema import StrictModel


def test_defaults_then_dataset_layer():
    config = load_config([])
    assert config.dataset == "Synthetic" and config.model is None
    assert config.vq_n_codebooks == 3 and config.max_item_seq_len == 20
    assert config.vq_codebook_size == 32  # genrec/datasets/Synthetic/config.yaml overrides the default 256
    assert load_config(["--dataset=MovieLens"]).vq_codebook_size == 256


def test_file_then_flags(tmp_path):
    user = tmp_path / "my.yaml"
    user.write_text("vq_codebook_size: 32\nseed: 5\n")
    config = load_config(["--config", str(user), "--seed=9"])
    assert config.vq_codebook_size == 32  # file beats the dataset layer
    assert config.seed == 9  # flags beat the file
    assert load_config([f"--config={user}"]).seed == 5


def test_model_layer_sits_between_dataset_and_file(tmp_path, monkeypatch):
    class Settings(StrictModel):
        n_latent_tokens: int

    model_dir = tmp_path / "Fake"
    model_dir.mkdir()
    (model_dir / "config.yaml").write_text("n_latent_tokens: 8\nvq_collision: tiger\nvq_codebook_size: 64\n")
    monkeypatch.setattr(models, "names", lambda: ["Fake"])
    monkeypatch.setattr(models, "get", lambda name: SimpleNamespace(Settings=Settings))
    monkeypatch.setattr(models, "config_file", lambda name: model_dir / "config.yaml")
    config = load_config(["--model=Fake"])
    assert (config.n_latent_tokens, config.vq_collision, config.vq_codebook_size) == (8, "tiger", 64)
    user = tmp_path / "user.yaml"
    user.write_text("vq_codebook_size: 128\n")
    assert load_config(["--model=Fake", f"--config={user}", "--n_latent_tokens=2"]).vq_codebook_size == 128
    with pytest.raises(ConfigError, match="n_latent_tokens.*model Fake"):
        load_config(["--n_latent_tokens=2"])  # a model key without that model


def test_values_are_yaml_scalars_never_code():
    _, flags = parse_flags(
        [
            "--seed=3",
            "--rqvae_lr",
            "1e-3",
            "--sent_emb_fields=[title, brand]",
            "--data_dir=null",
            "--run_name=__import__('os')",
        ]
    )
    assert flags == {
        "seed": 3,
        "rqvae_lr": "1e-3",
        "sent_emb_fields": ["title", "brand"],
        "data_dir": None,
        "run_name": "__import__('os')",
    }
    assert load_config(["--rqvae_lr", "1e-3"]).rqvae_lr == 1e-3  # YAML 1.1 reads 1e-3 as text; the schema converts it
    assert load_config(["--sent_emb_fields=title,brand"]).sent_emb_fields == ["title", "brand"]


def test_unknown_key_names_closest_valid_key():
    with pytest.raises(ConfigError) as info:
        load_config(["--vq_codebook_sise=8"])
    message = str(info.value)
    assert (
        "'vq_codebook_sise'" in message and "did you mean 'vq_codebook_size'" in message and "command line" in message
    )


def test_key_of_another_dataset_is_explained():
    with pytest.raises(ConfigError, match="synthetic_n_users.*dataset Synthetic, not of dataset MovieLens"):
        load_config(["--dataset=MovieLens", "--synthetic_n_users=5"])


def test_unknown_key_in_file_names_the_file(tmp_path):
    user = tmp_path / "bad.yaml"
    user.write_text("learning_rat: 0.1\n")
    with pytest.raises(ConfigError, match=f"--config {user}"):
        load_config([f"--config={user}"])


def test_a_config_file_shared_by_several_models(tmp_path):
    shared = tmp_path / "shared.yaml"
    shared.write_text("d_model: 32\nn_latent_tokens: 2\nhidden_size: 16\nepochs: 3\n")
    assert load_config([f"--config={shared}", "--model=TIGER"]).d_model == 32  # Latte's and SASRec's keys ignored
    assert load_config([f"--config={shared}", "--model=SASRec"]).hidden_size == 16
    assert load_config([f"--config={shared}"]).epochs == 3  # no model: every model key ignored
    with pytest.raises(ConfigError, match="n_latent_tokens"):  # a flag is never ignored
        load_config([f"--config={shared}", "--model=TIGER", "--n_latent_tokens=2"])
    shared.write_text("d_modle: 32\n")
    with pytest.raises(ConfigError, match="d_modle"):  # a key of no model is still a typo
        load_config([f"--config={shared}", "--model=TIGER"])


@pytest.mark.parametrize(
    "flag,needle",
    [
        ("--vq_n_codebooks=three", "vq_n_codebooks"),
        ("--vq_n_codebooks=2.5", "vq_n_codebooks"),
        ("--vq_n_codebooks=0", "greater than or equal to 1"),
        ("--vq_method=kmeans", "vq_method"),
        ("--item_emb=image", "item_emb"),
        ("--sent_emb_fields=title,colour", "sent_emb_fields"),
        ("--rqvae_lr=-1", "rqvae_lr"),
    ],
)
def test_ill_typed_values_fail_naming_the_key(flag, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config([flag])


def test_bad_dataset_model_and_category():
    with pytest.raises(ConfigError, match="did you mean 'MovieLens'"):
        load_config(["--dataset=Movielens"])
    with pytest.raises(ConfigError, match="unknown model 'Late'.*did you mean 'Latte'"):
        load_config(["--model=Late"])
    with pytest.raises(ConfigError, match="did you mean 'Video_Games'"):
        load_config(["--dataset=AmazonReviews2023", "--category=Video_Game"])


def test_malformed_flags():
    with pytest.raises(ConfigError, match="needs a value"):
        parse_flags(["--seed"])
    with pytest.raises(ConfigError, match="expected a --key=value"):
        parse_flags(["seed=3"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_flags(["--seed=3", "--seed=4"])


def test_every_schema_key_has_a_default_and_no_default_is_orphaned():
    from genrec import datasets
    from genrec.config import DEFAULT_FILE, GlobalSettings, read_yaml
    from genrec.semantic_ids import methods

    quantizers = {key for schema in methods.settings_schemas() for key in schema.model_fields}
    assert "rqvae_epochs" in quantizers  # RQ-VAE's own settings, declared in its module, default in default.yaml
    assert set(read_yaml(DEFAULT_FILE)) == set(GlobalSettings.model_fields) | quantizers
    for registry in (datasets, models):
        for name in registry.names():
            own = set(registry.get(name).Settings.model_fields)
            layer = set(read_yaml(registry.config_file(name)))
            assert own <= layer <= own | set(GlobalSettings.model_fields), name
    assert models.names() == ["BERT4Rec", "GRU4Rec", "Latte", "PSID", "ParallelSID", "SASRec", "SimGR", "TIGER"]


def test_resolved_config_round_trips(tmp_path):
    config = load_config(["--dataset=AmazonReviews2018", "--category=Instruments", "--seed=11", "--sent_emb_pca=8"])
    dump_config(config, tmp_path / "config.yaml")
    written = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert written["category"] == "Instruments" and written["seed"] == 11
    assert load_config([f"--config={tmp_path / 'config.yaml'}"]).model_dump() == config.model_dump()
