"""Command line: ``genrec <command> [--config FILE] [--key=value ...]``.

Every ``--key`` is a configuration key (see ``genrec/default.yaml`` and the dataset/model
``config.yaml`` files); ``genrec <command> --help`` lists them with their resolved values.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

from genrec import __version__
from genrec.cache import atomic_write_text
from genrec.config import describe, load_config
from genrec.errors import DataError, GenrecError
from genrec.provenance import source_commit

USAGE = """usage: genrec <command> [--config FILE] [--key=value ...]  (genrec <command> --help: its options)

commands:
  run             the main job (also: python main.py): train and test --model, or without a model
                  the data, split and semantic IDs with a summary
  train           train --model ({models}; --architecture=decoder for TIGER/PSID/Latte),
                  select on validation, test the best checkpoint
  evaluate        evaluate --checkpoint=PATH of --model on validation and test
  compare         train (or reuse) --models=A,B,... (variants: A:key=value) over --seeds=N (or 1,2,3 / [7])
                  on one dataset; write a Markdown + JSON table (mean ± std, training and inference time)
  data stats      users / items / interactions / sequence lengths of a dataset
  data download   fetch the official files of a dataset that are missing (needs network)
  data export     --to=DIR [--format=csv|tsv|jsonl|parquet]: the dataset as events + items files that
                  --dataset=Interactions reads back (your own data's format)
  sids            build (or load from cache) semantic IDs and report their quality
  recommend       --run=DIR and --history=ID,ID,... (or --input=histories.jsonl [--output=recs.jsonl]):
                  top --k raw item ids with scores from a trained run [--allow=ID,... --deny=ID,...
                  --category=NAME --exclude_seen=true --num_beams=N --diversity=...]
  serve           --run=DIR [--host=127.0.0.1] [--port=8000]: an HTTP JSON service (POST /recommend,
                  POST /items, DELETE /items/ID, POST /items/ID/restore, GET /health), concurrent requests
                  micro-batched; GENREC_API_KEY or --api_key_file guards catalogue changes (--auth=all: every
                  route); beyond 127.0.0.1 changes need the key
  analyze tree    RUN_DIR...: do items close in the semantic-ID tree get correlated probabilities?
                  (correlation and rank reversal per tree distance, Kendall tau; JSON lines + figure)
  analyze beams   RUN_DIR...: test beam models at several widths (accuracy, pruned targets, items in the
                  beam, seconds per 1,000 users, top-10 overlap with the widest); JSON lines + figure
  analyze diversity RUN_DIR...: accuracy against spread (coverage, category entropy) of the test lists
                  under diversity settings (diverse beam search, a cap per ID prefix, MMR); JSON lines + figure
  analyze coldstart RUN_DIR...: for runs trained with --cold_items: add the held-out items, score the run,
                  a LIGER-style hybrid and content alone on users whose target was held out; JSON lines + figure
  finetune        --run=DIR --method=grpo [--reward=relevance:1,validity:0.5 ...]: reward fine-tuning of a
                  TIGER / PSID / Latte run into a new run folder
  plot            RUN_DIR...: learning curves (validation NDCG@10 / Recall@10 against epochs and seconds, loss)
  config          print the fully resolved configuration

examples:
  genrec data stats --dataset=AmazonReviews2018 --category=Scientific --data_dir=../shared/data
  genrec train --model=PSID --dataset=Interactions --interactions=events.parquet --items=items.csv
  genrec sids --dataset=Synthetic --vq_method=rqkmeans --vq_collision=tiger
  genrec train --model=Latte --dataset=AmazonReviews2018 --category=Scientific --n_latent_tokens=8
  genrec compare --models=TIGER,PSID,Latte --seeds=3 --config=configs/quickstart.yaml
  genrec compare --models=SASRec,SASRec:loss_type=bce --dataset=AmazonReviews2014 --category=Beauty
  genrec recommend --run=runs/compare/Synthetic/PSID-seed2024-fe5f999765 --history=i00327,i00280 --k=5
  genrec analyze tree runs/compare/Synthetic/PSID-seed2024-* runs/compare/Synthetic/Latte-seed2024-* --users=512
"""


def usage() -> str:
    """The command list, with the models the registry finds."""
    from genrec import models

    return USAGE.format(models=", ".join(models.names()))


def format_table(rows: list[dict], columns: list[str]) -> str:
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


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


def sids_summary(report: dict) -> str:
    table = format_table(report["levels"], ["level", "utilisation", "collision_rate", "recon_error"])
    return (
        f"semantic IDs: {report['method']} on {report['embedding_source']} embeddings, {report['n_items']} items, "
        f"collision={report['collision']}\n{table}\n"
        f"colliding before resolution: {report['colliding_items']:.2%}  moved: {report['moved_items']}  "
        f"ID length: {report['id_length']}  unique: {report['unique']:.2%}"
    )


def cmd_sids(argv: list[str]) -> int:
    """``genrec sids`` and the dataset's and quantizer's flags: build (or load from the cache) the
    semantic IDs and report their quality (collisions before resolution, codebook use, moved items)."""
    from genrec.pipeline import load_split, run_directory
    from genrec.semantic_ids import semantic_ids

    config = load_config(argv)
    with run_directory(config, "sids") as directory:
        interactions, split = load_split(config)
        sids = semantic_ids(config, interactions, split)
        atomic_write_text(directory / "sids.json", json.dumps(sids.report, indent=2))
    print(sids_summary(sids.report))
    print(f"report and resolved config: {directory}")
    return 0


def results_table(results: dict) -> str:
    columns = ["split", *results["valid"]]  # every metric the evaluator reported, users_per_s last
    rows = [
        {"split": split, **{k: f"{v:.4f}" if k != "users_per_s" else f"{v:.0f}" for k, v in results[split].items()}}
        for split in ("valid", "test")
    ]
    return format_table(rows, columns)


def cmd_train(argv: list[str]) -> int:
    """``genrec train --model=NAME`` and any settings: train, select the best epoch on validation, test
    it; the run folder holds ``best.pt``, ``last.pt``, ``metrics.jsonl``, ``results.json`` and its
    resolved ``config.yaml``. ``--checkpoint=last.pt`` resumes a run; a weights-only ``best.pt`` is
    evaluated."""
    from genrec import models
    from genrec.pipeline import train
    from genrec.trainer import is_resumable

    config = load_config(argv)
    if config.model is None:
        raise GenrecError(f"no model chosen; pass --model=<{'|'.join(models.names())}>")
    if config.checkpoint is not None and not is_resumable(Path(config.checkpoint)):
        return cmd_evaluate(argv)
    results, directory = train(config)
    if int(os.environ.get("RANK", "0")):  # a data-parallel process other than rank 0: rank 0 reports
        return 0
    print(f"{config.model} on {config.dataset}: best epoch {results['best_epoch']}, beam {results['num_beams']}")
    print(results_table(results))
    print(f"checkpoints, metrics.jsonl, results.json and resolved config: {directory}")
    return 0


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
        atomic_write_text(directory / "results.json", json.dumps(results, indent=2))
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
        if not (directory / "config.yaml").is_file() or not (directory / "best.pt").is_file():
            raise GenrecError(f"{directory} is not a finished run (it needs config.yaml and best.pt)")
        return [f"--config={directory / 'config.yaml'}", f"--checkpoint={directory / 'best.pt'}"], flags
    if "checkpoint" in flags and "model" not in flags and config_file is None:
        recorded = read_checkpoint(Path(flags["checkpoint"]))["identity"]["settings"]
        return argv, {key: value for key, value in recorded.items() if key not in flags}
    return argv, {}


def cmd_compare(argv: list[str]) -> int:
    """``genrec compare --models=A,B,... [--seeds=3 | --seeds=[2024,2025]]`` and shared flags: train (or
    reuse, or resume from ``last.pt``) every model and seed on one dataset; a variant is
    ``Model:key=value:key=value``. Writes ``comparison.md`` / ``.json``, mean ± std over seeds, paired
    bootstrap intervals over users, learning curves, and the sweep figure when the variants differ in
    one number."""
    from genrec.compare import compare

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise GenrecError(
            "genrec compare trains its runs one after another in one process; launch genrec train "
            "under torchrun for data-parallel training"
        )
    report, folder = compare(argv)
    print(report)
    print(f"comparison.md (also .csv, .tex), comparison.json and the runs: {folder}")
    return 0


def cmd_run(argv: list[str]) -> int:
    """``genrec run`` (also ``python main.py``): with ``--model``, ``genrec train``; without, the data,
    split and semantic IDs with a summary."""
    from genrec.pipeline import load_split, run_directory
    from genrec.semantic_ids import semantic_ids

    config = load_config(argv)
    if config.model is not None:
        return cmd_train(argv)
    with run_directory(config, "run") as directory:
        interactions, split = load_split(config)
        sids = semantic_ids(config, interactions, split)
        summary = {
            "data": interactions.stats(),
            "split": {
                "train_examples": len(split.train),
                "valid_users": len(split.valid),
                "test_users": len(split.test),
            },
            "semantic_ids": sids.report,
        }
        atomic_write_text(directory / "summary.json", json.dumps(summary, indent=2))
    print(format_table([summary["data"]], ["dataset", "users", "items", "interactions", "avg_length"]))
    print(format_table([summary["split"]], list(summary["split"])))
    print(sids_summary(sids.report))
    print(f"outputs and resolved config: {directory}")
    return 0


def cmd_recommend(argv: list[str]) -> int:
    """``genrec recommend --run=DIR (--history=ID,ID,... | --input=FILE.jsonl [--output=FILE.jsonl])
    [--k=10] [--exclude_seen=true] [--num_beams=N] [--on_unknown=skip] [--batch_size=N]
    [--allow=ID,ID,...] [--deny=ID,ID,...] [--category=NAME]
    [--diversity="groups=5,penalty=1" | "prefix_cap=1" | "mmr=0.7" ...]``; other flags go to
    :func:`genrec.load_run` (``--data_dir``, ``--device`` ...). An input line is ``{"history": [ids],
    "id": anything, "k": its own list length}``; each output line ``{"id", "items", "scores"}``, in
    input order. A bad line, or an unknown item under ``--on_unknown=error``, names its line. The
    restrictions (``allow`` / ``deny`` / ``category``) are those of :meth:`genrec.Run.recommend` and
    of ``POST /recommend``, for every line."""
    from genrec.analysis.diversity import parse_settings
    from genrec.config import parse_flags
    from genrec.run import load_run
    from genrec.runtime import progress

    _, flags = parse_flags(argv, text=frozenset({"run", "history", "input", "output", "allow", "deny", "category"}))
    if "run" not in flags or ("history" in flags) == ("input" in flags):
        raise GenrecError("recommend needs --run=DIR and one of --history=ID,ID,... or --input=FILE.jsonl")
    options = {
        "k": count_flag(flags, "k", 10, 1),
        "exclude_seen": bool(flags.pop("exclude_seen", False)),
        "num_beams": flags.pop("num_beams", None),
        "on_unknown": flags.pop("on_unknown", "error"),
        "allow": list_flag(flags, "allow", "", str) if "allow" in flags else None,
        "deny": list_flag(flags, "deny", "", str) if "deny" in flags else None,
        "category": str(flags.pop("category")) if "category" in flags else None,
    }
    if "diversity" in flags:
        (diversity, num_beams), *more = parse_settings(str(flags.pop("diversity")))
        if more or num_beams is not None:
            raise GenrecError(
                "--diversity takes one setting (key=value,... of groups, penalty, prefix_cap, prefix_length, "
                "mmr); the beam is --num_beams"
            )
        options["diversity"] = diversity
    run_dir, output = Path(str(flags.pop("run"))), flags.pop("output", None)
    source = Path(str(flags.pop("input"))) if "input" in flags else None
    if source is not None and output is not None and Path(str(output)).resolve() == source.resolve():
        raise GenrecError(f"--output is --input ({source}): writing the lists would overwrite the histories")
    if source is None:
        history = [str(item) for item in list_flag(flags, "history", "", str)]
        requests = [{"id": 0, "history": history, "k": None, "line": None}]
    else:
        requests = read_requests(source)
    batch_size = count_flag(flags, "batch_size", 256, 1)
    run = load_run(run_dir, **flags)
    if source is not None and options["on_unknown"] == "error":
        unknown_items_by_line(run, requests, source)
    ranked_lists: list[list[tuple[str, float]] | None] = [None] * len(requests)
    for start in progress(
        range(0, len(requests), batch_size), desc="recommend", disable=True if len(requests) <= batch_size else None
    ):
        rows = range(start, min(start + batch_size, len(requests)))
        for k in dict.fromkeys(requests[row]["k"] or options["k"] for row in rows):  # one pass per list length
            chosen = [row for row in rows if (requests[row]["k"] or options["k"]) == k]
            answers = run.recommend(
                [requests[row]["history"] for row in chosen], batch_size=batch_size, **{**options, "k": k}
            )
            for row, ranked in zip(chosen, answers):
                ranked_lists[row] = ranked
    lines = [
        json.dumps(
            {
                "id": request["id"],
                "items": [item for item, _ in ranked],
                "scores": [round(score, 6) for _, score in ranked],
            }
        )
        for request, ranked in zip(requests, ranked_lists)
    ]
    text = "".join(line + "\n" for line in lines)
    if output:
        atomic_write_text(Path(str(output)), text)
        print(f"{len(lines)} lists: {output}")
    else:
        print(text, end="")
    return 0


def cmd_serve(argv: list[str]) -> int:
    """``genrec serve --run=DIR [--host=127.0.0.1] [--port=8000] [--max_batch=64] [--max_wait_ms=5]
    [--api_key_file=PATH] [--auth=changes|all] [--max_body_mb=16] [--journal=PATH]``; other flags go to
    :func:`genrec.load_run`. The API key comes from ``GENREC_API_KEY`` or the file's first line,
    never from the command line (where every user of the machine can read it in the process list).
    Beyond a loopback address without a key, catalogue changes are refused, with a warning. Catalogue
    changes are recorded in ``--journal`` (default ``DIR/catalogue_changes.jsonl``) and replayed at
    the next start (:mod:`genrec.journal`)."""
    import uvicorn

    from genrec.config import parse_flags
    from genrec.run import load_run
    from genrec.serve import create_app

    _, flags = parse_flags(argv, text=frozenset({"run", "host", "journal", "api_key_file"}))
    if "run" not in flags:
        raise GenrecError("serve needs --run=DIR (a finished run's folder)")
    if "api_key" in flags:
        raise GenrecError(
            "--api_key would show the key to every user of this machine (process list, shell history): "
            "set GENREC_API_KEY or pass --api_key_file=PATH"
        )
    run_dir, host = Path(str(flags.pop("run"))), str(flags.pop("host", "127.0.0.1"))
    journal = Path(str(flags.pop("journal", run_dir / "catalogue_changes.jsonl")))
    port, max_batch = count_flag(flags, "port", 8000, 0), count_flag(flags, "max_batch", 64, 1)
    if port > 65535:
        raise GenrecError(f"--port must be a TCP port, 0 (any free one) to 65535, got {port}")
    max_wait_ms = number_flag(flags, "max_wait_ms", 5.0, 0.0)
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
    run = load_run(run_dir, **flags)
    app = create_app(
        run,
        max_batch,
        max_wait_ms,
        api_key=api_key,
        auth=auth,
        open_changes=loopback,
        max_body_bytes=int(max_body * 2**20),
        journal=journal,
    )
    uvicorn.run(app, host=host, port=port, log_level="info")
    return 0


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


def read_requests(path: Path) -> list[dict]:
    """The ``{"history": [...], "id": ..., "k": ...}`` lines of a JSONL file (``id`` defaults to the
    line number, ``k`` to ``--k``); each request remembers its line, and a malformed line (not UTF-8,
    not JSON, an unknown key, a bad ``k``) is an error naming it."""
    from genrec.datasets.io import read_jsonl

    requests = []
    try:
        for number, request in read_jsonl(path):
            history = request.get("history")
            if not isinstance(history, list) or not all(isinstance(item, str | int) for item in history):
                raise GenrecError(f'{path}:{number}: expected {{"history": [item ids], "id": ..., "k": ...}}')
            unknown = sorted(set(request) - {"history", "id", "k"})
            if unknown:
                raise GenrecError(
                    f"{path}:{number}: unknown key(s) {', '.join(unknown)}: a line holds history, id and k; "
                    "the other options are flags for the whole file"
                )
            k = request.get("k")
            if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
                raise GenrecError(f"{path}:{number}: k must be an integer >= 1, got {k!r}")
            requests.append(
                {"id": request.get("id", number), "history": [str(i) for i in history], "k": k, "line": number}
            )
    except DataError as exc:
        raise GenrecError(str(exc)) from None
    return requests


def unknown_items_by_line(run, requests: list[dict], path: Path) -> None:
    """With ``on_unknown=error``: the first request naming an item the run does not know, by its line."""
    for request in requests:
        unknown = [item for item in request["history"] if item not in run.item_index]
        if unknown:
            raise GenrecError(
                f"{path}:{request['line']}: item id(s) not in the catalogue of {run.interactions.name}: "
                f"{', '.join(map(repr, unknown[:10]))} (--on_unknown=skip leaves them out)"
            )


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
        latent = getattr(getattr(run.model, "vocab", None), "n_latent", 0)
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
        beams = getattr(run.model, "returns_beams", False)
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


def cmd_finetune(argv: list[str]) -> int:
    """``genrec finetune --run=DIR --method=grpo [--reward=relevance:1,validity:0.5] [--group=8]
    [--candidates=sample|beam] [--temperature=1] [--constrained=true] [--clip=0.2] [--kl=0.04] [--lr=1e-4]
    [--batch_size=32] [--steps_per_epoch=50] [--updates=1] [--epochs=10] [--patience=3] [--seed=0]
    [--output=DIR]``: a new run folder fine-tuned from ``--run``; other flags go to
    :func:`genrec.load_run` (``--data_dir``, ``--cache_dir``, ``--device``)."""
    import time

    from pydantic import ValidationError

    from genrec.config import parse_flags
    from genrec.finetune import GRPOSettings, finetune
    from genrec.run import load_run

    _, flags = parse_flags(argv)
    if "run" not in flags:
        raise GenrecError("finetune needs --run=DIR (a finished TIGER / PSID / Latte run)")
    method = flags.pop("method", "grpo")
    if method != "grpo":
        raise GenrecError(f"--method must be grpo, got {method!r}")
    parent = Path(str(flags.pop("run")))
    chosen = {key: flags.pop(key) for key in list(flags) if key in GRPOSettings.model_fields}
    try:
        settings = GRPOSettings(**chosen)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise GenrecError(f"--{'.'.join(map(str, error['loc']))}: {error['msg']}") from None
    output = Path(str(flags.pop("output", parent.parent / f"{parent.name}-grpo-{time.strftime('%Y%m%d-%H%M%S')}")))
    results = finetune(load_run(parent, **flags), settings, output)
    print(results_table(results))
    print(f"fine-tuned from {parent} (best epoch {results['best_epoch']}; 0: no epoch beat the start): {output}")
    return 0


def cmd_plot(argv: list[str]) -> int:
    """``genrec plot RUN_DIR ... [--output=DIR]``: the learning curves of finished or running runs
    (validation NDCG@10 / Recall@10 against epochs and seconds, training loss) as ``curves.png`` /
    ``.svg`` (default: in the first run's folder)."""
    import yaml

    from genrec.compare import read_epochs
    from genrec.figures import run_curves_figure

    directories, flags = run_folders(argv, "plot")
    output = Path(flags.pop("output", directories[0]))
    if flags:
        raise GenrecError(
            f"plot takes RUN_DIR ... and --output=DIR; unknown flag(s): {', '.join('--' + k for k in flags)}"
        )
    runs: dict[str, list[dict]] = {}
    several = len({dataset_of(directory) for directory in directories}) > 1
    for directory in directories:
        settings = yaml.safe_load((directory / "config.yaml").read_text()) or {}
        label = f"{settings.get('model', directory.name)} seed {settings.get('seed', '?')}"
        label += f" on {dataset_of(directory)}" if several else ""
        if not (directory / "metrics.jsonl").is_file():
            raise GenrecError(f"{directory} has no metrics.jsonl yet: it has not finished its first epoch")
        runs[label if label not in runs else directory.name] = read_epochs(directory / "metrics.jsonl")
    output.mkdir(parents=True, exist_ok=True)
    run_curves_figure(runs, output / "curves")
    print(f"curves.png / curves.svg: {output}")
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
        if not (directory / "config.yaml").is_file():
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

    settings = yaml.safe_load((directory / "config.yaml").read_text()) or {}
    parts = [settings.get("dataset"), settings.get("category"), settings.get("interactions")]
    return "/".join(str(part) for part in parts if part)


def list_flag(flags: dict, key: str, default: str, kind: type) -> list:
    raw = flags.pop(key, default)
    try:
        return [kind(part) for part in str(raw).split(",") if part.strip()]
    except ValueError:
        raise GenrecError(f"--{key} must be a comma-separated list, got {raw!r}") from None


def cmd_config(argv: list[str]) -> int:
    """``genrec config`` and any flags: print the fully resolved configuration as YAML."""
    import yaml

    print(yaml.safe_dump(load_config(argv).model_dump(mode="json"), sort_keys=True), end="")
    return 0


def print_help(words: tuple[str, ...], command: Callable[[list[str]], int], argv: list[str]) -> int:
    """``genrec <command> --help``: the command's own options (its docstring); for the commands that
    train or read data, then every key the command line's dataset and model have, described, by layer.
    The commands that read a finished run take its settings from its folder, so they list only their own."""
    import inspect

    own = inspect.getdoc(command) or ""
    if command in READS_A_RUN:
        print(own)
        return 0
    print(f"usage: genrec {' '.join(words)} [--config FILE] [--key=value ...]\n\n{own}\n")
    print("settings, at the values this command line resolves to (set any with --key=value):")
    try:
        if command is cmd_evaluate:
            flags, settings = evaluation_settings(argv)
            print(describe(load_config(flags, **settings)))
        else:  # compare's own flags are not settings
            print(describe(load_config([a for a in argv if not a.startswith(("--models", "--seeds"))])))
    except GenrecError as exc:
        print(f"genrec: error: {exc}", file=sys.stderr)
        return 2
    return 0


COMMANDS: dict[tuple[str, ...], Callable[[list[str]], int]] = {
    ("run",): cmd_run,
    ("train",): cmd_train,
    ("evaluate",): cmd_evaluate,
    ("compare",): cmd_compare,
    ("data", "stats"): cmd_stats,
    ("data", "download"): cmd_download,
    ("data", "export"): cmd_export,
    ("sids",): cmd_sids,
    ("recommend",): cmd_recommend,
    ("serve",): cmd_serve,
    ("analyze", "tree"): cmd_analyze_tree,
    ("analyze", "beams"): cmd_analyze_beams,
    ("analyze", "diversity"): cmd_analyze_diversity,
    ("analyze", "coldstart"): cmd_analyze_coldstart,
    ("plot",): cmd_plot,
    ("finetune",): cmd_finetune,
    ("config",): cmd_config,
}


READS_A_RUN = {
    cmd_recommend,
    cmd_serve,
    cmd_analyze_tree,
    cmd_analyze_beams,
    cmd_analyze_diversity,
    cmd_analyze_coldstart,
    cmd_finetune,
    cmd_plot,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        print(__version__)
        return 0
    for words, command in COMMANDS.items():
        if tuple(argv[: len(words)]) == words:
            return run_command(words, command, argv[len(words) :])
    print(f"genrec: unknown command {' '.join(argv[:2])!r}\n\n{usage()}", file=sys.stderr)
    return 2


def run_command(words: tuple[str, ...], command: Callable[[list[str]], int], argv: list[str]) -> int:
    source_commit()  # now, before the checkout can change under a long run
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader logs every CPU-feature probe
    if "-h" in argv or "--help" in argv:
        rest = [a for a in argv if a not in ("-h", "--help")]
        return print_help(words, command, rest)
    try:
        return command(argv)
    except GenrecError as exc:
        print(f"genrec: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine's (a folder that vanished, a device error): one line with the path
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"genrec: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
