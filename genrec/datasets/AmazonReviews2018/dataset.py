"""Amazon Reviews 2018 in the LC-Rec json format, under ``<data_dir>/AmazonReviews2018/<category>/``:

- ``<category>.inter.json``: ``{"<user_idx>": [item_idx, ...]}``, chronological;
- ``<category>.item.json`` (optional): ``{"<item_idx>": {"title", "description", "brand", "categories"}}``;
- ``<category>.item2id`` (optional): ``ASIN<TAB>idx``; when present every item in a sequence must be in it.
"""

from __future__ import annotations

import logging

from pydantic import Field

from genrec.data import Interactions, build_interactions, without_duplicates
from genrec.datasets.io import data_root, find_file, read_json, read_lines, require_file
from genrec.errors import DataError
from genrec.schema import StrictModel

log = logging.getLogger(__name__)


class Settings(StrictModel):
    category: str = Field(description="which part of the dataset (a folder under data_dir)")


def read_item2id(path) -> set[str]:
    known = set()
    for number, line in read_lines(path):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[1].strip().isdigit():
            raise DataError("expected 'ASIN<TAB>index'", path, number)
        known.add(parts[1].strip())
    return known


def load(config) -> Interactions:
    folder = data_root(config) / "AmazonReviews2018" / config.category
    name = config.category
    inter_path = require_file([folder / f"{name}.inter.json"], "interaction file")
    raw = read_json(inter_path)
    if not isinstance(raw, dict):
        raise DataError("expected an object mapping user index to a list of item indices", inter_path)
    sequences = []
    duplicates = 0
    for user, items in raw.items():
        if not isinstance(items, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
            raise DataError(f"user {user}: expected a list of integer item indices", inter_path)
        kept, dropped = without_duplicates(str(user), [str(i) for i in items], config.duplicates, inter_path)
        duplicates += dropped
        sequences.append((str(user), kept))
    if not sequences:
        raise DataError("no users (the object is empty)", inter_path)

    item2id_path = find_file([folder / f"{name}.item2id"])
    if item2id_path is not None:
        known = read_item2id(item2id_path)
        for user, items in sequences:
            unknown = next((i for i in items if i not in known), None)
            if unknown is not None:
                raise DataError(f"user {user}: item {unknown} is not in {item2id_path.name}", inter_path)

    item_path = find_file([folder / f"{name}.item.json"])
    text: dict[str, dict[str, str]] = {}
    if item_path is not None:
        records = read_json(item_path)
        if not isinstance(records, dict):
            raise DataError("expected an object mapping item index to its fields", item_path)
        for item, fields in records.items():
            if not isinstance(fields, dict):
                raise DataError(f"item {item}: expected an object of text fields", item_path)
            text[str(item)] = {k: str(v) for k, v in fields.items() if isinstance(v, (str, int, float)) and v != ""}
    else:
        log.warning("%s: no %s.item.json: items have no text", name, name)
    return build_interactions(
        f"AmazonReviews2018/{name}",
        sequences,
        text if item_path is not None else None,
        {"duplicate_interactions": duplicates},
        source=inter_path,
    )
