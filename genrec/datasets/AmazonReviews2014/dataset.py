"""Amazon Reviews 2014 in the P5 format, under ``<data_dir>/AmazonReviews2014/<category>/``:

- ``user_sequence.txt``: ``userASIN itemASIN itemASIN ...`` per line, chronological;
- ``item_generative_indexing_phase_0.txt`` (optional): ``itemASIN word word ...``, the short
  lowercase title/brand words that are the only item text of these datasets (used as the title).
"""

from __future__ import annotations

import logging

from pydantic import Field

from genrec.data import Interactions, build_interactions, without_duplicates
from genrec.datasets.io import data_root, find_file, read_lines, require_file
from genrec.errors import DataError
from genrec.schema import StrictModel

log = logging.getLogger(__name__)


class Settings(StrictModel):
    category: str = Field(description="which part of the dataset (a folder under data_dir)")


def load(config) -> Interactions:
    folder = data_root(config) / "AmazonReviews2014" / config.category
    seq_path = require_file([folder / "user_sequence.txt"], "P5 user_sequence.txt")
    sequences = []
    seen = set()
    duplicates = 0
    for number, line in read_lines(seq_path):
        parts = line.split()
        if not parts:
            continue
        if parts[0] in seen:
            raise DataError(f"user {parts[0]} appears twice", seq_path, number)
        seen.add(parts[0])
        items, dropped = without_duplicates(parts[0], parts[1:], config.duplicates, seq_path, number)
        duplicates += dropped
        sequences.append((parts[0], items))
    if not sequences:
        raise DataError("no user sequences (the file is empty)", seq_path)

    text: dict[str, dict[str, str]] = {}
    text_path = find_file([folder / "item_generative_indexing_phase_0.txt"])
    if text_path is not None:
        for _, line in read_lines(text_path):
            item, _, words = line.strip().partition(" ")
            if item:
                text[item] = {"title": words.strip()}
    else:
        log.warning("%s: no item_generative_indexing_phase_0.txt: items have no text", config.category)
    return build_interactions(
        f"AmazonReviews2014/{config.category}",
        sequences,
        text if text_path is not None else None,
        {"duplicate_interactions": duplicates},
        source=seq_path,
    )
