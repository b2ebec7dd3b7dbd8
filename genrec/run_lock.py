"""One trainer per run folder: a second ``genrec train`` / ``compare`` on a folder that a live process
is training is refused, naming that process.

Two trainers on one folder would interleave their checkpoints and ``metrics.jsonl``, and ``compare``
restarts a folder that has no checkpoint yet by deleting it, which would delete a run still in its
first epoch. The lock is an advisory ``flock`` on ``.<run name>.lock`` beside the folder (beside, so
that restarting the folder does not delete the lock it holds), which the kernel releases when the
process ends, however it ends. The file records the holder's process id and host; a clean release
removes it, so a lock file that still names a process at the next start belongs to one that died,
and the new trainer says it takes over. ``flock`` is local to one machine: trainers on two machines
sharing a network file system are not kept apart.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from genrec.errors import GenrecError

log = logging.getLogger(__name__)

_held: dict[Path, int] = {}  # this process's locks and how deeply each is entered (compare, then train)


def lock_path(directory: Path) -> Path:
    """Where the lock of run folder ``directory`` lives."""
    directory = Path(directory).resolve()
    return directory.parent / f".{directory.name}.lock"


@contextlib.contextmanager
def run_lock(directory: Path) -> Iterator[None]:
    """Hold the run folder ``directory`` for this process while the block trains it; re-entrant
    within a process. Another live process holding it is a :class:`GenrecError` naming it."""
    path = lock_path(directory)
    if path in _held:
        _held[path] += 1
        try:
            yield
        finally:
            _held[path] -= 1
        return
    handle = acquire(path, directory)
    try:
        handle.seek(0)
        previous = handle.read().strip()
        if previous:
            log.warning("%s: taking over the lock of %s, which ended without releasing it", directory, previous)
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        _held[path] = 1
        try:
            yield
        finally:
            del _held[path]
            path.unlink(missing_ok=True)  # released cleanly: nothing left beside the runs
    finally:
        handle.close()  # closing releases the flock


def acquire(path: Path, directory: Path):
    """The open, ``flock``-ed lock file at ``path``. A file that its holder unlinked between our
    open and our lock is no lock any more: then the path is opened again."""
    for _ in range(100):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held open while the run trains)
        except OSError as exc:
            raise GenrecError(f"cannot lock the run folder {directory}: {path}: {exc.strerror}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise GenrecError(f"cannot lock the run folder {directory}: {exc.strerror}") from None
            raise GenrecError(
                f"{directory} is being trained by {holder} (lock {path}): two trainers on one folder would "
                "corrupt it; wait for it, or stop that process"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return handle
        handle.close()
    raise GenrecError(f"cannot lock the run folder {directory}: {path} keeps being replaced")
