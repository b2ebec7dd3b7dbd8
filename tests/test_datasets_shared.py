"""Every dataset in ../shared/data loads and reproduces the statistics table of its README exactly."""

import re

import pytest
from conftest import SHARED_DATA

from genrec.cli import main
from genrec.pipeline import load_interactions


def readme_table():
    """(dataset, category, users, items, interactions) from the table in shared/data/README.md."""
    readme = SHARED_DATA / "README.md"
    if not readme.exists():
        return []
    rows = []
    for line in readme.read_text().splitlines():
        match = re.match(r"\|\s*`([^`/]+)/([^`]+)`\s*\|\s*([\d,]+)\s*\|\s*([\d,]+)\s*\|\s*([\d,]+)\s*\|", line)
        if match:
            dataset, category, *numbers = match.groups()
            rows.append((dataset, category, *(int(n.replace(",", "")) for n in numbers)))
    return rows


TABLE = readme_table()


def test_readme_table_lists_every_shared_dataset(shared_data):
    folders = {(d.parent.name, d.name) for d in shared_data.glob("*/*") if d.is_dir()}
    assert folders == {(row[0], row[1]) for row in TABLE}


@pytest.mark.parametrize("dataset,category,users,items,interactions", TABLE, ids=[f"{r[0]}/{r[1]}" for r in TABLE])
def test_stats_reproduce_readme(shared_data, make_config, dataset, category, users, items, interactions):
    data = load_interactions(make_config(dataset=dataset, category=category, data_dir=str(shared_data)))
    stats = data.stats()
    assert (stats["users"], stats["items"], stats["interactions"]) == (users, items, interactions)
    assert stats["min_length"] >= 5  # all of them are 5-core
    assert data.name == f"{dataset}/{category}"


def test_text_availability_matches_readme(shared_data, make_config):
    has_text = {}
    for dataset, category, *_ in TABLE:
        data = load_interactions(make_config(dataset=dataset, category=category, data_dir=str(shared_data)))
        has_text[f"{dataset}/{category}"] = data.has_text
    assert not has_text["AmazonReviews2023/Industrial_and_Scientific"]
    assert not has_text["AmazonReviews2018/Instruments"]
    assert all(
        v
        for k, v in has_text.items()
        if k not in ("AmazonReviews2023/Industrial_and_Scientific", "AmazonReviews2018/Instruments")
    )


def test_movielens_is_ordered_by_timestamp(shared_data, make_config):
    data = load_interactions(make_config(dataset="MovieLens", category="ml-100k", data_dir=str(shared_data)))
    times = {}
    for line in (shared_data / "MovieLens/ml-100k/ml-100k.inter").read_text().splitlines()[1:]:
        user, item, _, ts = line.split("\t")
        times[(user, item)] = float(ts)
    for user, seq in zip(data.user_ids[:50], data.sequences[:50]):
        stamps = [times[(user, data.item_ids[i])] for i in seq]
        assert stamps == sorted(stamps)


def test_stats_command_prints_table(shared_data, capsys):
    assert (
        main(["data", "stats", "--dataset=AmazonReviews2018", "--category=Scientific", f"--data_dir={shared_data}"])
        == 0
    )
    out = capsys.readouterr().out
    assert (
        "users: 8,317" in out and "items: 4,344" in out and "interactions: 58,492" in out and "avg_length: 7.03" in out
    )
