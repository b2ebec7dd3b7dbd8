"""``genrec export``: a finished run as a self-contained folder (:mod:`genrec.export`)."""

from __future__ import annotations

from pathlib import Path

from genrec.errors import GenrecError


def cmd_export(argv: list[str]) -> int:
    """``genrec export --run=DIR --to=DIR [--data_dir=... --cache_dir=...]``: write the run's weights
    (safetensors), its interactions and item table, semantic IDs, quantizer and item vectors, config,
    test metrics and a model card into the new folder ``--to``, which :func:`genrec.load_run`,
    ``genrec recommend`` and ``genrec serve`` load with no dataset files and no cache. ``--data_dir``
    and ``--cache_dir`` say where the run's data and caches are, when not where it was trained."""
    from genrec.config import parse_flags
    from genrec.export import export_run

    _, flags = parse_flags(argv, text=frozenset({"run", "to", "data_dir", "cache_dir"}))
    if "run" not in flags or "to" not in flags:
        raise GenrecError("export needs --run=DIR (a finished run) and --to=DIR (a new folder)")
    run, to = Path(str(flags.pop("run"))), Path(str(flags.pop("to")))
    unknown = sorted(set(flags) - {"data_dir", "cache_dir", "device"})
    if unknown:
        raise GenrecError(f"export takes --run, --to, --data_dir, --cache_dir and --device, not --{unknown[0]}")
    written = export_run(run, to, **flags)
    size = sum(p.stat().st_size for p in written.rglob("*") if p.is_file())
    print(f"exported {run} to {written} ({size / 2**20:.1f} MiB); load it with genrec.load_run({str(written)!r})")
    return 0
