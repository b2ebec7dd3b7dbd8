"""Plug-ins from outside genrec: a model, a dataset, a quantizer and a command declared as entry
points by an installed package (a distribution written into a temporary site folder) are found by name, train,
and may not take a name genrec has."""

import shutil
import textwrap

import numpy as np
import pytest
from conftest import TINY_FULL_RANKING, TINY_SYNTHETIC

from genrec import datasets, models
from genrec.cli import main
from genrec.errors import ConfigError, GenrecError
from genrec.pipeline import load_split, train
from genrec.semantic_ids import methods, semantic_ids

ENTRY_POINTS = """\
[genrec.models]
ToySASRec = genrec_toy_plugin.model
[genrec.datasets]
ToyData = genrec_toy_plugin.data
[genrec.quantizers]
toy_rq = genrec_toy_plugin.quantizer:QUANTIZER
[genrec.commands]
toy = genrec_toy_plugin.command:cmd_toy
"""

# a command: a function (argv) -> exit code whose docstring is its --help
TOY_COMMAND = '''
def cmd_toy(argv):
    """genrec toy [--times=N]: prints the catalogue's size N times."""
    from genrec.config import load_config, parse_flags
    from genrec.pipeline import load_interactions

    _, flags = parse_flags(argv)
    times = int(flags.pop("times", 1))
    for _ in range(times):
        print(load_interactions(load_config([], **flags)).n_items)
    return 0
'''


def install(site, name: str, entry_points: str) -> None:
    """A distribution as pip leaves it: the package and a ``.dist-info`` with its entry points."""
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    site = tmp_path / "site"
    package = site / "genrec_toy_plugin"
    (package / "model").mkdir(parents=True)
    (package / "data").mkdir()
    (package / "__init__.py").write_text("")
    # a model package: genrec's SASRec under another name and its own defaults
    (package / "model" / "__init__.py").write_text("from genrec.models.SASRec import SASRec, Settings, build\n")
    shutil.copy(models.config_file("SASRec"), package / "model" / "config.yaml")
    # a dataset package: the generated catalogue, with defaults of its own
    (package / "data" / "__init__.py").write_text("from genrec.datasets.Synthetic import Settings, load\n")
    shutil.copy(datasets.config_file("Synthetic"), package / "data" / "config.yaml")
    (package / "quantizer.py").write_text(
        textwrap.dedent(
            """\
            from pydantic import Field

            from genrec.schema import StrictModel
            from genrec.semantic_ids.frozen import residual_codebooks
            from genrec.semantic_ids.methods import Quantizer, levels
            from genrec.semantic_ids.rqkmeans import rq_kmeans


            class Settings(StrictModel):
                toy_iters: int = Field(3, ge=1, description="k-means iterations of the toy quantizer")


            QUANTIZER = Quantizer(
                "toy_rq",
                lambda config, v: rq_kmeans(v.vectors, iters=config.toy_iters, seed=config.seed, **levels(config)),
                residual_codebooks,
                lambda config: {"toy_iters": config.toy_iters},
                Settings,
            )
            """
        )
    )
    (package / "command.py").write_text(TOY_COMMAND)
    install(site, "genrec-toy-plugin", ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    return site


def test_an_installed_packages_model_dataset_and_quantizer_are_found_and_train(plugin, make_config):
    assert "ToySASRec" in models.names() and "ToyData" in datasets.names() and "toy_rq" in methods.names()
    assert models.config_file("ToySASRec") == plugin / "genrec_toy_plugin" / "model" / "config.yaml"
    config = make_config(
        model="ToySASRec",
        dataset="ToyData",
        vq_method="toy_rq",
        run_name="toy",
        epochs=1,
        batch_size=64,
        **TINY_FULL_RANKING,
        **TINY_SYNTHETIC,
    )
    results, directory = train(config)
    assert (directory / "best.pt").is_file() and "ndcg@10" in results["test"]
    interactions, split = load_split(config)
    sids = semantic_ids(config, interactions, split)  # quantized by the plug-in
    assert config.toy_iters == 3  # its own setting, at its schema's default
    assert "toy_iters" not in type(make_config(model="ToySASRec", vq_method="rqkmeans")).model_fields  # nor others
    with pytest.raises(ConfigError, match="toy_iters"):
        make_config(vq_method="toy_rq", toy_iters=0)
    assert sids.codes.shape == (interactions.n_items, 3) and len(np.unique(sids.codes, axis=0)) == interactions.n_items


def test_a_plugin_may_not_take_a_name_genrec_has(tmp_path, monkeypatch):
    site = tmp_path / "site"
    install(site, "shadowing", "[genrec.models]\nPSID = shadowing.model\n[genrec.quantizers]\nopq = shadowing:Q\n")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(GenrecError, match="plug-in 'PSID' from shadowing.model \\(distribution shadowing\\)"):
        models.names()
    with pytest.raises(GenrecError, match="plug-in 'opq' .* takes the name of genrec's own quantizer"):
        methods.names()


def test_a_plugin_that_cannot_be_imported_is_one_line_naming_it(tmp_path, monkeypatch):
    site = tmp_path / "site"
    install(site, "broken", "[genrec.datasets]\nBroken = no_such_module\n[genrec.quantizers]\nbad = no_such:Q\n")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(GenrecError, match="plug-in 'Broken' \\(no_such_module \\(distribution broken\\)\\) cannot be"):
        datasets.get("Broken")
    with pytest.raises(GenrecError, match="plug-in 'bad' .* cannot be loaded"):
        methods.names()


def test_an_installed_packages_command_runs_and_is_listed(plugin, capsys, tmp_path):
    synthetic = [f"--{key}={value}" for key, value in TINY_SYNTHETIC.items()]
    assert main(["toy", "--times=2", f"--cache_dir={tmp_path}", *synthetic]) == 0
    out = capsys.readouterr().out.split()
    assert len(out) == 2 and out[0] == out[1] and int(out[0]) > 90
    assert main(["--help"]) == 0
    listed = "toy             genrec_toy_plugin.command:cmd_toy (distribution genrec-toy-plugin)"
    assert listed in capsys.readouterr().out
    assert main(["toy", "--help"]) == 0 and "prints the catalogue's size" in capsys.readouterr().out


def test_a_command_may_not_take_a_name_genrec_has(tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    install(site, "shadowing", "[genrec.commands]\ntrain = shadowing:cmd\n")
    monkeypatch.syspath_prepend(str(site))
    assert main(["train"]) == 2
    assert "the command plug-in 'train' from shadowing:cmd (distribution shadowing)" in capsys.readouterr().err
