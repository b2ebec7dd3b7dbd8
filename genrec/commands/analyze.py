"""``genrec analyze tree | beams | diversity | coldstart``: the analyses of finished runs, each
written as JSON lines and a figure.

The analyses are a registry: each is a function decorated with ``@analysis("<name>")``, which makes
it ``genrec analyze <name>`` (its docstring is its ``--help``); a new one is one decorated function
here (over its module of :mod:`genrec.analysis`) and its line in the command list."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from genrec.cache import atomic_write_text
from genrec.commands.flags import count_flag, list_flag, run_folders
from genrec.commands.tables import format_table

ANALYSES: dict[str, Callable[[list[str]], int]] = {}


def analysis(name: str) -> Callable[[Callable[[list[str]], int]], Callable[[list[str]], int]]:
    """Register the decorated function as ``genrec analyze <name>``."""

    def register(function: Callable[[list[str]], int]) -> Callable[[list[str]], int]:
        ANALYSES[name] = function
        return function

    return register


@analysis("tree")
def cmd_analyze_tree(argv: list[str]) -> int:
    """``genrec analyze tree RUN_DIR ... [--users=512] [--pairs=1024] [--seed=0] [--output=DIR]``; other
    flags change where a run's data and caches are (e.g. ``--data_dir``). Writes ``tree.jsonl`` (per run
    and distance), ``tree_pairs.jsonl`` (every sampled pair), ``tree.png`` / ``.svg`` and, for latent-token
    runs, ``tree_latent.png`` / ``.svg`` (latent-token use) to ``--output``
    (default: an ``analysis`` folder beside the first run)."""
    from genrec.analysis import tree_analysis
    from genrec.figures import latent_usage_figure, tree_correlation_figure
    from genrec.run import load_run

    directories, flags = run_folders(argv, "analyze tree")
    n_users, per_distance, seed = (
        count_flag(flags, key, default, least)
        for key, default, least in (("users", 512, 2), ("pairs", 1024, 1), ("seed", 0, 0))
    )
    output = Path(flags.pop("output", directories[0].parent / "analysis"))
    records, pair_records, rows, summaries = [], [], {}, {}
    for directory in directories:
        run = load_run(directory, **flags)
        label = run.label if run.label not in rows else f"{run.label} ({directory.name})"
        pair_rows, by_distance, summary = tree_analysis(run, n_users, per_distance, seed)
        rows[label], summaries[label] = pair_rows, by_distance
        head = {"run": str(directory), "label": label, "model": run.config.model, "seed": run.config.seed}
        records.append({**head, "kind": "run", **summary})
        records += [{**head, "kind": "distance", **entry} for entry in by_distance]
        pair_records += [{**head, **row} for row in pair_rows]
        print(
            f"{label}: Kendall tau (distance, correlation) {summary['kendall_tau']:+.3f} over {summary['pairs']} pairs"
        )
        print(
            format_table(
                [{k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in entry.items()} for entry in by_distance],
                list(by_distance[0]),
            )
        )
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output / "tree.jsonl", "".join(json.dumps(record) + "\n" for record in records))
    atomic_write_text(output / "tree_pairs.jsonl", "".join(json.dumps(record) + "\n" for record in pair_records))
    tree_correlation_figure(rows, summaries, output / "tree")
    latent = {
        record["label"]: record for record in records if record["kind"] == "run" and "latent_usage_top10" in record
    }
    if latent:  # how evenly each latent-token run uses its latent tokens
        latent_usage_figure(latent, output / "tree_latent")
    print(f"tree.jsonl, tree_pairs.jsonl and tree.png / tree.svg{' / tree_latent.*' * bool(latent)}: {output}")
    return 0


@analysis("beams")
def cmd_analyze_beams(argv: list[str]) -> int:
    """``genrec analyze beams RUN_DIR ... [--beams=10,20,50,100,200,500] [--aggregations=agg_sum,agg_max]
    [--threads=N] [--output=DIR]``; ``--aggregations`` rescores each latent-token run (Latte) under every
    listed method. Writes ``beams.jsonl`` and ``beams.png`` / ``.svg`` to ``--output`` (default: an
    ``analysis`` folder beside the first run)."""
    from genrec.analysis import beam_sweep
    from genrec.figures import beam_widths_figure
    from genrec.run import load_run

    directories, flags = run_folders(argv, "analyze beams")
    beams = list_flag(flags, "beams", "10,20,50,100,200,500", int)
    aggregations = list_flag(flags, "aggregations", "", str)
    output = analysis_flags(flags, directories)
    rows = []
    for directory in directories:
        run = load_run(directory, **flags)
        latent = run.model.latent_tokens
        for aggregation in aggregations if latent and aggregations else [None]:
            rows += beam_sweep(run, beams, aggregation)
    write_analysis(
        rows,
        [
            "label",
            "aggregation",
            "beam",
            "recall@10",
            "ndcg@10",
            "pruned",
            "beam_items",
            "short_lists",
            "s_per_1k_users",
            "top10_overlap_widest",
        ],
        output,
        "beams",
        beam_widths_figure,
    )
    return 0


@analysis("diversity")
def cmd_analyze_diversity(argv: list[str]) -> int:
    """``genrec analyze diversity RUN_DIR ... [--settings="num_beams=10; groups=5,num_beams=10; prefix_cap=1;
    mmr=0.7"] [--users=N] [--seed=0] [--threads=N] [--output=DIR]``: each run's test lists under each
    setting (``;``-separated; default :data:`genrec.analysis.diversity.DEFAULT_SETTINGS` plus the plain
    list), scored for accuracy and spread. Writes ``diversity.jsonl`` and ``diversity.png`` / ``.svg``."""
    from genrec.analysis.diversity import DEFAULT_SETTINGS, diversity_sweep, parse_settings
    from genrec.figures import diversity_tradeoff_figure
    from genrec.run import load_run

    directories, flags = run_folders(argv, "analyze diversity")
    settings = parse_settings(str(flags.pop("settings", "; " + DEFAULT_SETTINGS)))
    users = count_flag(flags, "users", 0, 0) or None
    seed = count_flag(flags, "seed", 0, 0)
    output = analysis_flags(flags, directories)
    rows = []
    for directory in directories:
        run = load_run(directory, **flags)
        beams = run.model.returns_beams
        if not beams:  # a full ranking has no beam: diverse search and plain lists at other widths do not apply
            settings_here = [(d, b) for d, b in settings if d.groups == 1 and (d.reranks or b is None)]
        rows += diversity_sweep(run, settings if beams else settings_here, users, seed)
    write_analysis(
        rows,
        [
            "label",
            "setting",
            "beam",
            "ndcg@10",
            "recall@10",
            "coverage@10",
            "category_entropy@10",
            "first_tokens@10",
            "s_per_1k_users",
        ],
        output,
        "diversity",
        diversity_tradeoff_figure,
    )
    return 0


@analysis("coldstart")
def cmd_analyze_coldstart(argv: list[str]) -> int:
    """``genrec analyze coldstart RUN_DIR ... [--candidates=N] [--threads=N] [--output=DIR]`` for runs
    trained with ``--cold_items``: adds the held-out items to each run and scores the run, the
    LIGER-style hybrid and content alone on the users whose target was held out and on the others.
    Writes ``coldstart.jsonl`` and ``coldstart.png`` / ``.svg``."""
    from genrec.analysis.coldstart import cold_start_evaluation
    from genrec.figures import cold_start_figure
    from genrec.run import load_run

    directories, flags = run_folders(argv, "analyze coldstart")
    candidates = count_flag(flags, "candidates", 0, 0) or None
    output = analysis_flags(flags, directories)
    rows = []
    for directory in directories:
        rows += cold_start_evaluation(load_run(directory, **flags), candidates)
    write_analysis(
        rows,
        ["label", "seed", "users", "n_users", "ranker", "recall@10", "ndcg@10"],
        output,
        "coldstart",
        cold_start_figure,
    )
    return 0


def analysis_flags(flags: dict, directories: list[Path]) -> Path:
    """Apply ``--threads`` and return ``--output`` (default: an ``analysis`` folder beside the first run)."""
    if "threads" in flags:
        import torch

        torch.set_num_threads(count_flag(flags, "threads", 1, 1))
    return Path(flags.pop("output", directories[0].parent / "analysis"))


def write_analysis(rows: list[dict], columns: list[str], output: Path, name: str, figure: Callable) -> None:
    """Print the rows as a table, write them as ``name.jsonl`` and their figure as ``name.png`` / ``.svg``."""
    print(format_table(rows, columns))
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output / f"{name}.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    figure(rows, output / name)
    print(f"{name}.jsonl and {name}.png / {name}.svg: {output}")
