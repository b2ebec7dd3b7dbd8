"""The data side of every run: dataset -> split (leave-one-out or temporal) -> item vectors ->
semantic IDs. Models receive these from here and never rebuild them their own way."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from genrec import datasets
from genrec.checkpoint import check_identity, read_checkpoint, restore_weights, run_identity
from genrec.config import dump_config
from genrec.data import Interactions, Split, leave_one_out, temporal_split
from genrec.data.cold import hold_out_items
from genrec.data.interactions import iso_time
from genrec.errors import ConfigError, GenrecError
from genrec.evaluation.metrics import shown
from genrec.models.base import Recommender
from genrec.run_folder import CONFIG, LAST, LOG, RUN_FILES, is_finished
from genrec.schema import StrictModel

log = logging.getLogger(__name__)


def load_interactions(config: StrictModel) -> Interactions:
    """The configured dataset; with ``cold_items`` > 0 its warm part (:mod:`genrec.data.cold`)."""
    interactions = datasets.get(config.dataset).load(config)
    if config.cold_items:
        held = hold_out_items(interactions, config.cold_items, config.cold_items_seed)
        log.info(
            "cold_items=%g: %d items held out of training (%d interactions, %d users left too short)",
            config.cold_items,
            len(held.cold),
            held.warm.dropped["cold_items_interactions"],
            held.warm.dropped["cold_items_short_users"],
        )
        interactions = held.warm
    log.info(
        "%s: %d users, %d items, %d interactions",
        interactions.name,
        interactions.n_users,
        interactions.n_items,
        interactions.n_interactions,
    )
    return interactions


def load_split(config: StrictModel) -> tuple[Interactions, Split]:
    """The configured dataset and its ``split`` (leave-one-out, or temporal at the configured times)."""
    interactions = load_interactions(config)
    return interactions, split_of(config, interactions)


def split_of(config: StrictModel, interactions: Interactions) -> Split:
    """``interactions`` split as ``config`` says: leave-one-out, or temporal at the configured times."""
    if config.split == "leave_one_out":
        return leave_one_out(interactions.sequences, config.max_item_seq_len)
    if interactions.times is None:
        raise ConfigError(
            f"split=temporal cuts on interaction times, and {interactions.name} has none "
            "(--dataset=Interactions with a --time_column has them)"
        )
    split = temporal_split(
        interactions.sequences,
        interactions.times,
        config.split_valid_time,
        config.split_test_time,
        config.max_item_seq_len,
    )
    log.info(
        "temporal split at %s and %s: %d training examples; %d users validated, %d tested "
        "(of %d: the others have no interaction in the period, or none before it)",
        iso_time(config.split_valid_time),
        iso_time(config.split_test_time),
        len(split.train),
        len(split.valid),
        len(split.test),
        interactions.n_users,
    )
    for part, examples in (("validation", split.valid), ("test", split.test), ("training", split.train)):
        if not len(examples):
            span = interactions.time_range()
            raise ConfigError(
                f"split=temporal leaves no {part} examples in {interactions.name} "
                f"({span['first_time']} .. {span['last_time']}): "
                "move --split_valid_time / --split_test_time"
            )
    return split


def claim_automatic_folder(output: Path, config, command: str) -> Path:
    """``<command>-<model>-<dataset>[-<category>]-<timestamp>`` inside ``output`` (no model: ``genrec
    run`` and ``sids`` without one), created here and so owned by this command alone: two commands
    started in the same second get ``...-2``, ``...-3`` (the folder is claimed by an atomic ``mkdir``,
    never by a check that another command could race)."""
    parts = [command, config.model, config.dataset, getattr(config, "category", None), time.strftime("%Y%m%d-%H%M%S")]
    name = "-".join(str(p) for p in parts if p)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GenrecError(f"cannot create output_dir {output}: {exc.strerror}") from None
    for attempt in range(1, 1000):
        directory = output / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            directory.mkdir()
            return directory
        except FileExistsError:
            continue
        except OSError as exc:
            raise GenrecError(f"cannot create the run folder {directory}: {exc.strerror}") from None
    raise GenrecError(f"{output} already holds 999 folders named {name}[-N]; name this run with --run_name")


@contextmanager
def run_directory(config, command: str) -> Iterator[Path]:
    """A new output folder for one run, holding its resolved ``config.yaml``, written first (so a
    folder that cannot be written fails before any work). A folder that holds a run is never reused,
    a ``run_name`` may not lead out of ``output_dir`` (checked on the resolved path), and the saved
    config leaves ``run_name`` out, so evaluating or training again from a run's ``--config`` cannot
    overwrite that run. If the command fails, the folder is removed unless it holds a resumable
    ``last.pt``, so a failed command never blocks its ``run_name``."""
    output = Path(config.output_dir).expanduser().resolve()
    if is_finished(output):
        raise GenrecError(
            f"output_dir {output} is a finished run's folder, not a folder of runs: a new run would nest inside "
            "it; choose another --output_dir (commands that read a run take --run=DIR)"
        )
    if config.run_name is None:
        directory = claim_automatic_folder(output, config, command)
        created = True
    else:
        directory = (output / config.run_name).resolve()
        if output not in directory.parents:
            raise GenrecError(
                f"run_name {config.run_name!r} leads to {directory}, outside output_dir {output}; "
                "name a folder inside it"
            )
        held = [f for f in RUN_FILES if (directory / f).exists()]
        if held:
            raise GenrecError(f"{directory} holds a run already ({', '.join(held)}); choose another --run_name")
        created = not directory.exists()
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GenrecError(f"cannot create the run folder {directory}: {exc.strerror}") from None
    try:
        dump_config(config.model_copy(update={"run_name": None}), directory / CONFIG)
        yield directory
    except BaseException:
        if not (directory / LAST).exists():
            for name in (CONFIG, LOG):
                (directory / name).unlink(missing_ok=True)
            if created:
                shutil.rmtree(directory, ignore_errors=True)
        raise


@contextmanager
def run_log(directory: Path) -> Iterator[None]:
    """Append genrec's log (INFO and up) to ``directory/run.log`` while training: what happened
    stays beside ``metrics.jsonl`` whether the run was started from the shell or from Python."""
    logger = logging.getLogger("genrec")
    handler = logging.FileHandler(directory / LOG, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.setLevel(logging.INFO)
    level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


def build_model(config: StrictModel, interactions: Interactions, split: Split) -> Recommender:
    """The configured model; semantic-ID models build (or load from cache) their IDs here."""
    from genrec import models

    return models.get(config.model).build(config, interactions, split)


def identity(config, interactions: Interactions, model) -> dict:
    """The identity its checkpoints carry (:mod:`genrec.checkpoint`): settings, data, semantic IDs."""
    sids = model.semantic_ids
    return run_identity(config, interactions.fingerprint, sids.fingerprint if sids is not None else None)


def load_trained(config: StrictModel, checkpoint: Path) -> tuple[Recommender, Interactions, Split]:
    """``(model, interactions, split)``: the configured model with a checkpoint's weights, after
    checking that the checkpoint was trained with these settings, data and semantic IDs (only the
    ``evaluation`` settings may differ: :func:`genrec.checkpoint.keys_with_role`). The model is on
    ``config.device``."""
    from genrec.runtime import resolve_device

    device = resolve_device(config.device)
    state = read_checkpoint(checkpoint, device)
    interactions, split = load_split(config)
    model = build_model(config, interactions, split)
    check_identity(
        checkpoint,
        state["identity"],
        identity(config, interactions, model),
        config,
        "evaluation",
        f"Evaluate it with the settings it was trained with: --config={Path(checkpoint).parent / CONFIG}",
    )
    restore_weights(model, state, checkpoint)
    return model.to(device), interactions, split


def train(config: StrictModel) -> tuple[dict, Path]:
    """Train (or resume with ``checkpoint``), select on validation, test the best checkpoint. Under
    ``torchrun`` every process runs this; rank 0 builds the caches first, creates the run folder
    and writes (:mod:`genrec.distributed`)."""
    from genrec.distributed import process_device, process_group
    from genrec.evaluation import Catalogue
    from genrec.run_lock import run_lock
    from genrec.runtime import resolve_device, seed_everything
    from genrec.trainer import Trainer

    device = resolve_device(config.device)
    group = process_group(device)
    device = process_device(device, group)
    seed_everything(config.seed)
    if not group.main:
        group.barrier()  # rank 0 builds (or loads) the embeddings and semantic IDs first
    interactions, split = load_split(config)
    model = build_model(config, interactions, split)
    if group.main:
        group.barrier()
    catalogue = Catalogue.of(interactions, config.category_level)

    def fit(directory: Path) -> tuple[dict, Path]:
        with run_lock(directory) if group.main else nullcontext():
            return fit_locked(directory)

    def fit_locked(directory: Path) -> tuple[dict, Path]:
        trainer = Trainer(
            config, model, split, catalogue, directory, device, identity(config, interactions, model), group
        )
        if config.checkpoint:
            trainer.resume(Path(config.checkpoint))  # a refused resume leaves the run untouched
        with run_log(directory) if group.main else nullcontext():
            log.info(
                "training %s on %s from epoch %d (cap %d)%s%s",
                config.model,
                interactions.name,
                trainer.epoch,
                config.epochs,
                f", resumed from {config.checkpoint}" if config.checkpoint else "",
                f", {group.world} data-parallel processes" if group.active else "",
            )
            log.info(
                "%s: %d users, %d items, %d interactions; %d training examples, %d validation and %d test users",
                interactions.name,
                interactions.n_users,
                interactions.n_items,
                interactions.n_interactions,
                len(split.train),
                len(split.valid),
                len(split.test),
            )
            results = trainer.fit()
            log.info(
                "best epoch %d (beam %d): %s",
                results["best_epoch"],
                results["num_beams"],
                "; ".join(
                    f"{part} "
                    + ", ".join(f"{name} {shown(value)}" for name, value in results[part].items() if "@" in name)
                    for part in ("valid", "test")
                ),
            )
            return results, directory

    if config.checkpoint:
        return fit(Path(config.checkpoint).parent)
    if not group.main:
        return fit(Path(group.broadcast(None)))
    with run_directory(config, "train") as directory:
        group.broadcast(str(directory))
        return fit(directory)
