"""Command-line values and run folders as the commands read them: each bad value is one line naming its flag."""

from __future__ import annotations

import math
from pathlib import Path

from genrec.errors import GenrecError
from genrec.run_folder import CONFIG


def number_flag(flags: dict, key: str, default: float, least: float) -> float:
    """A finite number >= ``least`` (``nan``, infinities and text are refused, naming the flag)."""
    value = flags.pop(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < least:
        raise GenrecError(f"--{key} must be a finite number >= {least:g}, got {value!r}")
    return float(value)


def count_flag(flags: dict, key: str, default: int, least: int) -> int:
    value = flags.pop(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise GenrecError(f"--{key} must be an integer >= {least}, got {value!r}")
    return value


def list_flag(flags: dict, key: str, default: str, kind: type) -> list:
    raw = flags.pop(key, default)
    try:
        return [kind(part) for part in str(raw).split(",") if part.strip()]
    except ValueError:
        raise GenrecError(f"--{key} must be a comma-separated list, got {raw!r}") from None


def run_folders(argv: list[str], command: str) -> tuple[list[Path], dict]:
    """The positional run folders of ``genrec analyze ...`` / ``genrec plot`` and their ``--key=value``
    flags. A folder that is no run (a data or cache folder given by mistake) is refused by name; the
    analyses compare runs on one dataset and refuse runs of several, whose numbers would share a table
    and a figure while measuring different data."""
    from genrec.config import parse_flags

    directories = [Path(arg) for arg in argv if not arg.startswith("--")]
    if not directories:
        raise GenrecError(f"{command} needs the folders of runs, e.g. runs/compare/Synthetic/PSID-seed2024-*")
    for directory in directories:
        if not (directory / CONFIG).is_file():
            raise GenrecError(
                f"{directory} is not a run folder (it has no config.yaml): {command} reads the folders that "
                "genrec train, compare and finetune write"
            )
    if command.startswith("analyze"):
        datasets = {}
        for directory in directories:
            datasets.setdefault(dataset_of(directory), []).append(directory.name)
        if len(datasets) > 1:
            listed = "; ".join(f"{name}: {', '.join(names)}" for name, names in datasets.items())
            raise GenrecError(f"{command} compares runs on one dataset; these are runs of {len(datasets)} ({listed})")
    return directories, parse_flags([arg for arg in argv if arg.startswith("--")])[1]


def dataset_of(directory: Path) -> str:
    """The dataset a run folder was trained on, read from its ``config.yaml`` (no data loaded)."""
    import yaml

    settings = yaml.safe_load((directory / CONFIG).read_text()) or {}
    parts = [settings.get("dataset"), settings.get("category"), settings.get("interactions")]
    return "/".join(str(part) for part in parts if part)
