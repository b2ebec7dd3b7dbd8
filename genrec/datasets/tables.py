"""Tabular files of any common format read into columns, each row remembering where it came from.

A user's interactions and items arrive as CSV, TSV, JSON lines, Parquet or RecBole atomic files
(``.inter`` / ``.item`` with typed headers), gzipped or not. :func:`read_table` reads the columns a
loader asks for from any of them into one :class:`Table`, so the loader's checks are written once
and every complaint names the file, the line (the row, for Parquet) and the column.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from genrec.datasets.io import open_text, read_jsonl, read_lines
from genrec.errors import DataError
from genrec.schema import seconds_of

FORMATS = ("csv", "tsv", "jsonl", "parquet", "atomic")
SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".inter": "atomic",
    ".item": "atomic",
}


def file_format(path: Path, declared: str) -> str:
    """``declared`` unless it is ``auto``; then the format the file's suffix names (``.gz`` aside)."""
    if declared != "auto":
        return declared
    name = path.name.removesuffix(".gz")
    found = SUFFIXES.get(Path(name).suffix.lower())
    if found is None:
        raise DataError(
            f"cannot tell the format from the name; set --file_format to one of {', '.join(FORMATS)} "
            f"(or name it {', '.join(sorted(SUFFIXES))}, optionally .gz)",
            path,
        )
    return found


@dataclass(frozen=True)
class Table:
    """The asked-for columns of a file: ``columns[name][k]`` is row ``k``'s value (a string in text
    formats; whatever JSON or Parquet stored otherwise, None where absent), ``lines[k]`` the line
    it was read from (the row number in Parquet). ``token_seq`` names the RecBole columns whose
    values are space-separated token lists."""

    path: Path
    columns: dict[str, list[Any]]
    lines: list[int]
    by_row: bool = False
    token_seq: frozenset[str] = frozenset()

    def __len__(self) -> int:
        return len(self.lines)

    def error(self, message: str, row: int, column: str | None = None) -> DataError:
        """A :class:`DataError` at row ``row`` (and ``column``) of the file."""
        where = f"column {column!r}: " if column else ""
        if self.by_row:
            return DataError(f"row {self.lines[row]}: {where}{message}", self.path)
        return DataError(where + message, self.path, self.lines[row])


def check_header(path: Path, header: list[str], required: list[str], hint: str = "") -> None:
    """Every ``required`` column is in ``header``; otherwise one line naming the missing ones, the
    columns there are, the closest to each missing name, and ``hint`` (how to name others)."""
    missing = [c for c in required if c not in header]
    if not missing:
        return
    hints = []
    for name in missing:
        close = difflib.get_close_matches(name, header, n=1, cutoff=0.5)
        if close:
            hints.append(f"{name!r} -> {close[0]!r}?")
    raise DataError(
        f"no column {', '.join(repr(c) for c in missing)} (columns: {', '.join(header) or 'none'})"
        + (f"; did you mean {', '.join(hints)}" if hints else "")
        + (f"; {hint}" if hint else ""),
        path,
        1,
    )


def read_atomic(
    path: Path, required: tuple[str, ...], hint: str = ""
) -> Iterator[tuple[int, dict[str, str], dict[str, str]]]:
    """Yield ``(line, {column: value}, {column: type})`` from a RecBole atomic file (tab-separated,
    a typed header such as ``item_id:token title:token_seq``); column names without their types."""
    lines = read_lines(path)
    try:
        _, header_line = next(lines)
    except StopIteration:
        raise DataError("empty file (expected a typed header)", path, 1) from None
    typed = [column.partition(":") for column in header_line.split("\t")]
    header = [name for name, _, _ in typed]
    types = {name: kind for name, _, kind in typed}
    check_header(path, header, list(required), hint)
    for number, line in lines:
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise DataError(f"expected {len(header)} tab-separated fields, found {len(fields)}", path, number)
        yield number, dict(zip(header, fields)), types


def read_delimited(path: Path, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line, fields)`` of a CSV / TSV file, the header first; blank rows are skipped and
    every row must have the header's width. Quoted fields may span lines: the line is where the
    row starts."""
    handle = open_text(path)
    start = 1
    try:
        reader = csv.reader(handle, delimiter=delimiter)
        width = None
        for fields in reader:
            if width is None:
                width = len(fields)
                yield start, [name.strip() for name in fields]
            elif fields and any(field.strip() for field in fields):
                if len(fields) != width:
                    raise DataError(f"expected {width} fields, found {len(fields)}", path, start)
                yield start, fields
            start = reader.line_num + 1
        if width is None:
            raise DataError("empty file (expected a header line)", path, 1)
    except UnicodeDecodeError:
        raise DataError("not UTF-8 text", path, start) from None
    except csv.Error as exc:
        raise DataError(f"malformed {'CSV' if delimiter == ',' else 'TSV'}: {exc}", path, start) from None
    except EOFError:
        raise DataError("truncated: the compressed stream ends early", path, start) from None
    except (gzip.BadGzipFile, OSError) as exc:
        raise DataError(f"cannot read: {getattr(exc, 'strerror', None) or exc}", path) from None
    finally:
        handle.close()


def read_parquet(path: Path, wanted: list[str], optional: list[str], hint: str) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        source = pa.BufferReader(gzip.decompress(path.read_bytes())) if path.suffix == ".gz" else path
        schema = pq.read_schema(source)
        check_header(path, list(schema.names), wanted, hint)
        present = [c for c in wanted + optional if c in schema.names]
        table = pq.read_table(source, columns=present)
    except (pa.ArrowException, gzip.BadGzipFile, EOFError) as exc:
        raise DataError(f"not a readable Parquet file ({exc})", path) from None
    columns: dict[str, list[Any]] = {name: table.column(name).to_pylist() for name in present}
    for name in optional:
        columns.setdefault(name, [None] * table.num_rows)
    return Table(path, columns, list(range(1, table.num_rows + 1)), by_row=True)


def read_table(path: Path, fmt: str, wanted: list[str], optional: list[str] = (), hint: str = "") -> Table:
    """Columns ``wanted`` (each must be there) and ``optional`` (None where absent) of ``path`` in
    format ``fmt`` (one of :data:`FORMATS`); a missing column's error ends with ``hint``."""
    optional = [c for c in optional if c not in wanted]
    if fmt == "parquet":
        return read_parquet(path, wanted, optional, hint)
    columns: dict[str, list[Any]] = {name: [] for name in wanted + optional}
    lines: list[int] = []
    token_seq: frozenset[str] = frozenset()
    if fmt in ("csv", "tsv"):
        rows = read_delimited(path, "," if fmt == "csv" else "\t")
        _, header = next(rows)
        check_header(path, header, wanted, hint)
        positions = {name: header.index(name) for name in wanted + optional if name in header}
        for number, fields in rows:
            for name, values in columns.items():
                values.append(fields[positions[name]] if name in positions else None)
            lines.append(number)
    elif fmt == "atomic":
        for number, row, types in read_atomic(path, tuple(wanted), hint):
            token_seq = frozenset(name for name, kind in types.items() if kind == "token_seq")
            for name, values in columns.items():
                values.append(row.get(name))
            lines.append(number)
    elif fmt == "jsonl":
        for number, record in read_jsonl(path):
            missing = [c for c in wanted if c not in record]
            if missing:
                raise DataError(
                    f"no key {', '.join(repr(c) for c in missing)} (keys: {', '.join(record)})"
                    + (f"; {hint}" if hint else ""),
                    path,
                    number,
                )
            for name, values in columns.items():
                values.append(record.get(name))
            lines.append(number)
    else:
        raise DataError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}", path)
    return Table(path, columns, lines, token_seq=token_seq)


def identifier(table: Table, column: str, row: int) -> str:
    """An id as a string (``12`` and ``"12"`` are the same item); empty or missing is an error."""
    value = table.columns[column][row]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = "" if value is None else str(value).strip()
    if not text:
        raise table.error("empty id", row, column)
    return text


def number(table: Table, column: str, row: int) -> float:
    """A finite number; ``nan``, infinities and text are errors (a ``nan`` rating or time would
    reorder or filter a history silently)."""
    value = table.columns[column][row]
    if isinstance(value, bool) or value is None:
        raise table.error(f"{value!r} is not a number", row, column)
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise table.error(f"{value!r} is not a number", row, column) from None
    if not math.isfinite(result):
        raise table.error(f"{value!r} is not a finite number", row, column)
    return result


def timestamp(table: Table, column: str, row: int) -> float:
    """Seconds: a number (Unix time or any ordinal), an ISO 8601 date or date-time string, or a
    Parquet / JSON date-time, read by :func:`genrec.config.seconds_of` as the split times are (no
    zone: UTC, so the order never depends on the machine's time zone)."""
    value = table.columns[column][row]
    if not isinstance(value, str | date):  # datetime is a date
        return number(table, column, row)
    try:
        seconds = seconds_of(value)
    except ValueError:
        raise table.error(
            f"{value!r} is neither a number nor an ISO 8601 date-time (2024-05-01T12:30:00)", row, column
        ) from None
    if not math.isfinite(seconds):
        raise table.error(f"{value!r} is not a finite number", row, column)
    return seconds


def text(table: Table, column: str, row: int, path_like: bool = False) -> str:
    """A text field as one string, as the file has it. Lists (JSON, Parquet) are joined by spaces,
    or by ``, `` when ``path_like`` (categories: the comma-separated path the diversity metrics
    read), and so are a RecBole ``token_seq`` column's tokens when ``path_like``."""
    value = table.columns[column][row]
    separator = ", " if path_like else " "
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return separator.join(str(part).strip() for part in value if part is not None and str(part).strip())
    if path_like and column in table.token_seq and isinstance(value, str):
        return ", ".join(value.split())
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value)


WRITABLE = ("csv", "tsv", "jsonl", "parquet")


def write_table(path: Path, fmt: str, columns: dict[str, list[Any]]) -> None:
    """Write ``columns`` (equal lengths) as one file of format ``fmt`` (one of :data:`WRITABLE`),
    atomically: :func:`read_table` reads back the same values (text formats as strings)."""
    from genrec.cache import atomic_write

    names = list(columns)
    rows = zip(*(columns[name] for name in names))

    def write(tmp: Path) -> None:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table(columns), tmp)
        elif fmt == "jsonl":
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.writelines(json.dumps(dict(zip(names, row)), ensure_ascii=False) + "\n" for row in rows)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
                writer.writerow(names)
                writer.writerows(rows)

    if fmt not in WRITABLE:
        raise DataError(f"cannot write format {fmt!r}; one of {', '.join(WRITABLE)}", path)
    atomic_write(path, write)
