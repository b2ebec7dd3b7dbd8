"""What every fine-tuning method shares (:class:`Finetuner`): a frozen copy of the starting model as
the reference, epochs of steps on training histories drawn at random, validation after each epoch
with the parent's selection metric, early stopping, ``best.pt`` starting as the parent itself (epoch
0: a fine-tuning that never beats its start leaves the parent's weights), and the test of the best
checkpoint written as any run's ``results.json``. A method supplies its settings and its
:meth:`Finetuner.step`.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from genrec.cache import atomic_write_text
from genrec.checkpoint import save_checkpoint
from genrec.errors import ConfigError
from genrec.evaluation import Catalogue, Evaluator
from genrec.evaluation.metrics import recorded, shown
from genrec.provenance import source_commit
from genrec.run_folder import BEST, METRICS, RESULTS, TEST_RANKS
from genrec.runtime import deterministic
from genrec.schema import StrictModel

log = logging.getLogger(__name__)


class FinetuneSettings(StrictModel):
    """The schedule every method shares: ``steps_per_epoch`` optimizer steps on ``batch_size`` training
    histories, at most ``epochs`` epochs, stopped after ``patience`` epochs without a better
    validation score."""

    lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(32, ge=1)
    steps_per_epoch: int = Field(50, ge=1)
    epochs: int = Field(10, ge=1)
    patience: int = Field(3, ge=1)
    seed: int = Field(0, ge=0)


class Finetuner:
    """Fine-tunes a finished generative run (:class:`genrec.run.Run`) into ``directory``; ``name``
    labels the method in logs and errors, ``headline`` is the step record's entry logged per epoch."""

    name = "fine-tuning"
    headline = "loss"

    def __init__(self, run, settings: FinetuneSettings, directory: Path):
        self.run, self.settings, self.directory = run, settings, directory
        self.model = run.model
        if not self.model.returns_beams:
            raise ConfigError(
                f"{self.name} fine-tunes the generative models (TIGER, PSID, Latte); "
                f"{run.config.model} generates no IDs"
            )
        self.reference = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=settings.lr, weight_decay=0.0)
        self.device = next(self.model.parameters()).device
        self.evaluator = Evaluator.from_config(
            run.config, Catalogue.of(run.interactions, run.config.category_level), self.device
        )

    def step(
        self, histories: list[np.ndarray], targets: np.ndarray, seen: list[np.ndarray], generator: torch.Generator
    ) -> dict:
        """One optimizer step on these training histories and their next items; what it measured."""
        raise NotImplementedError

    def sequence_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Each position's local code (as a beam search returns them) as a vocabulary token."""
        starts = torch.tensor([first for first, _ in self.model.vocab.decode_ranges], device=tokens.device)
        return tokens + starts

    def validate(self, examples) -> dict:
        return self.evaluator.validate(self.model, examples)

    def fit(self) -> dict:
        s, run = self.settings, self.run
        train = run.split.train
        rng = np.random.default_rng(s.seed)
        generator = torch.Generator().manual_seed(s.seed)
        torch.manual_seed(s.seed)
        select = run.config.select_metric  # the parent's: before and after are chosen alike
        best = self.validate(run.split.valid)[select]
        log.info("%s: starting validation %s %s", self.name, select, shown(best))
        self.save(0)
        bad, best_epoch = 0, 0
        with deterministic(run.config.deterministic):
            for epoch in range(1, s.epochs + 1):
                start, steps = time.perf_counter(), []
                for _ in range(s.steps_per_epoch):
                    rows = rng.choice(len(train), min(s.batch_size, len(train)), replace=False)
                    histories, targets = train.batch(rows)
                    steps.append(self.step(histories, targets, [train.seen[r] for r in rows], generator))
                    if not math.isfinite(steps[-1]["loss"]):
                        raise ConfigError(
                            f"{self.name} diverged at epoch {epoch} (loss {steps[-1]['loss']}); lower --lr"
                        )
                valid = self.validate(run.split.valid)
                record = {
                    "epoch": epoch,
                    **{k: round(float(np.mean([x[k] for x in steps])), 5) for k in steps[0]},
                    "valid": {k: recorded(v) for k, v in valid.items()},
                    "seconds": round(time.perf_counter() - start, 2),
                }
                self.append_metrics(record)
                log.info(
                    "%s epoch %d  %s %.4f  valid %s %s (best %s @%d)",
                    self.name,
                    epoch,
                    self.headline,
                    record[self.headline],
                    select,
                    shown(valid[select]),
                    shown(max(best, valid[select])),
                    best_epoch if valid[select] <= best else epoch,
                )
                if valid[select] > best:
                    best, best_epoch, bad = valid[select], epoch, 0
                    self.save(epoch)
                else:
                    bad += 1
                    if bad >= s.patience:
                        break
        return self.test(best_epoch)

    def save(self, epoch: int) -> None:
        """``best.pt``: the weights, with the parent run's identity (same settings, data and IDs)."""
        from genrec.pipeline import identity

        save_checkpoint(
            self.directory / BEST,
            identity(self.run.config, self.run.interactions, self.model),
            {"model": self.model.state_dict(), "epoch": epoch},
        )

    def append_metrics(self, record: dict) -> None:
        with open(self.directory / METRICS, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def test(self, best_epoch: int) -> dict:
        from genrec.checkpoint import read_checkpoint, restore_weights
        from genrec.trainer import save_ranks

        state = read_checkpoint(self.directory / BEST, self.device)
        restore_weights(self.model, state, self.directory / BEST)
        valid, _ = self.evaluator.test(self.model, self.run.split.valid)
        test, ranks = self.evaluator.test(self.model, self.run.split.test)
        save_ranks(self.directory / TEST_RANKS, ranks)
        results = {
            "best_epoch": best_epoch,
            **self.evaluator.widths(self.model),
            "parent": str(self.run.directory),
            "commit": source_commit(),
            "valid": {k: recorded(v) for k, v in valid.items()},
            "test": {k: recorded(v) for k, v in test.items()},
        }
        atomic_write_text(self.directory / RESULTS, json.dumps(results, indent=2))
        return results
