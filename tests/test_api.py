"""The Python API: ``genrec.load_run`` and ``Run.recommend`` over raw item ids give the model's own
rankings and scores, exclude what a user has seen, and name the ids they do not know."""

import re

import numpy as np
import pytest
import torch
from conftest import TINY_BACKBONE, TINY_FULL_RANKING, TINY_SYNTHETIC

import genrec
from genrec.config import load_config
from genrec.errors import ConfigError, GenrecError
from genrec.pipeline import train
from genrec.ranking import search_width

TINY_RUN = dict(batch_size=64, warmup_steps=5, eval_batch_size=64, num_beams=8, test_num_beams=16, seed=3, epochs=2)
TINY = {"PSID": TINY_BACKBONE, "SASRec": TINY_FULL_RANKING}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    folders = {}
    for model, extra in (("PSID", {}), ("Latte", {"n_latent_tokens": 2}), ("SASRec", {})):
        settings = {**TINY_SYNTHETIC, **TINY_RUN, **TINY["SASRec" if model == "SASRec" else "PSID"], **extra}
        config = load_config(
            [], model=model, run_name=model, cache_dir=str(root / "cache"), output_dir=str(root / "runs"), **settings
        )
        folders[model] = train(config)[1]
    return folders, root / "cache"


@pytest.mark.parametrize("model", ["PSID", "Latte", "SASRec"])
def test_recommendations_are_the_models_rankings_in_raw_ids(runs, model):
    folders, cache = runs
    run = genrec.load_run(folders[model], cache_dir=str(cache))
    histories = [run.split.test.histories[u] for u in range(12)]
    raw = [[run.interactions.item_ids[i] for i in history] for history in histories]
    lists = run.recommend(raw, k=10)
    assert all(len(got) == 10 for got in lists)  # Latte's beam of 16 is widened to 2 latent tokens x 10 items
    items, scores = run.model.recommend_scored(histories, 10, search_width(run.model, 16, 10))
    for got, row_items, row_scores in zip(lists, items.tolist(), scores.tolist()):
        expected = [(run.interactions.item_ids[i], s) for i, s in zip(row_items, row_scores) if i >= 0]
        assert [item for item, _ in got] == [item for item, _ in expected]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], rtol=1e-5)
        assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
    for alone, batched in zip(run.recommend(raw, k=10, batch_size=1), lists):  # batching changes nothing
        assert [item for item, _ in alone] == [item for item, _ in batched]
        np.testing.assert_allclose([s for _, s in alone], [s for _, s in batched], rtol=1e-4, atol=1e-4)


def test_generative_scores_are_exact_log_probabilities(runs):
    folders, cache = runs
    run = genrec.load_run(folders["PSID"], cache_dir=str(cache))
    history = run.split.test.histories[0]
    (got,) = run.recommend([[run.interactions.item_ids[i] for i in history]], k=5)
    exact = run.model.path_log_probs([history])[0, 0]
    for item, score in got:
        assert score == pytest.approx(float(exact[run.item_index[item]]), abs=1e-4)


def test_exclude_seen_never_returns_a_history_item(runs):
    folders, cache = runs
    run = genrec.load_run(folders["SASRec"], cache_dir=str(cache))
    raw = [[run.interactions.item_ids[i] for i in run.split.test.seen[u]] for u in range(20)]
    for history, recommended in zip(raw, run.recommend(raw, k=10, exclude_seen=True)):
        assert len(recommended) == 10 and not set(history) & {item for item, _ in recommended}


def test_unknown_ids_are_named_or_skipped(runs):
    folders, cache = runs
    run = genrec.load_run(folders["SASRec"], cache_dir=str(cache))
    known = run.interactions.item_ids[:3]
    with pytest.raises(GenrecError, match="'nope-1', 'nope-2'"):
        run.recommend([[*known, "nope-1"], ["nope-2"]])
    assert run.recommend([[*known, "nope-1"]], on_unknown="skip") == run.recommend([known])
    with pytest.raises(GenrecError, match="hold no known item"):
        run.recommend([["nope-1"]], on_unknown="skip")
    with pytest.raises(ConfigError, match="on_unknown"):
        run.recommend([known], on_unknown="ignore")


def test_load_run_refuses_a_folder_that_is_no_run(tmp_path):
    with pytest.raises(ConfigError, match="is not a finished run"):
        genrec.load_run(tmp_path)


def test_import_genrec_stays_light():
    import subprocess
    import sys

    code = "import sys, genrec; print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
    assert torch.nn.Module  # the API itself loads torch on first use


def test_recommend_command_matches_the_api(runs, tmp_path, capsys):
    import json

    from genrec.cli import main

    folders, cache = runs
    run = genrec.load_run(folders["Latte"], cache_dir=str(cache))
    histories = [[run.interactions.item_ids[i] for i in run.split.test.histories[u]] for u in range(5)]
    expected = run.recommend(histories, k=4, exclude_seen=True)
    common = [f"--run={folders['Latte']}", f"--cache_dir={cache}", "--k=4", "--exclude_seen=true"]
    assert main(["recommend", *common, f"--history={','.join(histories[0])}"]) == 0
    (line,) = [json.loads(text) for text in capsys.readouterr().out.splitlines() if text.startswith("{")]
    assert line["items"] == [item for item, _ in expected[0]]
    requests = tmp_path / "histories.jsonl"
    requests.write_text("".join(json.dumps({"id": f"user{u}", "history": h}) + "\n" for u, h in enumerate(histories)))
    assert (
        main(["recommend", *common, f"--input={requests}", f"--output={tmp_path / 'recs.jsonl'}", "--batch_size=2"])
        == 0
    )
    lines = [json.loads(text) for text in (tmp_path / "recs.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == [f"user{u}" for u in range(5)]
    assert [line["items"] for line in lines] == [[item for item, _ in ranked] for ranked in expected]
    requests.write_text('{"history": ["x"]}\n{"user": 3}\n')
    assert main(["recommend", *common, f"--input={requests}"]) == 2
    assert "histories.jsonl:2: expected" in capsys.readouterr().err
    assert main(["recommend", *common]) == 2
    assert "one of --history" in capsys.readouterr().err


def test_recommend_command_restricts_as_the_api_does(runs, capsys):
    """``--allow`` / ``--deny`` / ``--category`` are the API's restrictions; ids are read as written."""
    import json

    from genrec.cli import main

    folders, cache = runs
    run = genrec.load_run(folders["PSID"], cache_dir=str(cache))
    ids = run.interactions.item_ids
    history = [ids[i] for i in run.split.test.histories[0]]
    category = sorted(set().union(*run.item_categories))[0]
    cases = {
        f"--allow={','.join(ids[:30])}": dict(allow=ids[:30]),
        f"--deny={','.join(ids[:30])}": dict(deny=ids[:30]),
        f"--category={category}": dict(category=category),
    }
    common = [f"--run={folders['PSID']}", f"--cache_dir={cache}", "--k=5", f"--history={','.join(history)}"]
    for flag, restriction in cases.items():
        assert main(["recommend", *common, flag]) == 0
        (line,) = [json.loads(text) for text in capsys.readouterr().out.splitlines() if text.startswith("{")]
        assert line["items"] == [item for item, _ in run.recommend([history], k=5, **restriction)[0]]
    assert main(["recommend", *common, "--category=no such shelf"]) == 2
    assert "no such shelf" in capsys.readouterr().err
    assert main(["recommend", *common, "--allow=007,1.50,yes"]) == 2  # not 7, 1.5 and True
    assert "'007', '1.50', 'yes'" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["PSID", "Latte", "SASRec"])
def test_removed_items_and_filters_restrict_every_list(runs, model):
    folders, cache = runs
    run = genrec.load_run(folders[model], cache_dir=str(cache))
    raw = [[run.interactions.item_ids[i] for i in run.split.test.histories[u]] for u in range(10)]
    before = run.recommend(raw, k=5)
    gone = sorted({item for ranked in before for item, _ in ranked[:2]})
    run.remove(gone)
    after = run.recommend(raw, k=5)
    assert not {item for ranked in after for item, _ in ranked} & set(gone)
    run.restore(gone)
    assert run.recommend(raw, k=5) == before
    category = sorted(set().union(*run.item_categories))[0]
    for ranked in run.recommend(raw, k=5, category=category):
        assert ranked and all(category in run.item_categories[run.item_index[item]] for item, _ in ranked)
    allow = run.interactions.item_ids[:7]
    for ranked in run.recommend(raw, k=5, allow=allow, deny=allow[:2]):
        assert ranked and {item for item, _ in ranked} <= set(allow[2:])


def test_restrictions_that_match_nothing_are_errors_not_empty_lists(runs):
    folders, cache = runs
    run = genrec.load_run(folders["PSID"], cache_dir=str(cache))
    raw = [[run.interactions.item_ids[i] for i in run.split.test.histories[0]]]
    category = sorted(set().union(*run.item_categories))[0]
    near = re.escape(f"no item of Synthetic is in category '{category}x'; nearest: '{category}'")
    with pytest.raises(GenrecError, match=near):
        run.recommend(raw, category=category + "x")
    with pytest.raises(GenrecError, match=r"in category 'zzzzzzzz' \(\d+ categories\)"):
        run.recommend(raw, category="zzzzzzzz")
    allow = run.interactions.item_ids[:3]
    with pytest.raises(GenrecError, match="allow \\+ deny together with the removed items exclude every item"):
        run.recommend(raw, allow=allow, deny=allow)
    run.remove(run.interactions.item_ids)
    with pytest.raises(GenrecError, match="every item is removed"):
        run.recommend(raw)


def test_a_filtered_generative_list_is_the_exhaustive_ranking_of_the_allowed_items(runs):
    folders, cache = runs
    run = genrec.load_run(folders["PSID"], cache_dir=str(cache))
    history = run.split.test.histories[3]
    allow = run.interactions.item_ids[10:40]
    (ranked,) = run.recommend([[run.interactions.item_ids[i] for i in history]], k=30, allow=allow, num_beams=30)
    exact = run.model.path_log_probs([history])[0, 0].numpy()
    allowed = np.array([run.item_index[item] for item in allow])
    order = allowed[np.argsort(-exact[allowed], kind="stable")]
    assert [run.item_index[item] for item, _ in ranked] == order.tolist()
    np.testing.assert_allclose([score for _, score in ranked], exact[order], rtol=1e-4, atol=1e-4)


def test_recommend_files_name_their_lines_honour_a_lines_k_and_never_overwrite_the_input(runs, tmp_path, capsys):
    import json

    from genrec.cli import main

    folders, cache = runs
    run = genrec.load_run(folders["PSID"], cache_dir=str(cache))
    histories = [[run.interactions.item_ids[i] for i in run.split.test.histories[u]] for u in range(3)]
    common = [f"--run={folders['PSID']}", f"--cache_dir={cache}", "--k=4"]
    requests = tmp_path / "in.jsonl"
    requests.write_text("".join(json.dumps({"history": h, "k": k}) + "\n" for h, k in zip(histories, (2, None, 6))))
    assert main(["recommend", *common, f"--input={requests}", f"--output={tmp_path / 'out.jsonl'}"]) == 0
    lines = [json.loads(text) for text in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [len(line["items"]) for line in lines] == [2, 4, 6]
    assert lines[2]["items"] == [item for item, _ in run.recommend([histories[2]], k=6)[0]]
    before = requests.read_bytes()
    assert main(["recommend", *common, f"--input={requests}", f"--output={requests}"]) == 2
    assert "would overwrite the histories" in capsys.readouterr().err and requests.read_bytes() == before
    for content, message in [
        (b'{"history": ["x"]}\n{"history": ["\xff"]}\n', "in.jsonl:2: not UTF-8"),
        (json.dumps({"history": histories[0], "exclude_seen": True}).encode() + b"\n", "in.jsonl:1: unknown key"),
        (json.dumps({"history": histories[0], "k": 0}).encode() + b"\n", "in.jsonl:1: k must be an integer >= 1"),
        (b"\n" + json.dumps({"history": ["no-such-item"]}).encode() + b"\n", "in.jsonl:2: item id(s) not in"),
    ]:
        requests.write_bytes(content)
        assert main(["recommend", *common, f"--input={requests}"]) == 2
        assert message in capsys.readouterr().err


def test_python_histories_must_be_lists_of_lists(runs):
    folders, cache = runs
    run = genrec.load_run(folders["SASRec"], cache_dir=str(cache))
    item = run.interactions.item_ids[0]
    with pytest.raises(GenrecError, match="a string would be read one character per item"):
        run.recommend([item])
    with pytest.raises(GenrecError, match="no histories to recommend for"):
        run.recommend([])
    with pytest.raises(ConfigError, match="k must be an integer >= 1"):
        run.recommend([[item]], k=2.5)
