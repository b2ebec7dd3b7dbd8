"""``genrec evaluate``: a finished run's or a checkpoint's metrics on validation and test."""

from __future__ import annotations

import json
from pathlib import Path

from genrec.cache import atomic_write_text
from genrec.commands.tables import results_table
from genrec.config import load_config
from genrec.errors import GenrecError
from genrec.run_folder import BEST, CONFIG, RESULTS, finished_run


def cmd_evaluate(argv: list[str]) -> int:
    """``genrec evaluate --run=DIR`` (its ``best.pt`` under its own ``config.yaml``) or
    ``--checkpoint=PATH`` (under the settings the checkpoint records, or under ``--model`` /
    ``--config`` when given); other flags change how it is evaluated or where its data is. The
    evaluation's folder is written first (so an unwritable output fails before the work) and removed
    if the evaluation fails."""
    from genrec.evaluation import Catalogue, Evaluator
    from genrec.pipeline import load_trained, run_directory

    flags, settings = evaluation_settings(argv)
    config = load_config(flags, **settings)
    if config.model is None or config.checkpoint is None:
        raise GenrecError("evaluate needs --run=DIR, or --checkpoint=PATH (best.pt or last.pt of a run)")
    with run_directory(config, "evaluate") as directory:
        model, interactions, split = load_trained(config, Path(config.checkpoint))
        evaluator = Evaluator.from_config(
            config, Catalogue.of(interactions, config.category_level), next(model.parameters()).device
        )
        results = {
            name: evaluator.test(model, examples)[0]
            for name, examples in (("valid", split.valid), ("test", split.test))
        }
        results["num_beams"] = evaluator.widths(model)["num_beams"]
        atomic_write_text(directory / RESULTS, json.dumps(results, indent=2))
    print(results_table(results))
    print(f"results and resolved config: {directory}")
    return 0


def evaluation_settings(argv: list[str]) -> tuple[list[str], dict]:
    """The flags and settings ``evaluate`` loads its configuration from: ``--run=DIR`` stands for
    ``--config=DIR/config.yaml --checkpoint=DIR/best.pt``; a ``--checkpoint`` alone (no ``--model``, no
    ``--config``) brings the settings it was trained with, below the other flags."""
    from genrec.checkpoint import read_checkpoint
    from genrec.config import parse_flags

    config_file, flags = parse_flags(argv, text=frozenset({"run", "checkpoint"}))
    if "run" in flags:
        directory = Path(flags.pop("run"))
        if config_file is not None or "checkpoint" in flags:
            raise GenrecError(
                "--run=DIR evaluates DIR/best.pt under DIR/config.yaml: leave out --config and --checkpoint"
            )
        finished_run(directory)
        return [f"--config={directory / CONFIG}", f"--checkpoint={directory / BEST}"], flags
    if "checkpoint" in flags and "model" not in flags and config_file is None:
        recorded = read_checkpoint(Path(flags["checkpoint"]))["identity"]["settings"]
        return argv, {key: value for key, value in recorded.items() if key not in flags}
    return argv, {}
