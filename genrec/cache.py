"""On-disk caches keyed by everything that affects their content, written atomically.

A cache entry is ``<dir>/<kind>-<digest>.npz`` with a ``.json`` sidecar holding the full key, so a
person can see what an entry was built from. The digest is a SHA-256 of the canonical JSON of the
key; any changed setting (or changed input data, via a content fingerprint in the key) gives a new
file name, so a stale entry is never reused.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import hashlib
import json
import logging
import os
import secrets
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from genrec.errors import GenrecError

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


# Errors of the file system we write to (read-only, full, not permitted, not a folder), as opposed
# to errors of what produces the content (e.g. a download's network errors).
WRITE_ERRORS = {
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EFBIG,
    errno.ENOTDIR,
    errno.EISDIR,
}


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` a temporary file beside ``path``, then rename it into place: a reader never sees
    a half-written file, and a failure leaves nothing behind, not even the folders it created for
    ``path`` (a failed download left an empty dataset tree that looked half-fetched). The file gets
    the mode the user's umask gives (like any new file); a read-only or full file system is a
    :class:`GenrecError` naming ``path``."""
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    created = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]  # deepest first
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # mode 0666 less the umask
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
            for folder in created:
                folder.rmdir()  # only when empty: another writer may have filled it meanwhile
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRORS:
            raise GenrecError(f"cannot write {path}: {exc.strerror}") from None
        raise


def ensure_writable(directory: Path) -> None:
    """Fail now, naming the folder, if ``directory`` cannot take new files (before hours of work
    whose result would then be lost)."""
    atomic_write(Path(directory) / ".write-check", lambda tmp: None)
    (Path(directory) / ".write-check").unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(Path(path), lambda tmp: tmp.write_text(text))


# The entries loaded or saved inside an `entries_used()` block (None outside one).
_USED: contextvars.ContextVar[list[Path] | None] = contextvars.ContextVar("genrec_cache_entries_used", default=None)


@contextlib.contextmanager
def entries_used() -> Iterator[list[Path]]:
    """Collect the path of every cache entry loaded or saved inside the block, in order: what a
    piece of work read from (or added to) the caches, so that an export can carry exactly those."""
    used: list[Path] = []
    token = _USED.set(used)
    try:
        yield used
    finally:
        _USED.reset(token)


def _note_used(path: Path) -> None:
    used = _USED.get()
    if used is not None and path not in used:
        used.append(path)


class ArrayCache:
    """A folder of ``.npz`` entries addressed by (kind, key)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def ensure_writable(self) -> None:
        """Called before building an entry, so a read-only cache folder fails before the work."""
        ensure_writable(self.directory)

    def path(self, kind: str, key: dict[str, Any]) -> Path:
        return self.directory / f"{kind}-{digest(key)[:20]}.npz"

    def load(
        self, kind: str, key: dict[str, Any], check: Callable[[dict[str, np.ndarray]], str | None] | None = None
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
        _note_used(path)
        return arrays

    def save(self, kind: str, key: dict[str, Any], arrays: dict[str, np.ndarray], info: dict | None = None) -> Path:
        path = self.path(kind, key)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)

        atomic_write_text(
            path.with_suffix(".json"), json.dumps({"key": key, "info": info or {}}, indent=2, default=str)
        )
        atomic_write(path, write)
        _note_used(path)
        return path
