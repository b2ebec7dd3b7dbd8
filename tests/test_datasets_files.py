"""Loaders on small files written by the tests: official layouts, downloads, and bad input."""

import gzip
import json

import pytest

from genrec.datasets.AmazonReviews2023 import download_files
from genrec.errors import ConfigError, DataError
from genrec.pipeline import load_interactions

HEADER = "user_id,parent_asin,rating,timestamp,history\n"
SEQUENCES = {"u1": ["A", "B", "C", "D", "E"], "u2": ["B", "C", "F"], "u3": ["E", "A", "B", "C"]}


def write_gz(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as handle:
        handle.write(text)


def split_rows(split):
    rows = []
    for user, seq in SEQUENCES.items():
        if split == "test":
            rows.append((user, seq[-1], seq[:-1]))
        elif split == "valid":
            rows.append((user, seq[-2], seq[:-2]))
        else:
            rows += [(user, seq[t], seq[:t]) for t in range(len(seq) - 2)]
    return HEADER + "".join(f"{u},{i},5.0,1600000000,{' '.join(h)}\n" for u, i, h in rows)


META = [
    {
        "parent_asin": "A",
        "title": "Alpha microscope",
        "store": "Optix",
        "categories": ["Science", "Optics"],
        "description": ["A fine", "microscope"],
        "features": ["1000x"],
        "price": 10,
    },
    {"parent_asin": "B", "title": "Beta lens", "features": [], "description": []},
]


def official_tree(root, category="Video_Games", with_meta=True):
    bench = root / "AmazonReviews2023" / "benchmark" / "5core" / "last_out_w_his"
    for split in ("train", "valid", "test"):
        write_gz(bench / f"{category}.{split}.csv.gz", split_rows(split))
    if with_meta:
        write_gz(
            root / "AmazonReviews2023" / "raw" / "meta_categories" / f"meta_{category}.jsonl.gz",
            "".join(json.dumps(m) + "\n" for m in META),
        )


def amazon2023(make_config, root, **kw):
    return make_config(dataset="AmazonReviews2023", category="Video_Games", data_dir=str(root), download=False, **kw)


def test_amazon2023_official_layout_with_meta(tmp_path, make_config):
    official_tree(tmp_path / "data")
    data = load_interactions(amazon2023(make_config, tmp_path / "data"))
    assert {u: [data.item_ids[i] for i in s] for u, s in zip(data.user_ids, data.sequences)} == SEQUENCES
    text = dict(zip(data.item_ids, data.item_text))
    assert text["A"] == {
        "title": "Alpha microscope",
        "brand": "Optix",
        "categories": "Science, Optics",
        "description": "A fine microscope",
        "features": "1000x",
    }
    assert text["B"] == {"title": "Beta lens"} and text["C"] == {}


def test_amazon2023_subset_without_train_or_meta(tmp_path, make_config):
    folder = tmp_path / "AmazonReviews2023" / "Video_Games"
    write_gz(folder / "Video_Games.test.csv.gz", split_rows("test"))
    write_gz(folder / "Video_Games.valid.csv.gz", split_rows("valid"))
    data = load_interactions(amazon2023(make_config, tmp_path))
    assert data.n_users == 3 and data.n_interactions == 12 and not data.has_text


def test_amazon2023_download_from_official_host_layout(tmp_path, make_config):
    host = tmp_path / "host"
    official_tree(host)  # same relative paths as the official server
    config = make_config(
        dataset="AmazonReviews2023",
        category="Video_Games",
        data_dir=str(tmp_path / "data"),
        download_base_url=(host / "AmazonReviews2023").as_uri(),
    )
    data = load_interactions(config)  # files missing -> downloaded, then loaded
    assert data.n_users == 3 and data.has_text
    assert (tmp_path / "data/AmazonReviews2023/raw/meta_categories/meta_Video_Games.jsonl.gz").exists()
    assert download_files(config) == []  # nothing left to fetch


def test_amazon2023_failed_download_is_clear_and_leaves_nothing(tmp_path, make_config):
    config = make_config(
        dataset="AmazonReviews2023",
        category="Video_Games",
        data_dir=str(tmp_path / "data"),
        download_base_url=(tmp_path / "nowhere").as_uri(),
    )
    with pytest.raises(DataError, match="could not download .*Video_Games.train.csv.gz.*place it at"):
        load_interactions(config)
    assert not any(p.is_file() for p in (tmp_path / "data").rglob("*"))


def test_amazon2023_missing_files_without_download(tmp_path, make_config):
    with pytest.raises(ConfigError, match="download=false"):
        load_interactions(amazon2023(make_config, tmp_path))


def test_amazon2023_valid_inconsistent_with_test_names_line(tmp_path, make_config):
    official_tree(tmp_path)
    bench = tmp_path / "AmazonReviews2023/benchmark/5core/last_out_w_his"
    write_gz(bench / "Video_Games.valid.csv.gz", split_rows("valid").replace("u2,C,", "u2,F,"))
    with pytest.raises(DataError, match=r"Video_Games.valid.csv.gz:3: user u2: validation row disagrees"):
        load_interactions(amazon2023(make_config, tmp_path))


def test_amazon2023_malformed_row_names_line(tmp_path, make_config):
    official_tree(tmp_path)
    bench = tmp_path / "AmazonReviews2023/benchmark/5core/last_out_w_his"
    write_gz(bench / "Video_Games.test.csv.gz", split_rows("test") + "u9,Z,5.0\n")
    with pytest.raises(DataError, match=r"Video_Games.test.csv.gz:5: expected 5 fields, found 3"):
        load_interactions(amazon2023(make_config, tmp_path))


def test_amazon2023_bad_meta_line(tmp_path, make_config):
    official_tree(tmp_path)
    write_gz(
        tmp_path / "AmazonReviews2023/raw/meta_categories/meta_Video_Games.jsonl.gz", '{"parent_asin": "A"}\n{oops\n'
    )
    with pytest.raises(DataError, match=r"meta_Video_Games.jsonl.gz:2: invalid JSON"):
        load_interactions(amazon2023(make_config, tmp_path))


def lcrec(tmp_path, inter, items=None, item2id=None):
    folder = tmp_path / "AmazonReviews2018" / "Toy"
    folder.mkdir(parents=True)
    (folder / "Toy.inter.json").write_text(inter if isinstance(inter, str) else json.dumps(inter))
    if items is not None:
        (folder / "Toy.item.json").write_text(json.dumps(items))
    if item2id is not None:
        (folder / "Toy.item2id").write_text(item2id)


def test_lcrec_json(tmp_path, make_config):
    lcrec(
        tmp_path,
        {"0": [0, 1, 2, 3], "1": [2, 1, 0], "2": [4, 5]},
        items={"0": {"title": "Zero", "brand": "Z", "categories": "a,b", "description": ""}},
        item2id="X0\t0\nX1\t1\nX2\t2\nX3\t3\nX4\t4\nX5\t5\n",
    )
    data = load_interactions(make_config(dataset="AmazonReviews2018", category="Toy", data_dir=str(tmp_path)))
    assert data.n_users == 2 and data.dropped == {"users_with_fewer_than_3_items": 1}
    assert data.item_text[0] == {"title": "Zero", "brand": "Z", "categories": "a,b"}


def test_lcrec_unknown_item(tmp_path, make_config):
    lcrec(tmp_path, {"0": [0, 1, 7]}, item2id="X0\t0\nX1\t1\n")
    with pytest.raises(DataError, match="item 7 is not in Toy.item2id"):
        load_interactions(make_config(dataset="AmazonReviews2018", category="Toy", data_dir=str(tmp_path)))


def test_lcrec_broken_json_names_line(tmp_path, make_config):
    lcrec(tmp_path, '{\n"0": [0, 1, 2],\n"1": [1, 2,, 3]\n}')
    with pytest.raises(DataError, match=r"Toy.inter.json:3: invalid JSON"):
        load_interactions(make_config(dataset="AmazonReviews2018", category="Toy", data_dir=str(tmp_path)))


def test_missing_files_name_the_path(tmp_path, make_config):
    with pytest.raises(DataError, match=r"AmazonReviews2014/Beauty/user_sequence.txt"):
        load_interactions(make_config(dataset="AmazonReviews2014", category="Beauty", data_dir=str(tmp_path)))


def test_p5_format(tmp_path, make_config, caplog):
    folder = tmp_path / "AmazonReviews2014" / "Mini"
    folder.mkdir(parents=True)
    (folder / "user_sequence.txt").write_text("u1 a b c d\nu2 b c\nu3 c d a\n")
    (folder / "item_generative_indexing_phase_0.txt").write_text("a alpha brand\nb beta\nc gamma words\n")
    data = load_interactions(make_config(dataset="AmazonReviews2014", category="Mini", data_dir=str(tmp_path)))
    assert data.user_ids == ["u1", "u3"] and data.dropped["users_with_fewer_than_3_items"] == 1
    assert data.item_text[data.item_ids.index("a")] == {"title": "alpha brand"}
    assert "1 of 4 items have no text" in caplog.text


def test_p5_duplicate_user(tmp_path, make_config):
    folder = tmp_path / "AmazonReviews2014" / "Mini"
    folder.mkdir(parents=True)
    (folder / "user_sequence.txt").write_text("u1 a b c\nu1 a b c\n")
    with pytest.raises(DataError, match=r"user_sequence.txt:2: user u1 appears twice"):
        load_interactions(make_config(dataset="AmazonReviews2014", category="Mini", data_dir=str(tmp_path)))


def recbole(tmp_path, inter):
    folder = tmp_path / "MovieLens" / "mini"
    folder.mkdir(parents=True)
    (folder / "mini.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + inter)
    (folder / "mini.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n1\tHeat\t1995\tAction Crime\n"
    )


def test_recbole_orders_by_time_stable_on_ties(tmp_path, make_config):
    recbole(tmp_path, "7\t3\t5\t300\n7\t1\t4\t100\n7\t2\t4\t200\n7\t4\t4\t200\n")
    data = load_interactions(make_config(dataset="MovieLens", category="mini", data_dir=str(tmp_path)))
    assert [data.item_ids[i] for i in data.sequences[0]] == ["1", "2", "4", "3"]
    assert data.item_text[0] == {"title": "Heat (1995)", "categories": "Action, Crime"}


def test_recbole_bad_rows_name_line(tmp_path, make_config):
    recbole(tmp_path, "7\t3\t5\t300\n7\t1\t4\n")
    with pytest.raises(DataError, match=r"mini.inter:3: expected 4 tab-separated fields, found 3"):
        load_interactions(make_config(dataset="MovieLens", category="mini", data_dir=str(tmp_path)))


def test_data_dir_from_environment(tmp_path, make_config, monkeypatch):
    recbole(tmp_path, "7\t3\t5\t300\n7\t1\t4\t100\n7\t2\t4\t200\n")
    monkeypatch.setenv("GENREC_DATA_DIR", str(tmp_path))
    assert load_interactions(make_config(dataset="MovieLens", category="mini")).n_users == 1
