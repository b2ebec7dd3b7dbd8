"""Amazon Reviews 2023, the official ``benchmark/5core/last_out_w_his`` split (the Latte paper's data).

Files under ``<data_dir>/AmazonReviews2023`` in either layout:

- official: ``benchmark/5core/last_out_w_his/<cat>.{train,valid,test}.csv[.gz]`` and
  ``raw/meta_categories/meta_<cat>.jsonl[.gz]`` (what :func:`download_files` writes);
- flat: ``<cat>/<cat>.{train,valid,test}.csv[.gz]`` and ``<cat>/meta_<cat>.jsonl[.gz]``.

Each test row carries the user's complete history, so ``history + [parent_asin]`` of the test row is
the full chronological sequence; ``valid`` and ``train``, when present, are checked against it. Both
and the metadata are optional: without metadata the items have no text.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from pydantic import Field, field_validator

from genrec.data import Interactions, build_interactions, without_duplicates
from genrec.datasets.download import download
from genrec.datasets.io import data_root, find_file, finite_number, read_jsonl, read_lines
from genrec.errors import ConfigError, DataError
from genrec.schema import StrictModel

log = logging.getLogger(__name__)

CATEGORIES = (
    "All_Beauty",
    "Amazon_Fashion",
    "Appliances",
    "Arts_Crafts_and_Sewing",
    "Automotive",
    "Baby_Products",
    "Beauty_and_Personal_Care",
    "Books",
    "CDs_and_Vinyl",
    "Cell_Phones_and_Accessories",
    "Clothing_Shoes_and_Jewelry",
    "Digital_Music",
    "Electronics",
    "Gift_Cards",
    "Grocery_and_Gourmet_Food",
    "Handmade_Products",
    "Health_and_Household",
    "Health_and_Personal_Care",
    "Home_and_Kitchen",
    "Industrial_and_Scientific",
    "Kindle_Store",
    "Magazine_Subscriptions",
    "Movies_and_TV",
    "Musical_Instruments",
    "Office_Products",
    "Patio_Lawn_and_Garden",
    "Pet_Supplies",
    "Software",
    "Sports_and_Outdoors",
    "Subscription_Boxes",
    "Tools_and_Home_Improvement",
    "Toys_and_Games",
    "Video_Games",
    "Unknown",
)
SPLITS = ("train", "valid", "test")
COLUMNS = ("user_id", "parent_asin", "rating", "timestamp", "history")


class Settings(StrictModel):
    category: str = Field(description="which part of the dataset (a folder under data_dir)")
    download: bool = Field(description="fetch the official files when none are under data_dir")
    download_base_url: str = Field(description="where the official files are fetched from")

    @field_validator("category")
    @classmethod
    def _known_category(cls, value: str) -> str:
        if value not in CATEGORIES:
            import difflib

            close = difflib.get_close_matches(value, CATEGORIES, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; one of {', '.join(CATEGORIES)}"
            raise ValueError(f"not an Amazon Reviews 2023 category{hint}")
        return value


def official_paths(root: Path, category: str) -> dict[str, Path]:
    bench = root / "benchmark" / "5core" / "last_out_w_his"
    paths = {split: bench / f"{category}.{split}.csv.gz" for split in SPLITS}
    paths["meta"] = root / "raw" / "meta_categories" / f"meta_{category}.jsonl.gz"
    return paths


def flat_paths(root: Path, category: str) -> dict[str, Path]:
    folder = root / category
    paths = {split: folder / f"{category}.{split}.csv" for split in SPLITS}
    paths["meta"] = folder / f"meta_{category}.jsonl"
    return paths


def locate(root: Path, category: str, part: str) -> Path | None:
    """The file for ``part`` (a split or ``meta``) in either layout, gzipped or not."""
    candidates = []
    for paths in (official_paths(root, category), flat_paths(root, category)):
        path = paths[part]
        candidates.append(path.with_name(path.name.removesuffix(".gz")))
    return find_file(candidates)


def download_files(config, parts: tuple[str, ...] = SPLITS + ("meta",)) -> list[Path]:
    """Fetch the official files that are missing (into the official layout); returns what it wrote."""
    root = data_root(config) / "AmazonReviews2023"
    written = []
    for part, path in official_paths(root, config.category).items():
        if part in parts and locate(root, config.category, part) is None:
            relative = path.relative_to(root).as_posix()
            written.append(download(f"{config.download_base_url.rstrip('/')}/{relative}", path))
    return written


def csv_fields(line: str, path: Path, number: int) -> list[str]:
    """One CSV record on one line (the official files have no line breaks inside fields, so an
    unbalanced quote is reported on its own line rather than where the next quote happens to be)."""
    try:
        return next(csv.reader([line], strict=True))
    except csv.Error as exc:
        raise DataError(f"malformed CSV: {exc}", path, number) from None


def read_rows(path: Path):
    """Yield (line, user, item, history) from one split file, validating the header and every row."""
    lines = read_lines(path)
    first = next(lines, None)
    if first is None:
        raise DataError("empty file (expected a header line)", path, 1)
    header = csv_fields(first[1], path, 1)
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DataError(f"header lacks column(s) {', '.join(missing)}; got {','.join(header)}", path, 1)
    col = {name: header.index(name) for name in COLUMNS}
    rows = 0
    for number, line in lines:
        if not line.strip():
            continue
        row = csv_fields(line, path, number)
        if len(row) != len(header):
            raise DataError(f"expected {len(header)} fields, found {len(row)}", path, number)
        user, item = row[col["user_id"]], row[col["parent_asin"]]
        if not user or not item:
            raise DataError("empty user_id or parent_asin", path, number)
        finite_number(row[col["timestamp"]], "timestamp", path, number)
        rows += 1
        yield number, user, item, row[col["history"]].split()
    if not rows:
        raise DataError("no data rows (only a header)", path)


def read_meta(path: Path) -> dict[str, dict[str, str]]:
    def joined(value) -> str:
        if isinstance(value, list):
            return " ".join(str(v) for v in value if v)
        return str(value) if value else ""

    text: dict[str, dict[str, str]] = {}
    for number, record in read_jsonl(path):
        asin = record.get("parent_asin")
        if not asin:
            raise DataError("record has no parent_asin", path, number)
        text[asin] = {
            "title": joined(record.get("title")),
            "brand": joined(record.get("store")),
            "categories": ", ".join(str(c) for c in record.get("categories") or []),
            "description": joined(record.get("description")),
            "features": joined(record.get("features")),
        }
    return text


def load(config) -> Interactions:
    root = data_root(config) / "AmazonReviews2023"
    category = config.category
    if locate(root, category, "test") is None:
        if not config.download:
            raise ConfigError(
                f"no Amazon Reviews 2023 files for {category} under {root} and download=false; "
                "run `genrec data download` with network access, or point --data_dir at the files"
            )
        download_files(config)
    test_path = locate(root, category, "test")
    if test_path is None:
        raise DataError(f"test split for {category} not found under {root} after download")

    sequences: dict[str, list[str]] = {}
    lines: dict[str, int] = {}
    for line, user, item, history in read_rows(test_path):
        if user in sequences:
            raise DataError(f"user {user} appears twice", test_path, line)
        sequences[user] = history + [item]
        lines[user] = line

    valid_path = locate(root, category, "valid")
    if valid_path is not None:
        seen = set()
        for line, user, item, history in read_rows(valid_path):
            seq = sequences.get(user)
            if seq is None:
                raise DataError(f"user {user} is not in the test split {test_path.name}", valid_path, line)
            if len(seq) < 2 or seq[-2] != item or seq[:-2] != history:
                raise DataError(f"user {user}: validation row disagrees with the test history", valid_path, line)
            seen.add(user)
        if len(seen) != len(sequences):
            raise DataError(f"{len(sequences) - len(seen)} test users have no validation row", valid_path)
    else:
        log.info("%s: no valid file; validation targets come from the test histories", category)

    train_path = locate(root, category, "train")
    if train_path is not None:
        for line, user, item, _ in read_rows(train_path):
            seq = sequences.get(user)
            if seq is None or item not in seq[:-2]:
                raise DataError(
                    f"user {user}: training item {item} is not in the training part of the test history",
                    train_path,
                    line,
                )
    else:
        log.info("%s: no train file; training sequences rebuilt from the test histories", category)

    duplicates = 0
    for user, seq in sequences.items():
        sequences[user], dropped = without_duplicates(user, seq, config.duplicates, test_path, lines[user])
        duplicates += dropped
    meta_path = locate(root, category, "meta")
    text = read_meta(meta_path) if meta_path is not None else {}
    if meta_path is None:
        log.warning("%s: no item metadata file (meta_%s.jsonl[.gz]): items have no text", category, category)
    return build_interactions(
        f"AmazonReviews2023/{category}",
        list(sequences.items()),
        text if meta_path is not None else None,
        {"duplicate_interactions": duplicates},
        source=test_path,
    )
