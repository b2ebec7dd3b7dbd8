"""``genrec data stats | download | export``: a dataset's figures, its official files, and its tables
in the format of your own data."""

from __future__ import annotations

from pathlib import Path

from genrec.config import load_config
from genrec.errors import GenrecError


def cmd_stats(argv: list[str]) -> int:
    """``genrec data stats`` and the dataset's flags: users, items, interactions, sequence lengths and
    (with timestamps) the time range, after the dataset's filters."""
    from genrec.pipeline import load_interactions

    stats = load_interactions(load_config(argv)).stats()
    for key, value in stats.items():
        print(f"{key:>16}: {value:,}" if isinstance(value, int) else f"{key:>16}: {value}")
    return 0


def cmd_download(argv: list[str]) -> int:
    """``genrec data download`` and the dataset's flags: fetch its official files that are missing from
    ``--data_dir`` (needs network; every other command runs offline)."""
    from genrec import datasets

    config = load_config(argv)
    module = datasets.get(config.dataset)
    if not hasattr(module, "download_files"):
        raise GenrecError(f"dataset {config.dataset} has no official download; see the README for its files")
    written = module.download_files(config)
    print("\n".join(str(p) for p in written) if written else "all files already present")
    return 0


def cmd_export(argv: list[str]) -> int:
    """``genrec data export --to=DIR [--format=csv]`` and the dataset's flags: ``events.<format>``
    and ``items.<format>`` that ``--dataset=Interactions`` reads back to the same data."""
    from genrec.config import parse_flags
    from genrec.datasets.Interactions import export
    from genrec.datasets.tables import WRITABLE
    from genrec.pipeline import load_interactions

    config_file, flags = parse_flags(argv)
    if "to" not in flags:
        raise GenrecError("data export needs --to=DIR (the folder that receives events.csv and items.csv)")
    folder, fmt = Path(str(flags.pop("to"))), str(flags.pop("format", "csv"))
    if fmt not in WRITABLE:
        raise GenrecError(f"--format={fmt}: one of {', '.join(WRITABLE)}")
    config = load_config(["--config", str(config_file)] if config_file else [], **flags)
    interactions = load_interactions(config)
    for path in export(interactions, folder, fmt):
        print(path)
    if interactions.times is None:
        print(f"{interactions.name} has no interaction times: the rows are in order; read them with --time_column=null")
    return 0
