"""``genrec compare``: several models x seeds on one dataset, trained and evaluated identically.

Each (model, seed) run lives in ``<output_dir>/compare/<dataset>[-<category>]/<model>-seed<seed>-<digest>``,
where the digest covers the whole resolved configuration except where files go (and settings added
later, at the value that keeps the earlier behaviour: see ``ADDED_KEYS``). A finished run
(``results.json``) is reused and an interrupted one resumed from its ``last.pt``, so running a
comparison again only trains what is missing, and changing any setting trains afresh.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from genrec.cache import atomic_write_text, digest
from genrec.checkpoint import LOCATION_KEYS
from genrec.config import keys_of_other_models, load_config, parse_flags, read_yaml
from genrec.errors import ConfigError, GenrecError
from genrec.provenance import source_commit

log = logging.getLogger(__name__)

# Settings added after runs had been named, with the value that reproduces what ran before them: at
# that value they stay out of a run's identity, so a new option does not orphan finished runs.
# (`duplicates`: earlier runs kept every interaction; the file datasets now default to `drop`, so
# their runs made before it are trained again once, though their data had no duplicates.)
ADDED_KEYS = {"exclude_seen": False, "lora_rank": 0, "lora_alpha": 16.0, "duplicates": "keep"}
ACCURACY = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")
# Reported when every run of a model has them (older runs, or models without beams, may not).
DIVERSITY = ("coverage@10", "entropy@10", "category_entropy@10", "pruned", "invalid@10")


def parse_seeds(value: Any, base: int) -> list[int]:
    """``3`` means three seeds from the configured ``seed`` on; ``1,2,3`` (or a YAML list) names them."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ConfigError(f"--seeds must be at least 1, got {value}")
        return [base + i for i in range(value)]
    parts = value if isinstance(value, list) else str(value).split(",")
    try:
        seeds = [int(str(p).strip()) for p in parts]
    except ValueError:
        raise ConfigError(f"--seeds takes a count (3) or a list of seeds (1,2,3), got {value!r}") from None
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds lists a seed twice: {value!r}")
    return seeds


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
    settings = config.model_dump(mode="json")
    return digest({k: v for k, v in settings.items()
                   if k not in LOCATION_KEYS and not (k in ADDED_KEYS and v == ADDED_KEYS[k])})[:10]


def changed_model_settings(config) -> dict[str, dict[str, Any]]:
    """The model's own settings (its ``config.yaml``) that the file, flags or variant changed: a key
    such as ``num_layers`` in a file shared by several models sizes every model that declares it,
    which a reader of the table would not guess."""
    from genrec import models

    settings = config.model_dump(mode="json")
    return {key: {"value": settings[key], "default": default}
            for key, default in read_yaml(models.config_file(config.model)).items() if settings[key] != default}


def run_one(config) -> tuple[dict, Path]:
    """Train (or reuse / resume) one configured run; its results plus the seconds it trained."""
    from genrec.pipeline import train

    directory = Path(config.output_dir) / config.run_name
    if (directory / "results.json").is_file():
        log.info("reusing %s", directory)
        results = read_results(directory / "results.json")
    else:
        if (directory / "last.pt").is_file():
            config = config.model_copy(update={"checkpoint": directory / "last.pt"})
        elif directory.is_dir():
            log.info("restarting %s (stopped before its first checkpoint)", directory)
            shutil.rmtree(directory)
        results, directory = train(config)
    results["train_seconds"] = training_seconds(directory / "metrics.jsonl")
    return results, directory


def read_results(path: Path) -> dict:
    """A finished run's ``results.json``; a damaged one is one error line saying how to retrain."""
    try:
        results = json.loads(path.read_text())
        if not isinstance(results, dict) or not all(isinstance(results.get(k), dict) for k in ("valid", "test")):
            raise ValueError("expected an object with 'valid' and 'test' metrics")
        return results
    except (ValueError, UnicodeDecodeError) as exc:
        raise GenrecError(f"{path}: damaged results ({exc}); delete {path.parent} to train that run again") from None


def training_seconds(path: Path) -> float:
    """Seconds of every epoch in a run's ``metrics.jsonl`` (validation included)."""
    try:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise GenrecError(f"{path}: missing; delete {path.parent} to train that run again") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise GenrecError(f"{path}: damaged log ({exc}); delete {path.parent} to train that run again") from None
    return sum(record.get("seconds", 0.0) for record in records if isinstance(record, dict))


def mean_std(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=float)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0}


def summarize(runs: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Per model: mean and sample std over seeds of the test metrics, training and inference time."""
    by_model: dict[str, list[dict]] = {}
    for run in runs:
        by_model.setdefault(run["model"], []).append(run)
    summary = {}
    for model, group in by_model.items():
        test = [run["results"]["test"] for run in group]
        reported = [name for name in (*ACCURACY, *DIVERSITY) if all(name in t for t in test)]
        summary[model] = {name: mean_std([t[name] for t in test]) for name in reported}
        summary[model]["train_seconds"] = mean_std([run["results"]["train_seconds"] for run in group])
        summary[model]["test_seconds_per_1k_users"] = mean_std([1000 / t["users_per_s"] for t in test])
        summary[model]["best_epoch"] = mean_std([run["results"]["best_epoch"] for run in group])
    return summary


def markdown_table(summary: dict, seeds: list[int]) -> str:
    def cell(stat: dict[str, float] | None, digits: int = 4) -> str:
        if stat is None:
            return "—"
        return f"{stat['mean']:.{digits}f}" + (f" ± {stat['std']:.{digits}f}" if len(seeds) > 1 else "")

    columns = [*((m, 4) for m in ACCURACY), ("coverage@10", 4), ("entropy@10", 2), ("category_entropy@10", 2), ("pruned", 4),
               ("best_epoch", 1), ("train_seconds", 0), ("test_seconds_per_1k_users", 2)]
    header = ["model", "Recall@5", "Recall@10", "NDCG@5", "NDCG@10", "coverage@10", "entropy@10 (bits)", "category entropy@10",
              "pruned by the beam", "best epoch", "train s", "test s / 1k users"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, stats in summary.items():
        lines.append("| " + " | ".join([model, *(cell(stats.get(name), digits) for name, digits in columns)]) + " |")
    return "\n".join(lines)


def markdown_changes(changes: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = ["Each model's own settings (`genrec/models/<Model>/config.yaml`) that the file, flags or variant changed, "
             "its default in brackets:", ""]
    for model, changed in changes.items():
        listed = ", ".join(f"`{key}` {c['value']} ({c['default']})" for key, c in changed.items())
        lines.append(f"- {model}: {listed or 'none'}")
    return "\n".join(lines)


def compare(argv: list[str]) -> tuple[str, Path]:
    """Run the comparison; returns the Markdown report and the folder holding it (and the JSON)."""
    config_file, flags = parse_flags(argv)
    specs = [n.strip() for n in str(flags.pop("models", "")).split(",") if n.strip()]
    if not specs:
        raise ConfigError("compare needs --models, e.g. --models=SASRec,SASRec:loss_type=bce,TIGER,PSID,Latte")
    if len(set(specs)) != len(specs):
        raise ConfigError(f"--models lists a model twice: {','.join(specs)}")
    if "model" in flags:
        raise ConfigError("compare takes --models (a list), not --model")
    seeds_flag = flags.pop("seeds", 1)
    commit = source_commit()
    file_args = [f"--config={config_file}"] if config_file else []
    variants = [(spec, *parse_variant(spec)) for spec in specs]
    names = [name for _, name, _ in variants]

    runs, changes, folder = [], {}, None
    for label, name, overrides in variants:
        settings = {**flags, **overrides, "model": name}
        base = load_config(file_args, ignore=keys_of_other_models(name, names), **settings)
        changes[label] = changed_model_settings(base)
        for seed in parse_seeds(seeds_flag, base.seed):
            config = load_config(file_args, ignore=keys_of_other_models(name, names), **{**settings, "seed": seed})
            slug = "-".join(str(p) for p in (config.dataset, getattr(config, "category", None)) if p)
            folder_name = label.replace(":", "-")
            config = config.model_copy(update={"run_name": f"compare/{slug}/{folder_name}-seed{seed}-{run_identity(config)}"})
            results, directory = run_one(config)
            runs.append({"model": label, "seed": seed, "directory": str(directory), "results": results})
            folder = directory.parent
    seeds = sorted({run["seed"] for run in runs})
    summary = summarize(runs)
    trained_by = sorted({run["results"].get("commit", "unknown") for run in runs})
    command = " ".join(["genrec compare", *argv])
    settings = f"\n\n`{config_file}`:\n\n```yaml\n{config_file.read_text().strip()}\n```" if config_file else ""
    runs_at = ", ".join(f"`{c}`" for c in trained_by)
    report = (f"`{command}`\n\ncommit `{commit}` (runs trained at {runs_at}); seeds {', '.join(map(str, seeds))}; test metrics "
              f"of the best validation checkpoint (mean ± sample std over seeds); train s includes validation; every run's "
              f"resolved `config.yaml` is in its folder under `{folder}`.{settings}\n\n{markdown_table(summary, seeds)}\n\n"
              f"{markdown_changes(changes)}\n")
    atomic_write_text(folder / "comparison.md", report)
    atomic_write_text(folder / "comparison.json", json.dumps(
        {"command": command, "commit": commit, "seeds": seeds, "config_file": yaml.safe_load(config_file.read_text()) if config_file else None,
         "flags": flags, "changed_model_settings": changes, "summary": summary, "runs": runs}, indent=2, default=str))
    return report, folder
