"""The data side of every run: dataset -> leave-one-out split -> item vectors -> semantic IDs.
Models (next issues) receive these from here and never rebuild them their own way."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from genrec import datasets
from genrec.config import dump_config
from genrec.data import Interactions, LeaveOneOutSplit, leave_one_out
from genrec.errors import GenrecError

log = logging.getLogger(__name__)


def load_interactions(config) -> Interactions:
    interactions = datasets.get(config.dataset).load(config)
    log.info("%s: %d users, %d items, %d interactions", interactions.name, interactions.n_users, interactions.n_items, interactions.n_interactions)
    return interactions


def load_split(config) -> tuple[Interactions, LeaveOneOutSplit]:
    interactions = load_interactions(config)
    return interactions, leave_one_out(interactions.sequences, config.max_item_seq_len)


def run_directory(config, command: str) -> Path:
    """A new output folder for one run, holding its resolved ``config.yaml``. A folder that holds a
    run already is never reused, and the saved config leaves ``run_name`` out, so evaluating or
    training again from a run's ``--config`` cannot overwrite that run's results."""
    name = config.run_name
    if name is None:
        parts = [command, config.dataset, getattr(config, "category", None), time.strftime("%Y%m%d-%H%M%S")]
        name = "-".join(str(p) for p in parts if p)
    directory = Path(config.output_dir) / name
    if (directory / "config.yaml").exists():
        raise GenrecError(f"{directory} holds a run already; choose another --run_name")
    directory.mkdir(parents=True, exist_ok=True)
    dump_config(config.model_copy(update={"run_name": None}), directory / "config.yaml")
    return directory


def build_model(config, interactions: Interactions, split: LeaveOneOutSplit):
    """The configured model; semantic-ID models build (or load from cache) their IDs here."""
    from genrec import models

    return models.get(config.model).build(config, interactions, split)


def train(config) -> tuple[dict, Path]:
    """Train (or resume with ``checkpoint``), select on validation, test the best checkpoint."""
    from genrec.evaluation import Catalogue
    from genrec.runtime import resolve_device, seed_everything
    from genrec.trainer import Trainer

    seed_everything(config.seed)
    interactions, split = load_split(config)
    model = build_model(config, interactions, split)
    directory = Path(config.checkpoint).parent if config.checkpoint else run_directory(config, "train")
    catalogue = Catalogue.of(interactions, config.category_level)
    trainer = Trainer(config, model, split, catalogue, directory, resolve_device(config.device))
    if config.checkpoint:
        trainer.resume(Path(config.checkpoint))
    return trainer.fit(), directory
