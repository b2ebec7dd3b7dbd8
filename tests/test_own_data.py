"""Your own data (``--dataset=Interactions``): every format reads the same data, the filters do what
their definitions say, and a bad file is one line naming the file, line and column."""

import csv
import gzip
import json
import logging
import random

import numpy as np
import pytest
from conftest import REPO, TINY_BACKBONE

from genrec.cli import main
from genrec.data import leave_one_out
from genrec.data.kcore import k_core
from genrec.datasets.Interactions import export
from genrec.errors import ConfigError, DataError
from genrec.pipeline import load_interactions, load_split
from genrec.semantic_ids import semantic_ids

FIXTURE = REPO / "tests" / "fixtures" / "own_data"


def rows_of(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_formats(folder):
    """The shipped CSV fixture in every other format: TSV, JSON lines, Parquet, RecBole atomic, gzip."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    events, items = rows_of(FIXTURE / "events.csv"), rows_of(FIXTURE / "items.csv")
    for kind, rows in (("events", events), ("items", items)):
        columns = {name: [row[name] for row in rows] for name in rows[0]}
        if kind == "events":
            columns["rating"] = [int(value) for value in columns["rating"]]  # typed, as Parquet users have them
        pq.write_table(pa.table(columns), folder / f"{kind}.parquet")
        with open(folder / f"{kind}.jsonl", "w") as handle:
            handle.writelines(json.dumps({k: v[i] for k, v in columns.items()}) + "\n" for i in range(len(rows)))
        clean = [{k: v.replace("\n", " ").replace("\t", " ") for k, v in row.items()} for row in rows]
        with open(folder / f"{kind}.tsv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
            writer.writeheader()
            writer.writerows(clean)
        header = "\t".join(f"{name}:{'float' if name in ('rating',) else 'token'}" for name in rows[0])
        body = "".join("\t".join(row.values()) + "\n" for row in clean)
        (folder / f"{kind}.{'inter' if kind == 'events' else 'item'}").write_text(header + "\n" + body)
    with gzip.open(folder / "events.csv.gz", "wt") as handle:
        handle.write((FIXTURE / "events.csv").read_text())


def own(make_config, events, items=None, **settings):
    extra = {"items": str(items)} if items is not None else {}
    return load_interactions(make_config(dataset="Interactions", interactions=str(events), **extra, **settings))


def sids_of(config):
    return semantic_ids(config, *load_split(config))


def same_data(a, b):
    assert (a.user_ids, a.item_ids, a.item_text, a.dropped) == (b.user_ids, b.item_ids, b.item_text, b.dropped)
    assert all(np.array_equal(x, y) for x, y in zip(a.sequences, b.sequences))


def test_every_format_reads_the_same_interactions_split_and_semantic_ids(make_config, tmp_path):
    write_formats(tmp_path)
    reference = own(make_config, FIXTURE / "events.csv", FIXTURE / "items.csv")
    description = {"description": reference.item_text[reference.item_ids.index("sku-07")]["description"]}
    assert "\n" in description["description"]  # a quoted CSV field over two lines, read whole
    settings = dict(vq_codebook_size=4, vq_n_codebooks=2, cache_dir=str(tmp_path / "cache-csv"))
    sids = sids_of(
        make_config(
            dataset="Interactions",
            interactions=str(FIXTURE / "events.csv"),
            items=str(FIXTURE / "items.csv"),
            **settings,
        )
    )
    reference_split = leave_one_out(reference.sequences, 20)
    for events, items in [("events.parquet", "items.parquet"), ("events.csv.gz", FIXTURE / "items.csv")]:
        data = own(make_config, tmp_path / events, tmp_path / items)
        same_data(data, reference)
        split = leave_one_out(data.sequences, 20)
        assert np.array_equal(split.test.targets, reference_split.test.targets)
        assert all(np.array_equal(x, y) for x, y in zip(split.train.histories, reference_split.train.histories))
        other = make_config(
            dataset="Interactions",
            interactions=str(tmp_path / events),
            items=str(tmp_path / items),
            **{**settings, "cache_dir": str(tmp_path / f"cache-{events}")},
        )
        assert np.array_equal(sids_of(other).codes, sids.codes)  # embedded and quantized afresh
    for events, items in [("events.jsonl", "items.jsonl"), ("events.tsv", "items.tsv"), ("events.inter", "items.item")]:
        data = own(make_config, tmp_path / events, tmp_path / items)
        assert (data.user_ids, data.item_ids, data.dropped) == (
            reference.user_ids,
            reference.item_ids,
            reference.dropped,
        )
        assert all(np.array_equal(x, y) for x, y in zip(data.sequences, reference.sequences))
        assert [t["title"] for t in data.item_text] == [t["title"] for t in reference.item_text]


def test_sequences_follow_time_with_ties_in_file_order(make_config):
    data = own(make_config, FIXTURE / "events.csv", duplicates="keep")
    rows = rows_of(FIXTURE / "events.csv")
    for user, sequence in zip(data.user_ids, data.sequences):
        mine = sorted((r["timestamp"], n, r["item_id"]) for n, r in enumerate(rows) if r["user_id"] == user)
        assert [data.item_ids[i] for i in sequence] == [item for _, _, item in mine]
    assert not data.has_text  # no items file: no text


def test_ratings_duplicates_and_short_users_are_counted(make_config, caplog):
    rows = rows_of(FIXTURE / "events.csv")
    data = own(make_config, FIXTURE / "events.csv", rating_column="rating", min_rating=4)
    expected, duplicates = {}, 0  # the rules, written out: rated >= 4, time order, no repeats in place
    for user in dict.fromkeys(r["user_id"] for r in rows):
        events = sorted(
            (r["timestamp"], n, r["item_id"])
            for n, r in enumerate(rows)
            if r["user_id"] == user and float(r["rating"]) >= 4
        )
        items, seen = [], set()
        for stamp, _, item in events:
            if (items and items[-1] == item) or (item, stamp) in seen:
                duplicates += 1
                continue
            items.append(item)
            seen.add((item, stamp))
        expected[user] = items
    kept = {user: items for user, items in expected.items() if len(items) >= 3}
    assert {u: [data.item_ids[i] for i in s] for u, s in zip(data.user_ids, data.sequences)} == kept
    assert data.dropped == {
        "ratings_below_min_rating": sum(float(r["rating"]) < 4 for r in rows),
        "duplicate_interactions": duplicates,
        "users_with_fewer_than_3_items": len(expected) - len(kept),
    }
    assert "ratings below min rating" in caplog.text and "users with fewer than 3 items" in caplog.text


def brute_force_core(sequences, min_user, min_item):
    """The definition, slowly: remove one violating interaction group at a time, in random order."""
    events = [(u, pos, item) for u, (_, items) in enumerate(sequences) for pos, item in enumerate(items)]
    rng = random.Random(0)
    while True:
        users = {u: sum(1 for e in events if e[0] == u) for u, _, _ in events}
        items = {i: sum(1 for e in events if e[2] == i) for _, _, i in events}
        bad = [("u", u) for u, c in users.items() if c < min_user] + [
            ("i", i) for i, c in items.items() if c < min_item
        ]
        if not bad:
            break
        kind, key = rng.choice(bad)
        events = [e for e in events if (e[0] if kind == "u" else e[2]) != key]
    return [(sequences[u][0], [item for uu, _, item in events if uu == u]) for u in sorted({e[0] for e in events})]


def test_k_core_is_the_largest_core_by_its_definition():
    rng = random.Random(7)
    for trial in range(30):
        sequences = [(f"u{u}", [f"i{rng.randrange(12)}" for _ in range(rng.randint(1, 9))]) for u in range(15)]
        min_user, min_item = rng.randint(1, 5), rng.randint(1, 5)
        core, report = k_core([items for _, items in sequences], min_user, min_item)
        kept = [(sequences[u][0], [sequences[u][1][p] for p in positions]) for u, positions in core]
        assert kept == brute_force_core(sequences, min_user, min_item), trial
        removed = sum(len(s) for _, s in sequences) - sum(len(s) for _, s in kept)
        assert report.interactions_removed == removed and report.users_removed == len(sequences) - len(kept)
    assert k_core([["x", "y", "x"]], 1, 1)[1].rounds == 0


def test_k_core_setting_logs_and_counts(make_config, caplog):
    caplog.set_level(logging.INFO)
    data = own(make_config, FIXTURE / "events.csv", min_user_interactions=4, min_item_interactions=2)
    counts = {}
    for sequence in data.sequences:
        for item in sequence:
            counts[item] = counts.get(item, 0) + 1
    assert min(len(s) for s in data.sequences) >= 4 and min(counts.values()) >= 2
    assert data.dropped["interactions_outside_the_k_core"] > 0 and "k-core (users >= 4, items >= 2" in caplog.text


def test_categories_come_from_a_mapped_column(make_config, tmp_path):
    rows = rows_of(FIXTURE / "items.csv")
    with open(tmp_path / "items.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "name", "genre"])
        writer.writerows([r["item_id"], r["title"], r["categories"]] for r in rows)
    data = own(make_config, FIXTURE / "events.csv", tmp_path / "items.csv", text_fields="title=name,categories=genre")
    assert data.item_text[0]["title"] and data.item_text[0]["categories"].startswith(("Science, ", "Office, "))
    assert set(data.item_text[0]) == {"title", "categories"}


@pytest.mark.parametrize(
    "content, settings, message",
    [
        (
            "user,item_id,timestamp\nu1,a,1\n",
            {},
            "events.csv:1: no column 'user_id' (columns: user, item_id, timestamp)",
        ),
        ("user_id,item_id,timestamp\nu1,a,1\nu1,b,yesterday\n", {}, "events.csv:3: column 'timestamp': 'yesterday'"),
        ("user_id,item_id,timestamp\nu1,,1\n", {}, "events.csv:2: column 'item_id': empty id"),
        ("user_id,item_id,timestamp\nu1,a,1,9\n", {}, "events.csv:2: expected 3 fields, found 4"),
        ("user_id,item_id,timestamp\n", {}, "no interactions (only a header)"),
        (
            "user_id,item_id,stars\nu1,a,x\n",
            {"rating_column": "stars", "min_rating": 3, "time_column": None},
            "events.csv:2: column 'stars': 'x' is not a number",
        ),
        ("user_id,item_id,timestamp\nu1,a,nan\n", {}, "'nan' is not a finite number"),
    ],
)
def test_bad_interaction_files_name_file_line_and_column(make_config, tmp_path, content, settings, message):
    (tmp_path / "events.csv").write_text(content)
    with pytest.raises(DataError) as failure:
        own(make_config, tmp_path / "events.csv", **settings)
    assert message in str(failure.value)


def test_bad_item_files_and_parquet_rows(make_config, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "items.csv").write_text("item_id,title\nsku-01,A\nsku-01,B\n")
    with pytest.raises(
        DataError, match=r"items.csv:3: column 'item_id': item sku-01 is listed twice \(first on line 2\)"
    ):
        own(make_config, FIXTURE / "events.csv", tmp_path / "items.csv")
    with pytest.raises(DataError, match="no column 'genre'.*--text_fields"):
        own(make_config, FIXTURE / "events.csv", FIXTURE / "items.csv", text_fields="categories=genre")
    pq.write_table(
        pa.table({"user_id": ["u1", "u1"], "item_id": ["a", "b"], "timestamp": [1.0, float("inf")]}),
        tmp_path / "events.parquet",
    )
    with pytest.raises(DataError, match=r"events.parquet: row 2: column 'timestamp': inf is not a finite number"):
        own(make_config, tmp_path / "events.parquet")
    (tmp_path / "events.txt").write_text("x")
    with pytest.raises(DataError, match="cannot tell the format.*--file_format"):
        own(make_config, tmp_path / "events.txt")
    with pytest.raises(DataError, match="interactions file \\(--interactions\\) not found"):
        own(make_config, tmp_path / "missing.csv")


def test_settings_fail_fast_naming_the_key(make_config):
    for settings, message in [
        ({}, "dataset Interactions reads --interactions=PATH"),
        ({"interactions": "e.csv", "min_rating": 3}, "set --rating_column too"),
        (
            {"interactions": "e.csv", "items": "i.csv", "text_fields": "title,colour"},
            "text field(s) colour are none of",
        ),
        ({"interactions": "e.csv", "text_fields": "title"}, "set --items=PATH too"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            make_config(dataset="Interactions", **settings)


def test_shared_scientific_exported_to_csv_is_the_lc_rec_data(shared_data, make_config, tmp_path, capsys):
    lc_rec = dict(dataset="AmazonReviews2018", category="Scientific", data_dir=str(shared_data))
    reference = load_interactions(make_config(**lc_rec))
    events, items = export(reference, tmp_path / "scientific")
    mine = own(make_config, events, items, time_column=None)
    same_data(mine, reference)
    a, b = leave_one_out(reference.sequences, 20), leave_one_out(mine.sequences, 20)
    for part in ("train", "valid", "test"):
        assert np.array_equal(getattr(a, part).targets, getattr(b, part).targets)
    assert main(["data", "stats", *(f"--{k}={v}" for k, v in lc_rec.items())]) == 0
    lc_rec_stats = capsys.readouterr().out.splitlines()[1:]
    own_flags = ["--dataset=Interactions", f"--interactions={events}", f"--items={items}", "--time_column=null"]
    assert main(["data", "stats", *own_flags]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == lc_rec_stats  # every figure but the dataset's name


def test_export_command_and_a_users_csv_trains_and_recommends(tmp_path, capsys):
    from conftest import TINY_SYNTHETIC

    from genrec.run import load_run

    tiny = [f"--{k}={v}" for k, v in TINY_SYNTHETIC.items() if k.startswith("synthetic_")]
    assert main(["data", "export", f"--to={tmp_path / 'mine'}", "--format=parquet", *tiny]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[:2] == [str(tmp_path / "mine/events.parquet"), str(tmp_path / "mine/items.parquet")]
    assert "read them with --time_column=null" in printed[2]
    flags = [
        "--dataset=Interactions",
        f"--interactions={tmp_path / 'mine/events.parquet'}",
        f"--items={tmp_path / 'mine/items.parquet'}",
        "--time_column=null",
        "--model=PSID",
        "--epochs=2",
        "--vq_codebook_size=8",
        f"--cache_dir={tmp_path / 'cache'}",
        f"--output_dir={tmp_path / 'runs'}",
        "--run_name=mine",
        *(f"--{k}={v}" for k, v in TINY_BACKBONE.items()),
    ]
    assert main(["train", *flags]) == 0
    run = load_run(tmp_path / "runs/mine")
    history = [run.interactions.item_ids[i] for i in run.interactions.sequences[0][:3]]
    recommended = run.recommend([history], k=5)[0]
    assert len(recommended) == 5 and all(item in run.interactions.item_ids for item, _ in recommended)
    assert run.interactions.name == "Interactions/events"


def test_recbole_atomic_files_read_as_the_movielens_loader_reads_them(shared_data, make_config):
    folder = shared_data / "MovieLens" / "ml-100k"
    reference = load_interactions(make_config(dataset="MovieLens", category="ml-100k", data_dir=str(shared_data)))
    mine = own(
        make_config, folder / "ml-100k.inter", folder / "ml-100k.item", text_fields="title=movie_title,categories=class"
    )
    assert (mine.user_ids, mine.item_ids, mine.dropped) == (reference.user_ids, reference.item_ids, reference.dropped)
    assert all(np.array_equal(x, y) for x, y in zip(mine.sequences, reference.sequences))
    assert [t["categories"] for t in mine.item_text] == [t["categories"] for t in reference.item_text]
    assert all(r["title"].startswith(m["title"]) for m, r in zip(mine.item_text, reference.item_text))
