"""Bad data files, in every format: duplicate interactions, non-finite timestamps, metadata paths
that exist but are no file, damaged or empty files (issue classes 2, 4 and 10). Each error names
the file, and the line where there is one."""

import gzip
import json
import logging
import os

import pytest

from genrec.errors import DataError
from genrec.pipeline import load_interactions

CLEAN = {"u1": ["A", "B", "C", "D"], "u2": ["B", "C", "E"], "u3": ["E", "A", "B", "C", "A"]}  # u3 buys A again later
INDEX = {item: str(i) for i, item in enumerate("ABCDE")}  # LC-Rec files hold integer item indices


def doubled(sequences):
    """Every interaction recorded twice, as in the probe that gave SASRec Recall@1 = 1.0."""
    return {user: [item for item in items for _ in (0, 1)] for user, items in sequences.items()}


def write(path, text, compress=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode()) if compress else text.encode())
    return path


def p5(root, sequences):
    write(
        root / "AmazonReviews2014/Mini/item_generative_indexing_phase_0.txt",
        "".join(f"{i} item {i}\n" for i in "ABCDE"),
    )
    return write(
        root / "AmazonReviews2014/Mini/user_sequence.txt", "".join(f"{u} {' '.join(s)}\n" for u, s in sequences.items())
    )


def lcrec(root, sequences):
    write(
        root / "AmazonReviews2018/Mini/Mini.item.json", json.dumps({INDEX[i]: {"title": f"item {i}"} for i in "ABCDE"})
    )
    inter = {user[1:]: [int(INDEX[i]) for i in items] for user, items in sequences.items()}
    return write(root / "AmazonReviews2018/Mini/Mini.inter.json", json.dumps(inter))


def recbole(root, sequences, stamps=None):
    rows = [
        f"{u}\t{item}\t5\t{(stamps or {}).get(u, [100 * (t + 1) for t in range(len(s))])[t]}\n"
        for u, s in sequences.items()
        for t, item in enumerate(s)
    ]
    write(
        root / "MovieLens/mini/mini.item",
        "item_id:token\tmovie_title:token_seq\n" + "".join(f"{i}\titem {i}\n" for i in "ABCDE"),
    )
    return write(
        root / "MovieLens/mini/mini.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "".join(rows),
    )


HEADER = "user_id,parent_asin,rating,timestamp,history\n"


def amazon2023(root, sequences, timestamp="1600000000"):
    folder = root / "AmazonReviews2023/Video_Games"
    write(
        folder / "meta_Video_Games.jsonl",
        "".join(json.dumps({"parent_asin": i, "title": f"item {i}"}) + "\n" for i in "ABCDE"),
    )
    for split, cut in (("valid", 2), ("test", 1)):
        rows = "".join(f"{u},{s[-cut]},5.0,{timestamp},{' '.join(s[:-cut])}\n" for u, s in sequences.items())
        path = write(folder / f"Video_Games.{split}.csv.gz", HEADER + rows, compress=True)
    return path


FORMATS = {
    "P5": (p5, dict(dataset="AmazonReviews2014", category="Mini")),
    "LC-Rec": (lcrec, dict(dataset="AmazonReviews2018", category="Mini")),
    "RecBole": (recbole, dict(dataset="MovieLens", category="mini")),
    "Amazon2023": (amazon2023, dict(dataset="AmazonReviews2023", category="Video_Games", download=False)),
}


def load(make_config, root, fmt, **settings):
    return load_interactions(make_config(data_dir=str(root), **FORMATS[fmt][1], **settings))


def raw_sequences(data, fmt):
    back = {v: k for k, v in INDEX.items()} if fmt == "LC-Rec" else {}
    return [[back.get(data.item_ids[i], data.item_ids[i]) for i in seq] for seq in data.sequences]


@pytest.mark.parametrize("fmt", FORMATS)
def test_duplicate_interactions_are_dropped_and_counted(tmp_path, make_config, caplog, fmt):
    FORMATS[fmt][0](tmp_path, doubled(CLEAN))
    with caplog.at_level(logging.WARNING):
        data = load(make_config, tmp_path, fmt)
    assert raw_sequences(data, fmt) == list(CLEAN.values())  # later repeats (u3's second A) stay
    n = sum(len(s) for s in CLEAN.values())
    assert data.dropped["duplicate_interactions"] == n and f"dropped {n} (duplicate interactions)" in caplog.text


@pytest.mark.parametrize("fmt", FORMATS)
def test_duplicates_refused_name_the_file(tmp_path, make_config, fmt):
    path = FORMATS[fmt][0](tmp_path, doubled(CLEAN))
    line = {"P5": ":1:", "LC-Rec": ":", "RecBole": ":3:", "Amazon2023": ":2:"}[fmt]  # LC-Rec: one JSON object
    user, item = ("1", INDEX["A"]) if fmt == "LC-Rec" else ("u1", "A")
    with pytest.raises(DataError, match=f"{path.name}{line} user {user}: duplicate interaction with item {item}"):
        load(make_config, tmp_path, fmt, duplicates="refuse")


@pytest.mark.parametrize("fmt", FORMATS)
def test_duplicates_kept_on_request(tmp_path, make_config, fmt):
    FORMATS[fmt][0](tmp_path, doubled(CLEAN))
    assert raw_sequences(load(make_config, tmp_path, fmt, duplicates="keep"), fmt) == list(doubled(CLEAN).values())


def test_same_item_at_the_same_time_is_a_duplicate_even_apart(tmp_path, make_config):
    recbole(tmp_path, {"u1": ["A", "B", "A", "C"]}, stamps={"u1": [100, 100, 100, 200]})
    data = load(make_config, tmp_path, "RecBole")
    assert raw_sequences(data, "RecBole") == [["A", "B", "C"]]


@pytest.mark.parametrize(
    "fmt, stamp", [("RecBole", "nan"), ("RecBole", "inf"), ("RecBole", "soon"), ("Amazon2023", "nan")]
)
def test_non_finite_timestamps_are_refused_at_their_line(tmp_path, make_config, fmt, stamp):
    if fmt == "RecBole":
        path = recbole(tmp_path, CLEAN, stamps={"u2": [100, stamp, 300]})
        where = f"{path.name}:7: timestamp '{stamp}'"
    else:
        path = amazon2023(tmp_path, CLEAN, timestamp=stamp)
        where = f"{path.name}:2: timestamp '{stamp}'"
    with pytest.raises(DataError, match=where):
        load(make_config, tmp_path, fmt)


METADATA = {
    "P5": "AmazonReviews2014/Mini/item_generative_indexing_phase_0.txt",
    "LC-Rec": "AmazonReviews2018/Mini/Mini.item.json",
    "RecBole": "MovieLens/mini/mini.item",
    "Amazon2023": "AmazonReviews2023/Video_Games/meta_Video_Games.jsonl",
}


def spoil(path, how):
    path.unlink()
    if how == "directory":
        path.mkdir()
    elif how == "dangling link":
        path.symlink_to(path.parent / "nowhere")
    elif how == "link loop":
        path.symlink_to(path)


@pytest.mark.parametrize(
    "how, reason",
    [
        ("directory", "a directory"),
        ("dangling link", "No such file"),
        ("link loop", "Too many levels of symbolic links"),
    ],
)
@pytest.mark.parametrize("fmt", FORMATS)
def test_metadata_that_exists_but_is_no_file_is_an_error(tmp_path, make_config, fmt, how, reason):
    FORMATS[fmt][0](tmp_path, CLEAN)
    meta = tmp_path / METADATA[fmt]
    spoil(meta, how)
    with pytest.raises(DataError, match=f"{meta}: .*{reason}"):
        load(make_config, tmp_path, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_absent_metadata_switches_to_collaborative_embeddings_with_a_warning(tmp_path, make_config, caplog, fmt):
    from genrec.embeddings import choose_source

    FORMATS[fmt][0](tmp_path, CLEAN)
    (tmp_path / METADATA[fmt]).unlink()
    config = make_config(data_dir=str(tmp_path), **FORMATS[fmt][1])
    with caplog.at_level(logging.WARNING):
        data = load_interactions(config)
        assert choose_source(config, data) == "cf"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("items have no text" in w for w in warnings) and any("using collaborative" in w for w in warnings)


def amazon_test_file(tmp_path):
    path = amazon2023(tmp_path, CLEAN)
    (path.parent / "Video_Games.valid.csv.gz").unlink()
    return path


GOOD_ROWS = HEADER + "".join(f"{u},{s[-1]},5.0,1600000000,{' '.join(s[:-1])}\n" for u, s in CLEAN.items())


@pytest.mark.parametrize(
    "damage, match",
    [
        ("truncated gzip", r":\d+: truncated: the compressed stream ends early"),
        ("random bytes", r": not a valid gzip file"),
        ("non-UTF-8 byte", r":3: not UTF-8 text"),
        ("unbalanced quote", r":3: malformed CSV: unexpected end of data"),
        ("header only", r": no data rows \(only a header\)"),
        ("empty", r":1: empty file"),
    ],
)
def test_damaged_amazon2023_files_name_file_and_line(tmp_path, make_config, damage, match):
    path = amazon_test_file(tmp_path)
    lines = GOOD_ROWS.splitlines(keepends=True)
    if damage == "truncated gzip":
        packed = gzip.compress((HEADER + "".join(f"u{n},X{n},5.0,1,A B {n}\n" for n in range(5000))).encode())
        path.write_bytes(packed[: len(packed) // 2])
    elif damage == "random bytes":
        path.write_bytes(os.urandom(2048))
    elif damage == "non-UTF-8 byte":
        path.write_bytes(gzip.compress("".join(lines[:2]).encode() + b"u2,\xff\xfe,5.0,1,B C\n" + lines[3].encode()))
    elif damage == "unbalanced quote":  # reported on its own line, not where the next quote is
        path.write_bytes(
            gzip.compress(("".join(lines[:2]) + 'u2,"C,5.0,1,B\n' + lines[3] + 'u4,"X",5.0,1,A\n').encode())
        )
    elif damage == "header only":
        path.write_bytes(gzip.compress(HEADER.encode()))
    else:
        path.write_bytes(gzip.compress(b""))
    with pytest.raises(DataError, match=f"{path.name}{match}"):
        load(make_config, tmp_path, "Amazon2023")


def test_amazon2023_test_file_alone_is_enough(tmp_path, make_config):
    amazon_test_file(tmp_path)
    assert raw_sequences(load(make_config, tmp_path, "Amazon2023"), "Amazon2023") == list(CLEAN.values())


@pytest.mark.parametrize(
    "fmt, content, match",
    [
        ("P5", "", "user_sequence.txt: no user sequences"),
        ("LC-Rec", "{}", "Mini.inter.json: no users"),
        ("RecBole", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n", "mini.inter: no interactions"),
        ("RecBole", "", "mini.inter:1: empty file"),
    ],
)
def test_empty_and_header_only_inputs_name_the_file(tmp_path, make_config, fmt, content, match):
    path = FORMATS[fmt][0](tmp_path, CLEAN)
    path.write_text(content)
    with pytest.raises(DataError, match=match):
        load(make_config, tmp_path, fmt)


def test_too_short_histories_name_the_file(tmp_path, make_config):
    path = p5(tmp_path, {"u1": ["A", "B"], "u2": ["C"]})
    with pytest.raises(DataError, match=f"{path}: .*none of its 2 users has at least 3 interactions"):
        load(make_config, tmp_path, "P5")
