"""``genrec compare``: several models x seeds on one dataset, trained and evaluated identically.

Each (model, seed) run lives in ``<output_dir>/compare/<dataset>[-<category>]/<model>-seed<seed>-<digest>``,
where the digest covers the whole resolved configuration except where files go (and settings added
later, at the value that keeps the earlier behaviour: see :func:`genrec.checkpoint.added_values`). A finished run
(``results.json``) is reused and an interrupted one resumed from its ``last.pt``, so running a
comparison again only trains what is missing, and changing any setting trains afresh.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from genrec.cache import atomic_write_text, digest
from genrec.checkpoint import added_values, keys_with_role
from genrec.compare_report import (
    csv_table,
    latex_table,
    markdown_changes,
    markdown_differences,
    markdown_groups,
    markdown_table,
)
from genrec.compare_summary import (
    converged,
    group_curves,
    learning_curve,
    paired_differences,
    summarize,
    sweeps,
    target_groups,
)
from genrec.config import keys_of_other_models, load_config, parse_flags, read_yaml
from genrec.errors import ConfigError, GenrecError
from genrec.figures import comparison_figure, learning_curves_figure, sweep_figure
from genrec.provenance import source_commit
from genrec.ranking import list_length
from genrec.run_folder import BEST, CONFIG, FINETUNE, LAST, RESULTS, TEST_RANKS, read_epochs, read_results

log = logging.getLogger(__name__)


MAX_SEED_COUNT = 100  # a larger count is almost surely a seed meant as a list: --seeds=2026


def parse_seeds(value: Any, base: int) -> list[int]:
    """``3`` means three seeds from the configured ``seed`` on; ``1,2,3`` (or a YAML list) names them."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ConfigError(f"--seeds must be at least 1, got {value}")
        if value > MAX_SEED_COUNT:
            raise ConfigError(
                f"--seeds={value} asks for {value} seeds (a count); to train the one seed {value}, "
                f"write --seeds=[{value}]"
            )
        return [base + i for i in range(value)]
    parts = value if isinstance(value, list) else str(value).split(",")
    try:
        seeds = [int(str(p).strip()) for p in parts]
    except ValueError:
        raise ConfigError(f"--seeds takes a count (3) or a list of seeds (1,2,3), got {value!r}") from None
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds lists a seed twice: {value!r}")
    return seeds


def split_models(value: Any) -> list[str]:
    """``--models`` entries: split at the commas outside brackets (``PSID:vq_level_order=[2,0,1],Latte``)."""
    return [spec.strip() for spec in re.split(r",(?![^\[]*\])", str(value)) if spec.strip()]


def parse_variant(spec: str) -> tuple[str, dict[str, Any]]:
    """``SASRec`` or ``SASRec:loss_type=bce[:key=value...]``: a model and its own overrides, so one
    table can hold variants of a model (values parsed as YAML, like flags)."""
    name, *pairs = spec.split(":")
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, eq, raw = pair.partition("=")
        if not eq or not key:
            raise ConfigError(f"--models entry {spec!r}: expected Model:key=value, got {pair!r}")
        overrides[key] = yaml.safe_load(raw) if raw else ""
    return name, overrides


def run_identity(config) -> str:
    """The run name's digest of its settings: where files go left out, and so are settings added
    later at their ``since`` value, so a run named before they existed keeps its name."""
    settings, location, added = config.model_dump(mode="json"), keys_with_role(config, "location"), added_values(config)
    return digest({k: v for k, v in settings.items() if k not in location and not (k in added and v == added[k])})[:10]


def changed_model_settings(config) -> dict[str, dict[str, Any]]:
    """The model's own settings (its ``config.yaml``) that the file, flags or variant changed: a key
    such as ``num_layers`` in a file shared by several models sizes every model that declares it,
    which a reader of the table would not guess."""
    from genrec import models

    settings = config.model_dump(mode="json")
    return {
        key: {"value": settings[key], "default": default}
        for key, default in read_yaml(models.config_file(config.model)).items()
        if settings[key] != default
    }


def run_one(config) -> tuple[dict, Path]:
    """Train (or reuse / resume) one configured run; its results plus the seconds it trained. The
    run's folder is locked before anything is decided: a folder without a checkpoint is restarted by
    deleting it, which must never happen to one that another process is training."""
    from genrec.pipeline import train
    from genrec.run_lock import run_lock

    directory = Path(config.output_dir) / config.run_name
    with run_lock(directory):
        if (directory / RESULTS).is_file():
            log.info("reusing %s", directory)
            results = read_results(directory)
            warn_if_short_validation(config, results, directory)
        else:
            if (directory / LAST).is_file():
                config = config.model_copy(update={"checkpoint": directory / LAST})
            elif directory.is_dir():
                log.info("restarting %s (stopped before its first checkpoint)", directory)
                shutil.rmtree(directory)
            results, directory = train(config)
    epochs = read_epochs(directory)
    results["train_seconds"] = sum(record.get("seconds", 0.0) for record in epochs)
    results["curve"] = learning_curve(epochs)
    results["converged"] = converged(config, epochs, results["best_epoch"])
    return results, directory


def finetuned_run(directory: Path, config, runs: list[dict]) -> dict:
    """A ``genrec finetune`` run listed next to the comparison's (``--finetuned=DIR,...``): labelled
    by its parent's label (when the parent is in the comparison, else its folder) and its method
    (GRPO's rewards, DPO's beta and negatives)."""
    try:
        recipe = json.loads((directory / FINETUNE).read_text())
        tuned = yaml.safe_load((directory / CONFIG).read_text())
    except (OSError, ValueError) as exc:
        raise GenrecError(f"--finetuned={directory}: not a genrec finetune run ({exc})") from None
    if (tuned.get("dataset"), tuned.get("category")) != (config.dataset, getattr(config, "category", None)):
        raise GenrecError(
            f"--finetuned={directory} was trained on {tuned.get('dataset')} {tuned.get('category') or ''}, "
            f"not on this comparison's {config.dataset}"
        )
    parents = [run["model"] for run in runs if Path(run["directory"]).resolve() == Path(recipe["parent"]).resolve()]
    settings = recipe["settings"]
    if recipe["method"] == "grpo":
        method = "GRPO(" + ",".join(f"{name}:{weight:g}" for name, weight in settings["reward"].items()) + ")"
    else:
        method = f"DPO(beta={settings['beta']:g},{settings['negatives']} {settings['negative_source']} negatives)"
    results = read_results(directory)
    epochs = read_epochs(directory)
    results["train_seconds"] = sum(record.get("seconds", 0.0) for record in epochs)
    results["curve"] = learning_curve(epochs)
    results["converged"] = len(epochs) < recipe["settings"]["epochs"] or results["best_epoch"] < len(epochs)
    return {
        "model": f"{parents[0] if parents else Path(recipe['parent']).name} + {method}",
        "seed": tuned["seed"],
        "directory": str(directory),
        "results": results,
    }


def test_ranks(config, directory: Path) -> np.ndarray:
    """Each test user's target rank under the run's best checkpoint: saved by training, or (for
    runs trained before it was saved, or a damaged file) recomputed from ``best.pt`` and saved."""
    from genrec.evaluation import Catalogue, Evaluator
    from genrec.pipeline import load_trained
    from genrec.trainer import save_ranks

    path = directory / TEST_RANKS
    if path.is_file():
        try:
            ranks = np.load(path, allow_pickle=False)
            if ranks.ndim == 1 and np.issubdtype(ranks.dtype, np.integer):
                return ranks
        except (OSError, ValueError, EOFError):
            pass
        log.warning("%s is unreadable; computing it again from best.pt", path)
    model, interactions, split = load_trained(config.model_copy(update={"checkpoint": None}), directory / BEST)
    catalogue = Catalogue.of(interactions, config.category_level)
    _, ranks = Evaluator.from_config(config, catalogue, next(model.parameters()).device).test(model, split.test)
    save_ranks(path, ranks)
    return ranks


def warn_if_short_validation(config, results: dict, directory: Path) -> None:
    """A latent-token run trained before evaluation widened the beam (its results lack
    ``valid_num_beams``) may have been validated, and its checkpoint selected, on lists shorter than
    ten: say so, since reusing it keeps that handicap in the table."""
    items = list_length(tuple(config.metric_ks))
    needed = getattr(config, "n_latent_tokens", 0) * items
    if "valid_num_beams" not in results and needed > config.num_beams:
        log.warning(
            "%s was validated at num_beams=%d, which can hold fewer than %d items with %d latent tokens (trained "
            "before evaluation widened such beams to %d); delete the folder to train it again with fair validation",
            directory,
            config.num_beams,
            items,
            config.n_latent_tokens,
            needed,
        )


def compare(argv: list[str]) -> tuple[str, Path]:
    """Run the comparison; returns the Markdown report and the folder holding it (and the JSON)."""
    config_file, flags = parse_flags(argv)
    specs = split_models(flags.pop("models", ""))
    if not specs:
        raise ConfigError("compare needs --models, e.g. --models=SASRec,SASRec:loss_type=bce,TIGER,PSID,Latte")
    if len(set(specs)) != len(specs):
        raise ConfigError(f"--models lists a model twice: {','.join(specs)}")
    if "model" in flags:
        raise ConfigError("compare takes --models (a list), not --model")
    seeds_flag = flags.pop("seeds", 1)
    finetuned = [Path(part.strip()) for part in str(flags.pop("finetuned", "")).split(",") if part.strip()]
    commit = source_commit()
    file_args = [f"--config={config_file}"] if config_file else []
    variants = [(spec, *parse_variant(spec)) for spec in specs]
    names = [name for _, name, _ in variants]

    runs, ranks, changes, resolved, folder = [], [], {}, {}, None
    for label, name, overrides in variants:
        settings = {**flags, **overrides, "model": name}
        base = load_config(file_args, ignore=keys_of_other_models(name, names), **settings)
        changes[label] = changed_model_settings(base)
        resolved[label] = {
            key: value
            for key, value in base.model_dump(mode="json").items()
            if key not in (*keys_with_role(base, "location"), "seed")
        }
        for seed in parse_seeds(seeds_flag, base.seed):
            config = load_config(file_args, ignore=keys_of_other_models(name, names), **{**settings, "seed": seed})
            slug = "-".join(str(p) for p in (config.dataset, getattr(config, "category", None)) if p)
            folder_name = label.replace(":", "-")
            config = config.model_copy(
                update={"run_name": f"compare/{slug}/{folder_name}-seed{seed}-{run_identity(config)}"}
            )
            results, directory = run_one(config)
            runs.append({"model": label, "seed": seed, "directory": str(directory), "results": results})
            ranks.append((label, test_ranks(config, directory)))
            folder = directory.parent
    for directory in finetuned:
        run = finetuned_run(directory, config, runs)
        runs.append(run)
        ranks.append((run["model"], np.load(directory / TEST_RANKS, allow_pickle=False)))
    seeds = sorted({run["seed"] for run in runs})
    summary = summarize(runs)
    differences = paired_differences(ranks)
    groups = target_groups(config, ranks)
    swept = sweeps(resolved, summary, differences)
    trained_by = sorted({run["results"].get("commit", "unknown") for run in runs})
    command = " ".join(["genrec compare", *argv])
    settings = f"\n\n`{config_file}`:\n\n```yaml\n{config_file.read_text().strip()}\n```" if config_file else ""
    runs_at = ", ".join(f"`{c}`" for c in trained_by)
    report = (
        f"`{command}`\n\ncommit `{commit}` (runs trained at {runs_at}); seeds {', '.join(map(str, seeds))}; "
        f"test metrics of the best validation checkpoint (mean ± sample std over seeds); train s includes validation; "
        f"every run's resolved `config.yaml` is in its folder under `{folder}`.{settings}\n\n"
        f"{markdown_table(summary, seeds)}\n\n"
        + (f"{markdown_differences(differences, len(ranks[0][1]))}\n\n" if differences else "")
        + (f"{markdown_groups(groups)}\n\n" if groups else "")
        + f"{markdown_changes(changes)}\n"
    )
    atomic_write_text(folder / "comparison.md", report)
    atomic_write_text(folder / "comparison.csv", csv_table(summary))
    atomic_write_text(folder / "comparison.tex", latex_table(summary, seeds))
    learning_curves_figure(group_curves(runs), folder / "learning_curves")
    comparison_figure(
        summary, {model: summary[model]["converged"]["runs"] for model in summary}, differences, folder / "comparison"
    )
    for sweep in swept:
        sweep_figure(sweep, folder / f"sweep-{sweep['model']}-{sweep['key']}")
    atomic_write_text(
        folder / "comparison.json",
        json.dumps(
            {
                "command": command,
                "commit": commit,
                "seeds": seeds,
                "config_file": yaml.safe_load(config_file.read_text()) if config_file else None,
                "flags": flags,
                "changed_model_settings": changes,
                "summary": summary,
                "paired_ndcg@10": differences,
                "target_groups": groups,
                "sweeps": swept,
                "runs": runs,
            },
            indent=2,
            default=str,
        ),
    )
    return report, folder
