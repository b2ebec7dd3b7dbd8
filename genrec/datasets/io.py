"""File helpers shared by the dataset loaders: locating files, reading (gzipped) text with line
numbers in every error, and resolving the data directory."""

from __future__ import annotations

import gzip
import io
import json
import os
from pathlib import Path
from typing import Any, Iterator

from genrec.errors import DataError


def data_root(config) -> Path:
    """``--data_dir``, else ``$GENREC_DATA_DIR``, else ``./data``."""
    if config.data_dir is not None:
        return Path(config.data_dir).expanduser()
    env = os.environ.get("GENREC_DATA_DIR")
    return Path(env).expanduser() if env else Path("data")


def find_file(candidates: list[Path]) -> Path | None:
    """The first existing file among ``candidates``, each also tried with a ``.gz`` suffix."""
    for path in candidates:
        for option in (path, path.with_name(path.name + ".gz")):
            if option.is_file():
                return option
    return None


def require_file(candidates: list[Path], what: str) -> Path:
    found = find_file(candidates)
    if found is None:
        tried = ", ".join(str(p) + "[.gz]" for p in candidates)
        raise DataError(f"{what} not found (looked for {tried})")
    return found


def open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its newline), 1-based; decoding errors name the file."""
    try:
        with open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                yield number, line.rstrip("\r\n")
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as exc:
        raise DataError(f"cannot read: {exc}", path) from None


def read_json(path: Path) -> Any:
    try:
        with open_text(path) as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", path, exc.lineno) from None
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as exc:
        raise DataError(f"cannot read: {exc}", path) from None


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    for number, line in read_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc.msg}", path, number) from None
        if not isinstance(record, dict):
            raise DataError("expected a JSON object per line", path, number)
        yield number, record
