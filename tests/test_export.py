"""`genrec export`: a run folder made self-contained. The export loads with the run's dataset files
and cache gone (and, for a run on a pretrained language model, its model folder), recommends what the
run recommends, adds items as the run does, and refuses a damaged file by name."""

import json
import shutil

import numpy as np
import pytest
from conftest import TINY_BACKBONE, TINY_FULL_RANKING, TINY_SYNTHETIC, train_run

import genrec
from genrec.cli import main
from genrec.config import load_config
from genrec.data.interactions import build_interactions
from genrec.datasets.Interactions import export
from genrec.errors import ConfigError, GenrecError
from genrec.export import export_run, read_interactions, write_interactions
from genrec.pipeline import load_interactions

RUN = dict(batch_size=64, warmup_steps=5, eval_batch_size=64, num_beams=8, test_num_beams=16, seed=3, epochs=2)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """PSID (text semantic IDs, adds items) and SASRec trained on a user's own files, their lists
    and an added item's ID taken from the runs, then exported; the files and every cache are deleted
    afterwards."""
    root = tmp_path_factory.mktemp("export")
    own = export(load_interactions(load_config([], cache_dir=str(root / "cache"), **TINY_SYNTHETIC)), root / "own")
    data = dict(dataset="Interactions", interactions=str(own[0]), items=str(own[1]), time_column=None)
    codes = {k: v for k, v in TINY_SYNTHETIC.items() if k.startswith("vq_")}
    settings = {"PSID": {**TINY_BACKBONE, **RUN}, "SASRec": {**RUN, **TINY_FULL_RANKING}}
    expected, folders = {}, {}
    for model, extra in settings.items():
        folders[model] = train_run(root, model, **data, **codes, **extra)
        run = genrec.load_run(folders[model], cache_dir=str(root / "cache"))
        histories = [[run.interactions.item_ids[i] for i in h] for h in run.split.test.histories[:20]]
        expected[model] = (histories, run.recommend(histories, k=10))
        to, cache = root / "exports" / model, f"--cache_dir={root / 'cache'}"
        if model == "PSID":
            export_run(folders[model], to, cache_dir=str(root / "cache"))
        else:  # as a user does on the command line
            assert main(["export", f"--run={folders[model]}", f"--to={to}", cache]) == 0
    original = genrec.load_run(folders["PSID"], cache_dir=str(root / "cache"))
    added = original.add_items([{"id": "new-1", **original.interactions.item_text[5]}])
    for folder in ("cache", "own"):  # nothing of the run's cache or data is left where it was
        (root / folder).rename(root / f"{folder}.away")
    return root / "exports", folders, expected, added


@pytest.mark.parametrize("model", ["PSID", "SASRec"])
def test_an_export_recommends_what_its_run_recommends_with_no_data_or_cache(exported, model):
    exports, _, expected, _ = exported
    run = genrec.load_run(exports / model)
    histories, lists = expected[model]
    assert run.recommend(histories, k=10) == lists
    files = {path.name for path in (exports / model).iterdir()}
    assert {"export.json", "config.yaml", "model.safetensors", "identity.json", "data.npz", "README.md"} <= files
    mode = (exports / model / "config.yaml").stat().st_mode
    assert (exports / model / "model.safetensors").stat().st_mode == mode  # readable as any file the user writes
    card = (exports / model / "README.md").read_text()
    assert f"# {model} on Interactions/events" in card and "genrec.load_run" in card and "ndcg@10" in card
    if model == "PSID":
        assert sorted(path.name.split("-")[0] for path in (exports / model / "cache").rglob("*.npz")) == [
            "quantizer",
            "sids",
            "text",
        ]


def test_an_export_adds_items_as_its_run_does(exported):
    exports, _, _, added = exported
    run = genrec.load_run(exports / "PSID")
    text = dict(run.interactions.item_text[5])
    assert run.add_items([{"id": "new-1", **text}]) == added
    history = run.split.test.histories[0]
    ((only,),) = run.recommend([[run.interactions.item_ids[i] for i in history]], k=1, allow=["new-1"])
    assert only[0] == "new-1"


def test_a_damaged_or_edited_file_is_refused_by_name(exported, tmp_path):
    exports, _, _, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(exports / "SASRec", copy)
    with open(copy / "model.safetensors", "r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\x00\x01\x02\x03")
    with pytest.raises(GenrecError, match="model.safetensors differs from the export's manifest"):
        genrec.load_run(copy)
    (copy / "data.npz").unlink()
    with pytest.raises(GenrecError, match="incomplete: data.npz is missing"):
        genrec.load_run(copy)
    with pytest.raises(ConfigError, match="reads its own cache"):
        genrec.load_run(exports / "SASRec", cache_dir=str(tmp_path))


def test_export_refuses_a_folder_in_use_and_leaves_nothing_when_it_fails(exported, tmp_path, monkeypatch):
    exports, folders, _, _ = exported
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(GenrecError, match="not an empty folder"):
        export_run(folders["SASRec"], taken)
    with pytest.raises(ConfigError, match="not a finished run"):
        export_run(tmp_path, tmp_path / "out")
    with pytest.raises(GenrecError, match="interactions file .* not found"):  # the run's data is gone
        export_run(folders["SASRec"], tmp_path / "out")

    def fail(*args):
        raise OSError(28, "No space left on device")

    root = exports.parent
    monkeypatch.setattr("genrec.export.write_interactions", fail)
    for folder in ("cache", "own"):
        (root / f"{folder}.away").rename(root / folder)
    try:
        with pytest.raises(OSError, match="No space"):  # a failure half-way through writing
            export_run(folders["SASRec"], tmp_path / "out", cache_dir=str(root / "cache"))
    finally:
        for folder in ("cache", "own"):
            (root / folder).rename(root / f"{folder}.away")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no export and no staging folder


def test_the_export_command_refuses_missing_folders(exported, capsys):
    _, folders, _, _ = exported
    manifest = json.loads((exported[0] / "SASRec" / "export.json").read_text())
    assert manifest["model"] == "SASRec" and "model.safetensors" in manifest["files"]
    assert main(["export", f"--run={folders['SASRec']}"]) == 2
    assert "export needs --run=DIR (a finished run) and --to=DIR" in capsys.readouterr().err


def test_interactions_round_trip_with_times_and_extras(tmp_path):
    interactions = build_interactions(
        "Mine",
        [("u1", ["a", "b", "c"]), ("u2", ["c", "a"])],
        {"a": {"title": "A é"}, "b": {"title": "B"}, "c": {"title": "C", "categories": "x,y"}},
        {"duplicates": 1},
        extra={"item_groups": {"g": ["a"]}},
        times=[[1.0, 2.5, 3.0], [4.0, 5.0]],
    )
    write_interactions(interactions, tmp_path / "data.npz")
    again = read_interactions(tmp_path / "data.npz")
    assert again.fingerprint == interactions.fingerprint
    assert again.user_ids == interactions.user_ids and again.item_text == interactions.item_text
    assert again.extra == interactions.extra and again.dropped == interactions.dropped
    assert all(np.array_equal(a, b) for a, b in zip(again.times, interactions.times))


@pytest.mark.parametrize("weights", [True, False], ids=["pretrained", "configuration-only"])
def test_an_export_of_a_run_on_a_language_model_folder_needs_no_model_folder(tmp_path, weights):
    """A run on a local LM folder (a pretrained model it fine-tuned, or a configuration it trained from
    scratch), with its titles in the prompts: the export holds the folder's configuration and
    tokenizer but not its weights, and loads, recommends and adds items with that folder, the dataset
    files and the cache gone."""
    from test_history_text import tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    words = tokenizer()
    lm = tmp_path / "lm"
    config = LlamaConfig(
        vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    if weights:
        LlamaForCausalLM(config).save_pretrained(lm)
    else:
        config.save_pretrained(lm)
    words.save_pretrained(lm)
    backbone = dict(architecture="hf_causal_lm", backbone_path=str(lm), history_text=["title"], history_text_tokens=4)
    folder = train_run(tmp_path, "PSID", **TINY_SYNTHETIC, **TINY_BACKBONE, **{**RUN, "epochs": 1}, **backbone)
    run = genrec.load_run(folder, cache_dir=str(tmp_path / "cache"))
    histories = [[run.interactions.item_ids[i] for i in h] for h in run.split.test.histories[:10]]
    new_item = {"id": "new-1", **run.interactions.item_text[5]}
    expected, added = run.recommend(histories, k=10), run.add_items([new_item])
    export_run(folder, tmp_path / "export", cache_dir=str(tmp_path / "cache"))
    copied = {path.name for path in (tmp_path / "export" / "backbone").iterdir()}
    assert "config.json" in copied and "tokenizer.json" in copied and not copied & {"model.safetensors"}
    for gone in ("lm", "cache"):
        (tmp_path / gone).rename(tmp_path / f"{gone}.away")
    again = genrec.load_run(tmp_path / "export")
    assert again.recommend(histories, k=10) == expected
    assert again.add_items([new_item]) == added

    manifest = json.loads((tmp_path / "export" / "export.json").read_text())  # as an earlier genrec wrote it
    manifest["files"] = {name: entry for name, entry in manifest["files"].items() if not name.startswith("backbone")}
    (tmp_path / "export" / "export.json").write_text(json.dumps(manifest))
    shutil.rmtree(tmp_path / "export" / "backbone")
    with pytest.raises(GenrecError, match="export the run again"):
        genrec.load_run(tmp_path / "export")
