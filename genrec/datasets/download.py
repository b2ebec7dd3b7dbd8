"""Fetching official dataset files: streamed to a temporary file, checked, then renamed into place,
so an interrupted or failed download never leaves a file that looks complete.

The check: the byte count must match the server's ``Content-Length``, and a ``.gz`` file is
decompressed to its end, so its CRC-32 and length trailer catch truncation and corruption (the
official Amazon Reviews 2023 site publishes no checksums to compare against)."""

from __future__ import annotations

import gzip
import logging
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from genrec.cache import atomic_write
from genrec.errors import DataError
from genrec.runtime import progress

log = logging.getLogger(__name__)
CHUNK = 1 << 20


def download(url: str, destination: Path, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``destination``; raise :class:`DataError` saying what to do on failure."""
    log.info("downloading %s -> %s", url, destination)

    def write(tmp: Path) -> None:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            total = response.headers.get("Content-Length")
            expected = int(total) if total else None
            received = 0
            with progress(total=expected, unit="B", unit_scale=True, desc=destination.name, leave=False) as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if expected is not None and received != expected:
            raise DataError(f"download of {url} was truncated ({received} of {expected} bytes)")
        if destination.name.endswith(".gz"):
            try:
                with gzip.open(tmp, "rb") as check:
                    while check.read(CHUNK):
                        pass
            except (OSError, EOFError, zlib.error) as exc:
                raise DataError(
                    f"download of {url} is corrupt ({exc or 'the compressed stream ends early'}); "
                    f"nothing was written to {destination}"
                ) from None

    try:
        atomic_write(destination, write)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"could not download {url} ({reason}). Without network access, fetch the file elsewhere "
            f"and place it at {destination}."
        ) from None
    return destination
