"""On-disk caches keyed by everything that affects their content, written atomically.

A cache entry is ``<dir>/<kind>-<digest>.npz`` with a ``.json`` sidecar holding the full key, so a
person can see what an entry was built from. The digest is a SHA-256 of the canonical JSON of the
key; any changed setting (or changed input data, via a content fingerprint in the key) gives a new
file name, so a stale entry is never reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)


def digest(obj: Any) -> str:
    """SHA-256 of the canonical JSON of ``obj`` (sorted keys, no whitespace)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint_arrays(arrays) -> str:
    """Content hash of a sequence of integer arrays (e.g. user sequences), lengths included."""
    h = hashlib.sha256()
    for array in arrays:
        a = np.ascontiguousarray(array, dtype=np.int64)
        h.update(len(a).to_bytes(8, "little"))
        h.update(a.tobytes())
    return h.hexdigest()


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(Path(path), lambda tmp: tmp.write_text(text))


class ArrayCache:
    """A folder of ``.npz`` entries addressed by (kind, key)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def path(self, kind: str, key: dict[str, Any]) -> Path:
        return self.directory / f"{kind}-{digest(key)[:20]}.npz"

    def load(self, kind: str, key: dict[str, Any], check: Callable[[dict[str, np.ndarray]], str | None] | None = None
             ) -> dict[str, np.ndarray] | None:
        """The entry's arrays, or None when there is none. An entry that cannot be read (truncated,
        garbage) or that ``check`` rejects (it returns what is wrong) is logged as a warning naming
        the file and treated as absent, so the caller rebuilds and overwrites it."""
        path = self.path(kind, key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            log.warning("cache entry %s is unreadable (%s); rebuilding it", path, exc)
            return None
        problem = check(arrays) if check is not None else None
        if problem:
            log.warning("cache entry %s is invalid (%s); rebuilding it", path, problem)
            return None
        return arrays

    def save(self, kind: str, key: dict[str, Any], arrays: dict[str, np.ndarray], info: dict | None = None) -> Path:
        path = self.path(kind, key)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)

        atomic_write_text(path.with_suffix(".json"), json.dumps({"key": key, "info": info or {}}, indent=2, default=str))
        atomic_write(path, write)
        return path
