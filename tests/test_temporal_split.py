"""The global temporal split: what it holds by its definition, its settings, and a whole run on it."""

import json

import numpy as np
import pytest
from conftest import TINY_BACKBONE, TINY_SYNTHETIC

from genrec.cli import main
from genrec.data import temporal_split
from genrec.datasets.tables import write_table
from genrec.errors import ConfigError
from genrec.pipeline import load_interactions, load_split
from genrec.schema import seconds_of


def test_split_by_its_definition():
    #            items           times
    sequences = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10], [11, 12]]
    times = [[1, 2, 5, 6, 9], [1, 10], [6, 7, 8], [8, 9]]
    split = temporal_split([np.array(s) for s in sequences], [np.array(t, float) for t in times], 5, 8, 2)
    # training: targets before t1 = 5, each with the items before it (at most 2)
    assert [s.tolist() for s in split.train_sequences] == [[1, 2], [6], [], []]
    assert split.train.users.tolist() == [0] and split.train.targets.tolist() == [2]
    # validation: each user's first interaction in [5, 8), if something came before it (user 2's
    # first is in the period: nothing to go on)
    assert split.valid.users.tolist() == [0] and split.valid.targets.tolist() == [3]
    assert [h.tolist() for h in split.valid.histories] == [[1, 2]]
    # test: first at or after 8, the validation period carried into the history (truncated to 2);
    # user 3 starts at the test time and is not tested
    assert split.test.users.tolist() == [0, 1, 2] and split.test.targets.tolist() == [5, 7, 10]
    assert [h.tolist() for h in split.test.histories] == [[3, 4], [6], [8, 9]]
    assert [s.tolist() for s in split.test.seen] == [[1, 2, 3, 4], [6], [8, 9]]
    with pytest.raises(ValueError, match="must come before"):
        temporal_split([np.array([1])], [np.array([1.0])], 8, 5, 2)


def test_moments_from_numbers_iso_strings_and_yaml_dates(make_config):
    assert seconds_of(1704067200) == seconds_of("1704067200") == seconds_of("2024-01-01") == 1704067200.0
    assert seconds_of("2024-01-01T01:00:00+01:00") == 1704067200.0  # a zone is honoured; none means UTC
    config = make_config(["--split=temporal", "--split_valid_time=2024-01-01", "--split_test_time=2024-01-02T00:00:00"])
    assert (config.split_valid_time, config.split_test_time) == (1704067200.0, 1704153600.0)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"split": "temporal"}, "needs --split_valid_time and --split_test_time"),
        ({"split": "temporal", "split_valid_time": 5, "split_test_time": 5}, "must come before split_test_time"),
        ({"split": "temporal", "split_valid_time": 1, "split_test_time": 2, "cold_items": 0.1}, "split=leave_one_out"),
        ({"split_valid_time": "last tuesday"}, "config key 'split_valid_time'"),
    ],
)
def test_bad_settings_fail_before_any_work(make_config, settings, message):
    with pytest.raises(ConfigError, match=message):
        make_config(**settings)


def test_a_dataset_without_times_cannot_be_split_in_time(make_config):
    config = make_config(**TINY_SYNTHETIC, split="temporal", split_valid_time=1, split_test_time=2)
    with pytest.raises(ConfigError, match="Synthetic has none"):
        load_split(config)


@pytest.fixture
def timed_events(tmp_path, make_config):
    """The tiny Synthetic shoppers with times: user ``u`` starts on day ``u % 20`` and buys one item
    a day, so a cut on day 14 and day 18 leaves most users trained, validated and tested."""
    data = load_interactions(make_config(**TINY_SYNTHETIC))
    day = 86_400
    events = {"user_id": [], "item_id": [], "timestamp": []}
    for user, sequence in enumerate(data.sequences):
        for k, item in enumerate(sequence):
            events["user_id"].append(data.user_ids[user])
            events["item_id"].append(data.item_ids[item])
            events["timestamp"].append(1_700_000_000 + (user % 20 + k) * day)
    write_table(tmp_path / "events.csv", "csv", events)
    items = {"item_id": data.item_ids, "title": [t["title"] for t in data.item_text]}
    write_table(tmp_path / "items.csv", "csv", items)
    return [
        "--dataset=Interactions",
        f"--interactions={tmp_path / 'events.csv'}",
        f"--items={tmp_path / 'items.csv'}",
        "--split=temporal",
        f"--split_valid_time={1_700_000_000 + 14 * day}",
        f"--split_test_time={1_700_000_000 + 18 * day}",
        "--vq_codebook_size=8",
        f"--cache_dir={tmp_path / 'cache'}",
        f"--output_dir={tmp_path / 'runs'}",
    ]


def test_train_evaluate_compare_and_analyze_on_a_temporal_split(timed_events, tmp_path):
    from genrec.run import load_run

    tiny = [f"--{k}={v}" for k, v in TINY_BACKBONE.items()]
    assert main(["compare", "--models=PSID,SASRec", "--seeds=1", "--epochs=2", *timed_events, *tiny]) == 0
    table = json.loads(next((tmp_path / "runs/compare").rglob("comparison.json")).read_text())
    assert set(table["summary"]) == {"PSID", "SASRec"}
    psid = next(p.parent for p in (tmp_path / "runs/compare").rglob("results.json") if "PSID" in p.parent.name)
    assert json.loads((psid / "results.json").read_text())["test"]["ndcg@10"] >= 0
    run = load_run(psid)
    assert 0 < len(run.split.test) < run.interactions.n_users  # users who start late are not tested
    assert run.split.valid.users.tolist() != run.split.test.users.tolist()
    assert main(["analyze", "beams", str(psid), "--beams=4,8", f"--output={tmp_path / 'beams'}"]) == 0
    history = [run.interactions.item_ids[i] for i in run.split.test.histories[0]]
    assert len(run.recommend([history], k=3)[0]) == 3
