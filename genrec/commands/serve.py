"""``genrec serve``: a trained run as an HTTP JSON service, and who may change its catalogue."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from genrec.commands.flags import count_flag, number_flag
from genrec.errors import GenrecError
from genrec.run_folder import CATALOGUE_CHANGES


def cmd_serve(argv: list[str]) -> int:
    """``genrec serve --run=DIR [--host=127.0.0.1] [--port=8000] [--max_batch=64] [--max_wait_ms=0]
    [--threads=N] [--api_key_file=PATH] [--auth=changes|all] [--max_body_mb=16] [--journal=PATH]``;
    other flags go to :func:`genrec.load_run`. The run lives in a decoding process of its own
    (:class:`genrec.batcher_process.BatcherProcess`), so HTTP and decoding never wait for one
    interpreter lock. There it is loaded on one torch thread and the batching thread decodes on
    ``--threads`` (default: every core but one, which the HTTP process keeps; on 2 cores one decoding
    thread served more requests at every load than two, which competed with HTTP for the cores:
    docs/results.md, "Serving"): torch's thread pool then belongs to that thread alone, since a
    second pool (the loading thread's) made each of its wake-ups a sleep and a pass of one user three
    times slower. The API key comes from
    ``GENREC_API_KEY`` or the file's first line, never from the command line (where every user of the
    machine can read it in the process list).
    Beyond a loopback address without a key, catalogue changes are refused, with a warning. Catalogue
    changes are recorded in ``--journal`` (default ``DIR/catalogue_changes.jsonl``) and replayed at
    the next start (:mod:`genrec.journal`)."""
    import uvicorn

    from genrec.batcher_process import BatcherProcess
    from genrec.config import parse_flags
    from genrec.export import is_export
    from genrec.run_folder import finished_run
    from genrec.serve import checked_auth, create_app

    _, flags = parse_flags(argv, text=frozenset({"run", "host", "journal", "api_key_file"}))
    if "run" not in flags:
        raise GenrecError("serve needs --run=DIR (a finished run's folder)")
    if "api_key" in flags:
        raise GenrecError(
            "--api_key would show the key to every user of this machine (process list, shell history): "
            "set GENREC_API_KEY or pass --api_key_file=PATH"
        )
    run_dir, host = Path(str(flags.pop("run"))), str(flags.pop("host", "127.0.0.1"))
    journal = Path(str(flags.pop("journal", run_dir / CATALOGUE_CHANGES)))
    port, max_batch = count_flag(flags, "port", 8000, 0), count_flag(flags, "max_batch", 64, 1)
    if port > 65535:
        raise GenrecError(f"--port must be a TCP port, 0 (any free one) to 65535, got {port}")
    max_wait_ms = number_flag(flags, "max_wait_ms", 0.0, 0.0)
    threads = count_flag(flags, "threads", max(1, cores() - 1), 1)
    max_body = number_flag(flags, "max_body_mb", 16.0, 0.001)
    auth = str(flags.pop("auth", "changes"))
    api_key = api_key_of(flags.pop("api_key_file", None))
    loopback = is_loopback(host)
    if not loopback and not api_key:
        print(
            f"genrec: warning: serving on {host} beyond this machine without an API key: anyone who reaches "
            f"port {port} can ask for recommendations, and catalogue changes are refused (set GENREC_API_KEY "
            "or --api_key_file)",
            file=sys.stderr,
        )
    if not is_export(run_dir):
        finished_run(run_dir)  # at once, before a process starts to load it
    checked_auth(auth, api_key)
    batcher = BatcherProcess(run_dir, flags, max_batch, max_wait_ms, journal, threads)
    app = create_app(batcher, api_key=api_key, auth=auth, open_changes=loopback, max_body_bytes=int(max_body * 2**20))
    uvicorn.run(app, host=host, port=port, log_level="info")
    return 0


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def api_key_of(path: object) -> str | None:
    """The server's key: the first line of ``path``, else ``GENREC_API_KEY``, else none."""
    if path is None:
        return os.environ.get("GENREC_API_KEY") or None
    try:
        key = (
            Path(str(path)).read_text(encoding="utf-8").splitlines()[0].strip()
            if Path(str(path)).stat().st_size
            else ""
        )
    except (OSError, UnicodeDecodeError) as exc:
        raise GenrecError(f"--api_key_file: cannot read {path} ({exc})") from None
    if len(key) < 16:
        raise GenrecError(f"--api_key_file: the key in {path} must be at least 16 characters (its first line)")
    return key


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
