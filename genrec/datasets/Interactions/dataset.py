"""Your own data: one file of user-item interactions and, optionally, one of items.

``--dataset=Interactions --interactions=events.parquet --items=items.csv`` reads CSV, TSV, JSON
lines, Parquet or RecBole atomic files (``.inter`` / ``.item``), gzipped or not, with the columns
named by ``user_column``, ``item_column``, ``time_column`` (and ``rating_column``). Each user's
interactions are ordered by time, stable on ties (so a file without times keeps its order with
``--time_column=null``). Then, each step counted and logged: interactions rated below
``min_rating`` go, duplicates follow ``duplicates``, the k-core filter (``min_user_interactions``,
``min_item_interactions``) peels rare users and items, and users with fewer than three interactions
(too short to split) go. The items file gives each item its text fields (``text_fields``), which the
text embeddings read and whose ``categories`` feed the diversity metrics and ``category=`` filters.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from genrec.data import Interactions, build_interactions
from genrec.data.interactions import MIN_SEQUENCE_LENGTH, kept_positions
from genrec.data.kcore import k_core
from genrec.datasets.io import require_file
from genrec.datasets.tables import Table, file_format, identifier, number, read_table, text, timestamp, write_table
from genrec.errors import DataError
from genrec.schema import TEXT_FIELDS, StrictModel, comma_separated

log = logging.getLogger(__name__)

COLUMN_HINT = (
    "name the file's columns with --user_column, --item_column, --time_column (null: file order), --rating_column"
)
TEXT_HINT = "map item text with --text_fields=title=<column>,categories=<column>,..."


class Settings(StrictModel):
    interactions: Path | None = Field(
        description="your interactions file (.csv .tsv .jsonl .parquet or RecBole .inter, .gz or not): a row per event"
    )
    items: Path | None = Field(
        description="your items file (same formats, or RecBole .item): a row per item with its text; null: no item text"
    )
    file_format: Literal["auto", "csv", "tsv", "jsonl", "parquet", "atomic"] = Field(
        description="format of both files; auto: from each file's suffix"
    )
    user_column: str = Field(min_length=1, description="the interactions file's user id column")
    item_column: str = Field(min_length=1, description="the item id column of both files")
    time_column: str | None = Field(
        description="the interactions' time column (Unix seconds, any number, or ISO 8601); null: the file's order"
    )
    rating_column: str | None = Field(description="a rating column (read for min_rating); null: none")
    min_rating: float | None = Field(description="drop interactions rated below this (counted); null: keep all")
    text_fields: list[str] | None = Field(
        description="item text: field or field=column entries, fields among "
        + ", ".join(TEXT_FIELDS)
        + "; null: the items file's columns of those names"
    )
    min_user_interactions: int = Field(
        ge=0, description="k-core: users keep at least this many interactions (iterated with the items' bound)"
    )
    min_item_interactions: int = Field(
        ge=0, description="k-core: items keep at least this many interactions (0 or 1: no item filter)"
    )

    split_text_fields = field_validator("text_fields", mode="before")(comma_separated)

    @field_validator("text_fields")
    @classmethod
    def _known_fields(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        fields = [entry.partition("=")[0].strip() for entry in value]
        unknown = [f for f in fields if f not in TEXT_FIELDS]
        if unknown:
            raise ValueError(f"text field(s) {', '.join(unknown)} are none of {', '.join(TEXT_FIELDS)} ({TEXT_HINT})")
        if len(set(fields)) < len(fields):
            raise ValueError("a text field is named twice")
        if any(eq and not column.strip() for _, eq, column in (e.partition("=") for e in value)):
            raise ValueError("an entry field= names no column")
        return value

    @model_validator(mode="after")
    def _files_and_columns(self):
        if self.interactions is None:
            raise ValueError("dataset Interactions reads --interactions=PATH (your file of user-item events)")
        if self.min_rating is not None and self.rating_column is None:
            raise ValueError("min_rating filters on a rating: set --rating_column too")
        if self.text_fields and self.items is None:
            raise ValueError("text_fields are columns of the items file: set --items=PATH too")
        return self

    def text_columns(self) -> tuple[dict[str, str], bool]:
        """``{text field: column}`` and whether they were named (else: the columns of TEXT_FIELDS' names)."""
        if self.text_fields is None:
            return {field: field for field in TEXT_FIELDS}, False
        pairs = (entry.partition("=") for entry in self.text_fields)
        return {field.strip(): (column.strip() if eq else field.strip()) for field, eq, column in pairs}, True


def dataset_name(path: Path) -> str:
    """``Interactions/<file name without its suffixes>``: what logs, tables and caches call it."""
    stem = path.name.removesuffix(".gz")
    return f"Interactions/{Path(stem).stem}"


def user_sequences(config, table: Table) -> tuple[list[tuple[str, list[str]]], list[list[float]], dict[str, int]]:
    """Each user's items in time order (stable on ties) and their times, after the rating filter
    and the duplicates policy; what each step removed, counted."""
    per_user: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    below = 0
    for row in range(len(table)):
        if config.min_rating is not None and number(table, config.rating_column, row) < config.min_rating:
            below += 1
            continue
        user, item = identifier(table, config.user_column, row), identifier(table, config.item_column, row)
        stamp = timestamp(table, config.time_column, row) if config.time_column else float(row)
        per_user[user].append((stamp, row, item))
    sequences, times, duplicates = [], [], 0
    for user, events in per_user.items():
        events.sort()
        items = [item for _, _, item in events]
        kept = kept_positions(
            user,
            items,
            config.duplicates,
            table.path,
            [table.lines[row] for _, row, _ in events],
            [stamp for stamp, _, _ in events] if config.time_column else None,
        )
        duplicates += len(items) - len(kept)
        sequences.append((user, [items[k] for k in kept]))
        times.append([events[k][0] for k in kept])
    return sequences, times, {"ratings_below_min_rating": below, "duplicate_interactions": duplicates}


def item_texts(config, known: set[str]) -> dict[str, dict[str, str]]:
    """``{item id: {text field: text}}`` from the items file; an id listed twice is an error."""
    path = require_file([Path(config.items).expanduser()], "items file (--items)")
    columns, named = config.text_columns()
    wanted = [config.item_column] + (list(columns.values()) if named else [])
    optional = [] if named else list(columns.values())
    table = read_table(path, file_format(path, config.file_format), wanted, optional, TEXT_HINT)
    texts: dict[str, dict[str, str]] = {}
    first_line: dict[str, int] = {}
    for row in range(len(table)):
        item = identifier(table, config.item_column, row)
        if item in first_line:
            message = f"item {item} is listed twice (first on line {first_line[item]})"
            raise table.error(message, row, config.item_column)
        first_line[item] = table.lines[row]
        texts[item] = {field: text(table, column, row, field == "categories") for field, column in columns.items()}
    found = [field for field in columns if any(fields[field] for fields in texts.values())]
    log.info("%s: item text from %s", path.name, ", ".join(f"{f} ({columns[f]})" for f in found) or "no column")
    unused = len(set(texts) - known)
    if unused:
        log.info("%s: %d of its %d items have no interactions (not in the catalogue)", path.name, unused, len(texts))
    return texts


def load(config) -> Interactions:
    path = require_file([Path(config.interactions).expanduser()], "interactions file (--interactions)")
    wanted = [config.user_column, config.item_column]
    wanted += [c for c in (config.time_column, config.rating_column) if c is not None and c not in wanted]
    table = read_table(path, file_format(path, config.file_format), wanted, hint=COLUMN_HINT)
    if not len(table):
        raise DataError("no interactions (only a header)", path)
    sequences, times, dropped = user_sequences(config, table)
    if config.min_user_interactions > 1 or config.min_item_interactions > 1:
        min_user = max(config.min_user_interactions, MIN_SEQUENCE_LENGTH)
        core, report = k_core([items for _, items in sequences], min_user, config.min_item_interactions)
        times = [[times[user][k] for k in kept] for user, kept in core]
        sequences = [(sequences[user][0], [sequences[user][1][k] for k in kept]) for user, kept in core]
        log.info(
            "%s: k-core (users >= %d, items >= %d interactions) reached in %d rounds: removed %d users, %d items",
            path.name,
            min_user,
            config.min_item_interactions,
            report.rounds,
            report.users_removed,
            report.items_removed,
        )
        dropped["interactions_outside_the_k_core"] = report.interactions_removed
        if not sequences:
            raise DataError(
                f"the k-core filter (users >= {min_user}, items >= {config.min_item_interactions}) leaves nothing; "
                "lower --min_user_interactions / --min_item_interactions",
                path,
            )
    texts = None
    if config.items is not None:
        texts = item_texts(config, {item for _, items in sequences for item in items})
    return build_interactions(
        dataset_name(path), sequences, texts, dropped, source=path, times=times if config.time_column else None
    )


def export(interactions: Interactions, folder: Path, fmt: str = "csv") -> list[Path]:
    """Write ``interactions`` as ``events.<fmt>`` (``user_id``, ``item_id`` and, where the data has
    times, ``timestamp`` in seconds) and, when the items have text, ``items.<fmt>`` (``item_id`` and
    the text fields). ``--dataset=Interactions`` reads them back to the same users, items, order and
    text (with ``--time_column=null`` when there is no ``timestamp``: the rows are in order), so any
    dataset genrec loads can be taken elsewhere, edited, or compared."""
    events: dict[str, list] = {"user_id": [], "item_id": []}
    for user, sequence in zip(interactions.user_ids, interactions.sequences):
        events["user_id"] += [user] * len(sequence)
        events["item_id"] += [interactions.item_ids[i] for i in sequence]
    if interactions.times is not None:
        events["timestamp"] = [float(t) for times in interactions.times for t in times]
    written = [Path(folder) / f"events.{fmt}"]
    write_table(written[0], fmt, events)
    if interactions.has_text:
        items: dict[str, list] = {"item_id": list(interactions.item_ids)}
        for field in TEXT_FIELDS:
            items[field] = [fields.get(field, "") for fields in interactions.item_text]
        written.append(Path(folder) / f"items.{fmt}")
        write_table(written[1], fmt, items)
    return written
