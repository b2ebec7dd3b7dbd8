"""MovieLens as RecBole atomic files, under ``<data_dir>/MovieLens/<category>/``:

- ``<category>.inter``: tab-separated, typed header (``user_id:token item_id:token rating:float
  timestamp:float``); a user's interactions are ordered by timestamp, stable on ties;
- ``<category>.item`` (optional): ``item_id:token movie_title:token_seq release_year:token class:token_seq``,
  giving the title (with year) and the genres as categories.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from pydantic import Field

from genrec.data import Interactions, build_interactions, without_duplicates
from genrec.datasets.io import data_root, find_file, finite_number, require_file
from genrec.datasets.tables import read_atomic
from genrec.errors import DataError
from genrec.schema import StrictModel

log = logging.getLogger(__name__)


class Settings(StrictModel):
    category: str = Field(description="which part of the dataset (a folder under data_dir)")


def load(config) -> Interactions:
    folder = data_root(config) / "MovieLens" / config.category
    inter_path = require_file([folder / f"{config.category}.inter"], "RecBole .inter file")
    per_user: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for number, row, _ in read_atomic(inter_path, ("user_id", "item_id", "timestamp")):
        per_user[row["user_id"]].append(
            (finite_number(row["timestamp"], "timestamp", inter_path, number), number, row["item_id"])
        )
    if not per_user:
        raise DataError("no interactions (only a header)", inter_path)
    sequences, duplicates = [], 0
    for user, events in per_user.items():
        events.sort()
        items, dropped = without_duplicates(
            user,
            [item for _, _, item in events],
            config.duplicates,
            inter_path,
            [number for _, number, _ in events],
            [stamp for stamp, _, _ in events],
        )
        duplicates += dropped
        sequences.append((user, items))

    text: dict[str, dict[str, str]] = {}
    item_path = find_file([folder / f"{config.category}.item"])
    if item_path is None:
        log.warning("%s: no %s.item: items have no text", config.category, config.category)
    else:
        for _, row, _ in read_atomic(item_path, ("item_id",)):
            title, year = row.get("movie_title", "").strip(), row.get("release_year", "").strip()
            text[row["item_id"]] = {
                "title": f"{title} ({year})" if title and year else title,
                "categories": ", ".join(row.get("class", "").split()),
            }
    return build_interactions(
        f"MovieLens/{config.category}",
        sequences,
        text if item_path is not None else None,
        {"duplicate_interactions": duplicates},
        source=inter_path,
    )
