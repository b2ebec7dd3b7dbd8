"""Command line: ``genrec <command> [--config FILE] [--key=value ...]``.

This module only dispatches: each command is a function of a module of :mod:`genrec.commands`,
imported when it runs. Every ``--key`` of the commands that train or read data is a configuration
key (see ``genrec/default.yaml`` and the dataset/model ``config.yaml`` files); ``genrec <command>
--help`` lists them with their resolved values.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint

from genrec import __version__
from genrec.config import describe, load_config
from genrec.errors import GenrecError
from genrec.provenance import source_commit
from genrec.registry import load_plugin, origin, plugins

USAGE = """usage: genrec <command> [--config FILE] [--key=value ...]  (genrec <command> --help: its options)

commands:
  run             the main job (also: python main.py): train and test --model, or without a model
                  the data, split and semantic IDs with a summary
  train           train --model ({models}; --architecture=decoder or hf_causal_lm for TIGER/PSID/Latte),
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
  finetune        --run=DIR --method=grpo|dpo [--reward=relevance:1 ... | --negatives=3 --beta=1 ...]:
                  GRPO or DPO / S-DPO fine-tuning of a TIGER / PSID / Latte run into a new run folder
  export          --run=DIR --to=DIR: the run as a self-contained folder (weights as safetensors, item
                  table, semantic IDs, quantizer, config, model card) that load_run, recommend and serve
                  load with no dataset files and no cache
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
    """The command list, with the models the registry finds and the commands of installed packages."""
    from genrec import models

    text = USAGE.format(models=", ".join(models.names()))
    installed = plugins("command")
    if installed:
        text += "\ncommands of installed packages:\n" + "".join(
            f"  {name:<15} {origin(entry)}\n" for name, entry in sorted(installed.items())
        )
    return text


@dataclass(frozen=True)
class Command:
    """A command: the function ``function`` of ``genrec.commands.<module>``. A command that reads a
    finished run takes its settings from the run's folder, so its ``--help`` lists only its own options."""

    module: str
    function: str
    reads_a_run: bool = False
    entry: EntryPoint | None = None  # a command of another package (entry point group genrec.commands)

    def load(self) -> Callable[[list[str]], int]:
        if self.entry is not None:
            return load_plugin(self.entry, "command")
        return getattr(importlib.import_module(f"genrec.commands.{self.module}"), self.function)


COMMANDS: dict[tuple[str, ...], Command] = {
    ("run",): Command("run", "cmd_run"),
    ("train",): Command("train", "cmd_train"),
    ("evaluate",): Command("evaluate", "cmd_evaluate"),
    ("compare",): Command("compare", "cmd_compare"),
    ("data", "stats"): Command("data", "cmd_stats"),
    ("data", "download"): Command("data", "cmd_download"),
    ("data", "export"): Command("data", "cmd_export"),
    ("sids",): Command("sids", "cmd_sids"),
    ("recommend",): Command("recommend", "cmd_recommend", reads_a_run=True),
    ("serve",): Command("serve", "cmd_serve", reads_a_run=True),
    ("plot",): Command("plot", "cmd_plot", reads_a_run=True),
    ("finetune",): Command("finetune", "cmd_finetune", reads_a_run=True),
    ("export",): Command("export", "cmd_export", reads_a_run=True),
    ("config",): Command("config", "cmd_config"),
}


def analyses() -> dict[tuple[str, ...], Command]:
    """``genrec analyze <name>`` for every analysis of the registry in :mod:`genrec.commands.analyze`."""
    from genrec.commands import analyze

    return {
        ("analyze", name): Command("analyze", function.__name__, reads_a_run=True)
        for name, function in analyze.ANALYSES.items()
    }


def all_commands() -> dict[tuple[str, ...], Command]:
    """genrec's commands and those installed packages declare as entry points (``genrec.commands``:
    ``name = "my_package.module:function"``, a function ``(argv) -> exit code`` whose docstring is its
    ``--help``); a package may not take a command genrec has."""
    found = {**COMMANDS, **analyses()}
    for name, entry in plugins("command", {words[0] for words in COMMANDS}).items():
        found[(name,)] = Command(entry.value, "", reads_a_run=True, entry=entry)
    return found


def print_help(words: tuple[str, ...], command: Command, argv: list[str]) -> int:
    """``genrec <command> --help``: the command's own options (its docstring); for the commands that
    train or read data, then every key the command line's dataset and model have, described, by layer."""
    own = inspect.getdoc(command.load()) or ""
    if command.reads_a_run:
        print(own)
        return 0
    print(f"usage: genrec {' '.join(words)} [--config FILE] [--key=value ...]\n\n{own}\n")
    print("settings, at the values this command line resolves to (set any with --key=value):")
    try:
        if words == ("evaluate",):
            from genrec.commands.evaluate import evaluation_settings

            flags, settings = evaluation_settings(argv)
            print(describe(load_config(flags, **settings)))
        else:  # compare's own flags are not settings
            print(describe(load_config([a for a in argv if not a.startswith(("--models", "--seeds"))])))
    except GenrecError as exc:
        print(f"genrec: error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """``genrec`` on ``argv`` (default: the process's arguments); returns the exit code. Output piped
    into a reader that stops early (``genrec --help | head``) ends quietly, as other tools do."""
    try:
        return dispatch(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 141  # 128 + SIGPIPE, what a shell reports for a killed writer


def dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        print(__version__)
        return 0
    try:
        commands = all_commands()
    except GenrecError as exc:
        print(f"genrec: error: {exc}", file=sys.stderr)
        return 2
    for words in commands:
        if tuple(argv[: len(words)]) == words:
            return run_command(words, argv[len(words) :])
    print(f"genrec: unknown command {' '.join(argv[:2])!r}\n\n{usage()}", file=sys.stderr)
    return 2


def run_command(words: tuple[str, ...], argv: list[str]) -> int:
    """Run the command ``words`` (e.g. ``("data", "stats")``) on its flags; a user's error is one line
    and exit code 2."""
    source_commit()  # now, before the checkout can change under a long run
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader logs every CPU-feature probe
    try:
        command = all_commands()[words]
        if "-h" in argv or "--help" in argv:
            return print_help(words, command, [a for a in argv if a not in ("-h", "--help")])
        return command.load()(argv)
    except GenrecError as exc:
        print(f"genrec: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of our output went away: not an error of the command (see main)
        raise
    except OSError as exc:  # the machine's (a folder that vanished, a device error): one line with the path
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"genrec: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
