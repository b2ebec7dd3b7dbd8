"""File helpers shared by the dataset loaders: locating files, reading (gzipped) text with line
numbers in every error, and resolving the data directory."""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from genrec.errors import DataError


def data_root(config) -> Path:
    """``--data_dir``, else ``$GENREC_DATA_DIR``, else ``./data``."""
    if config.data_dir is not None:
        return Path(config.data_dir).expanduser()
    env = os.environ.get("GENREC_DATA_DIR")
    return Path(env).expanduser() if env else Path("data")


def find_file(candidates: list[Path]) -> Path | None:
    """The first existing file among ``candidates``, each also tried with a ``.gz`` suffix; None
    only when none of them exists at all. A candidate that exists but is no regular file (a
    directory, a broken or looping symbolic link) is a :class:`DataError`: taking it for absent
    would silently change what the run uses (e.g. collaborative instead of text embeddings)."""
    for path in candidates:
        for option in (path, path.with_name(path.name + ".gz")):
            if option.is_file():
                return option
            if os.path.lexists(option):
                raise DataError(not_a_file(option), option)
    return None


def not_a_file(path: Path) -> str:
    """Why an existing ``path`` cannot be read as a file."""
    if path.is_symlink():
        try:
            os.stat(path)
        except OSError as exc:
            return f"a symbolic link that cannot be followed ({exc.strerror}); fix or remove it"
    if path.is_dir():
        return "a directory, not a file; remove it or point --data_dir elsewhere"
    return "not a regular file"


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
    """(line number, line without its newline), 1-based. Each line is decoded on its own, so a
    bad byte, a truncated or corrupt gzip stream or an unreadable file is a :class:`DataError`
    naming the file and the exact line."""
    number = 0
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                yield number, raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"not UTF-8 text (byte {exc.object[exc.start : exc.start + 1]!r} at column {exc.start + 1})", path, number
        ) from None
    except EOFError:
        raise DataError("truncated: the compressed stream ends early", path, number + 1) from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"not a valid gzip file ({exc})", path, number + 1 if number else None) from None
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}", path) from None


def finite_number(raw: str, column: str, path: Path, line: int) -> float:
    """``raw`` as a float; anything else, ``nan`` and infinities included, is a :class:`DataError`
    at the file and line (a ``nan`` timestamp would reorder a history silently)."""
    try:
        value = float(raw)
    except ValueError:
        raise DataError(f"{column} {raw!r} is not a number", path, line) from None
    if not math.isfinite(value):
        raise DataError(f"{column} {raw!r} is not a finite number", path, line)
    return value


def read_json(path: Path) -> Any:
    try:
        with open_text(path) as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", path, exc.lineno) from None
    except UnicodeDecodeError:
        raise DataError("not UTF-8 text", path) from None
    except EOFError:
        raise DataError("truncated: the compressed stream ends early", path) from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"not a valid gzip file ({exc})", path) from None
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}", path) from None


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
