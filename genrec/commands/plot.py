"""``genrec plot``: learning curves of finished or running runs."""

from __future__ import annotations

from pathlib import Path

from genrec.commands.flags import dataset_of, run_folders
from genrec.errors import GenrecError


def cmd_plot(argv: list[str]) -> int:
    """``genrec plot RUN_DIR ... [--output=DIR]``: the learning curves of finished or running runs
    (validation NDCG@10 / Recall@10 against epochs and seconds, training loss) as ``curves.png`` /
    ``.svg`` (default: in the first run's folder)."""
    import yaml

    from genrec.figures import run_curves_figure
    from genrec.run_folder import CONFIG, METRICS, read_epochs

    directories, flags = run_folders(argv, "plot")
    output = Path(flags.pop("output", directories[0]))
    if flags:
        raise GenrecError(
            f"plot takes RUN_DIR ... and --output=DIR; unknown flag(s): {', '.join('--' + k for k in flags)}"
        )
    runs: dict[str, list[dict]] = {}
    several = len({dataset_of(directory) for directory in directories}) > 1
    for directory in directories:
        settings = yaml.safe_load((directory / CONFIG).read_text()) or {}
        label = f"{settings.get('model', directory.name)} seed {settings.get('seed', '?')}"
        label += f" on {dataset_of(directory)}" if several else ""
        if not (directory / METRICS).is_file():
            raise GenrecError(f"{directory} has no metrics.jsonl yet: it has not finished its first epoch")
        runs[label if label not in runs else directory.name] = read_epochs(directory)
    output.mkdir(parents=True, exist_ok=True)
    run_curves_figure(runs, output / "curves")
    print(f"curves.png / curves.svg: {output}")
    return 0
