"""Training with validation-based early stopping, resumable checkpoints and a metrics log.

Every epoch's shuffling, latent-token draws and dropout are seeded from ``(seed, epoch)``, and the
full state (model, optimizer, schedule, early-stopping counters) is checkpointed atomically after
each epoch to ``last.pt``; a killed run resumed from it therefore reaches the same result. The best
model on validation ``select_metric`` (NDCG@10 unless set) is kept in ``best.pt`` and is the one tested.

Longer than most modules (about 450 lines) because it is one loop and its state: batching,
accumulation and clipping, precision, resume, logging and the final test share the trainer's fields,
and splitting them would pass that state around instead.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from genrec.cache import atomic_write, atomic_write_text
from genrec.checkpoint import (
    CheckpointError,
    check_identity,
    keys_with_role,
    read_checkpoint,
    restore_weights,
    save_checkpoint,
)
from genrec.config import dump_config
from genrec.data import Examples, Split, Windows, training_windows
from genrec.distributed import ProcessGroup, data_parallel
from genrec.errors import GenrecError
from genrec.evaluation import Catalogue, Evaluator
from genrec.evaluation.metrics import recorded, shown
from genrec.provenance import source_commit
from genrec.run_folder import BEST, CONFIG, LAST, METRICS, RESULTS, RESUMES, TEST_RANKS
from genrec.runtime import deterministic, progress, training_dtype
from genrec.tracking import epoch_values, open_tracker

log = logging.getLogger(__name__)


def save_ranks(path: Path, ranks: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, np.asarray(ranks, dtype=np.int32))

    atomic_write(path, write)


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress


def length_bucketed_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, pool: int = 50
) -> list[np.ndarray]:
    """Shuffled batches of examples with similar history lengths.

    The examples are shuffled and cut into pools of ``pool`` batches; each pool is sorted by length
    and cut into batches, and all batches are shuffled. A batch is padded to its longest history, so
    this cuts the padding the encoder computes on (about 5x on the Amazon datasets, where most
    training prefixes are short) while every batch stays a random draw from its pool.
    """
    order = rng.permutation(len(lengths))
    batches = []
    for start in range(0, len(order), pool * batch_size):
        chunk = order[start : start + pool * batch_size]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def is_resumable(path: Path) -> bool:
    """A ``last.pt`` carries the training state; a ``best.pt`` only the weights (evaluate it)."""
    return "optimizer" in read_checkpoint(path)


def validation_sample(valid: Examples, users: int, seed: int) -> Examples:
    """The validation examples early stopping watches: all of them, or ``users`` of them drawn once
    with ``seed`` (the same sample every epoch and on resume), which makes frequent validation of
    long runs on large datasets affordable; the final validation and the test use every user."""
    if not users or users >= len(valid):
        return valid
    rows = np.sort(np.random.default_rng([seed, 17]).choice(len(valid), users, replace=False))
    return valid.subset(rows)


def training_data(model, split: Split, max_item_seq_len: int) -> Examples | Windows:
    """What an epoch trains on: every training prefix, or for a model that learns all next items of
    a sequence in one pass (``model.learns_windows``) the same targets as windows."""
    if model.learns_windows:
        return training_windows(split.train_sequences, max_item_seq_len)
    return split.train


def examples_per_batch(train: Examples | Windows, batch_size: int) -> int:
    """``batch_size`` counts training targets: a batch of windows holds about that many, so either
    backbone takes the same number of optimizer steps per epoch on the same number of targets."""
    if isinstance(train, Windows):
        return max(1, round(batch_size * len(train) / max(1, train.n_targets)))
    return batch_size


class EpochBatches(Dataset):
    """One epoch's training batches: batch ``i`` is built from the examples at ``rows[i]`` by ``make``
    (a model's ``training_batch``) with a generator seeded by ``(*key, i)`` for its random draws
    (latent tokens, masks, negatives), so a batch is the same whether the training process or a
    DataLoader worker (``num_workers``) prepares it, and an epoch the same for any worker count."""

    def __init__(
        self,
        make: Callable[..., tuple[torch.Tensor, ...]],
        train: Examples | Windows,
        rows: list[np.ndarray],
        key: tuple[int, ...],
    ):
        self.make, self.train, self.rows, self.key = make, train, rows, key

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        seed = int(np.random.SeedSequence([*self.key, index]).generate_state(1, np.uint64)[0])
        return self.make(*self.train.batch(self.rows[index]), torch.Generator().manual_seed(seed))


class TrainingDiverged(GenrecError):
    """The loss or the weights became non-finite."""


def duration(seconds: float) -> str:
    """``42 s``, ``12 min``, ``2 h 05 min``: a time a reader plans by."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def time_left(spent: list[float], epochs_left: int) -> str:
    """The epoch log's estimate: the mean epoch so far times the epochs left to the cap (an upper
    bound: early stopping may end sooner)."""
    if not epochs_left or not spent:
        return ""
    return f"  (cap in at most {duration(sum(spent) / len(spent) * epochs_left)})"


class Trainer:
    def __init__(
        self,
        config,
        model,
        split: Split,
        catalogue: Catalogue,
        directory: Path,
        device: torch.device,
        identity: dict,
        group: ProcessGroup | None = None,
    ):
        self.config, self.split, self.directory, self.device = config, split, directory, device
        self.identity = identity  # stored in every checkpoint (genrec.checkpoint)
        self.group = group or ProcessGroup()  # data-parallel processes (genrec.distributed); rank 0 writes
        self.evaluator = Evaluator.from_config(config, catalogue, device, self.group)
        self.model = model.to(device)
        self.parallel = data_parallel(self.model, self.group, device) if self.group.active else None
        self.dtype = training_dtype(config.precision, device)  # training autocast; None: fp32
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        sizes = [(p.numel(), p.requires_grad) for p in model.parameters()]
        log.info(
            "%s: %d parameters, %d trainable",
            type(model).__name__,
            sum(n for n, _ in sizes),
            sum(n for n, trains in sizes if trains),
        )
        self.train = training_data(model, split, config.max_item_seq_len)
        self.history_lengths = self.train.lengths
        self.batch_size = examples_per_batch(self.train, config.batch_size)
        batches = len(length_bucketed_batches(self.history_lengths, self.batch_size, np.random.default_rng(0)))
        self.steps_per_epoch = math.ceil(batches / config.grad_accumulation)  # optimizer steps
        total = config.epochs * self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, config.warmup_steps, total, config.lr_schedule)
        )
        self.epoch, self.best, self.best_epoch, self.bad_evals = 0, -1.0, -1, 0
        self.commit = source_commit()  # recorded with the results
        self.valid = validation_sample(split.valid, config.valid_users, config.seed)

    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad_evals": self.bad_evals,
        }

    def resume(self, path: Path) -> None:
        """Continue from a ``last.pt`` of the same run; only the ``resumable`` settings may have changed,
        and a change is logged, appended to ``resumes.jsonl`` and written into ``config.yaml``."""
        state = read_checkpoint(path, self.device)
        if "optimizer" not in state:
            raise CheckpointError(
                f"{path} holds weights only (a best.pt): evaluate it, or resume from the run's last.pt"
            )
        changed = check_identity(
            path,
            state["identity"],
            self.identity,
            self.config,
            "resumable",
            f"A resume may change only {', '.join(keys_with_role(self.config, 'resumable'))}; for other settings "
            "start a new run",
        )
        restore_weights(self.model, state, path)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if state.get("scaler"):  # fp16 loss scaling (absent from fp32 / bf16 runs and older checkpoints)
                self.scaler.load_state_dict(state["scaler"])
            self.epoch, self.best, self.best_epoch, self.bad_evals = (
                state["epoch"],
                state["best"],
                state["best_epoch"],
                state["bad_evals"],
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: incomplete training state ({exc})") from None
        if self.group.main:
            self.keep_metrics_up_to(self.epoch)
        if changed:
            listed = {key: {"checkpoint": old, "now": new} for key, (old, new) in changed.items()}
            log.warning(
                "resuming %s with changed settings: %s",
                path,
                ", ".join(f"{k} {v['checkpoint']} -> {v['now']}" for k, v in listed.items()),
            )
            if self.group.main:
                with open(self.directory / RESUMES, "a") as handle:
                    handle.write(json.dumps({"epoch": self.epoch, "changed": listed, "commit": self.commit}) + "\n")
                dump_config(
                    self.config.model_copy(update={"run_name": None, "checkpoint": None}), self.directory / CONFIG
                )
        log.info(
            "resumed from %s at epoch %d (best %s %s at epoch %d)",
            path,
            self.epoch,
            self.config.select_metric,
            shown(self.best),
            self.best_epoch,
        )

    def keep_metrics_up_to(self, epoch: int) -> None:
        """Drop log lines a killed run wrote after its checkpoint (they are trained again)."""
        path = self.directory / METRICS
        if path.is_file():
            try:
                lines = [
                    line for line in path.read_text().splitlines() if json.loads(line).get("epoch", epoch + 1) <= epoch
                ]
            except (ValueError, AttributeError) as exc:
                raise GenrecError(f"{path}: damaged log ({exc}); remove the damaged lines to resume") from None
            atomic_write_text(path, "".join(line + "\n" for line in lines))

    def train_epoch(self) -> float:
        config = self.config
        torch.manual_seed(config.seed * 100_003 + self.epoch)  # dropout
        batches = length_bucketed_batches(
            self.history_lengths, self.batch_size, np.random.default_rng([config.seed, self.epoch])
        )
        parts = [self.share(batch) for batch in batches]
        epoch = EpochBatches(
            self.model.training_batch,
            self.train,
            [part for part, _ in parts],
            (config.seed, self.epoch, self.group.rank),
        )
        loader = DataLoader(
            epoch,
            batch_size=None,
            num_workers=config.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator(),
        )  # its own: the global generator seeds dropout only
        self.model.train()
        losses = []
        accumulate = config.grad_accumulation
        self.optimizer.zero_grad(set_to_none=True)
        for step, (batch, (_, share)) in enumerate(
            zip(progress(loader, desc=f"epoch {self.epoch + 1}", leave=False), parts), start=1
        ):
            with torch.autocast(self.device.type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None):
                loss = (self.model.batch_loss if self.parallel is None else self.parallel)(*self.model.on_device(batch))
            losses.append(self.group.sum(loss.item() * share) if self.group.active else loss.item())  # the batch's mean
            if not math.isfinite(losses[-1]):
                self.diverged(f"loss {losses[-1]} at epoch {self.epoch + 1}, step {step} of {len(batches)}")
            together = min(accumulate, len(batches) - (step - 1) // accumulate * accumulate)  # batches in this step
            scale = share * self.group.world / together  # data parallelism averages the processes' gradients
            self.scaler.scale(loss * scale if scale != 1 else loss).backward()
            if step % accumulate == 0 or step == len(batches):
                self.optimizer_step()
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            self.diverged(f"non-finite weights after epoch {self.epoch + 1}")
        return float(np.mean(losses))

    def share(self, batch: np.ndarray) -> tuple[np.ndarray, float]:
        """This process's part of a global batch and its share of the batch's targets (a process left
        without examples reads one at weight 0, so that every process takes part in each step)."""
        if not self.group.active:
            return batch, 1.0
        part = self.group.shard(batch)
        if not len(part):
            return batch[:1], 0.0
        return part, self.train.targets_in(part) / self.train.targets_in(batch)

    def optimizer_step(self) -> None:
        """One update from the gradients accumulated since the last: unscaled (fp16), clipped to
        ``max_grad_norm`` when set, applied, cleared; the learning-rate schedule advances."""
        if self.config.max_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()

    def diverged(self, what: str) -> None:
        """Stop, keeping the last checkpoint written (the end of the previous epoch), untouched."""
        last = self.directory / LAST
        kept = (
            f"the last good checkpoint is {last} (epoch {self.epoch})"
            if last.exists()
            else "no epoch finished, so no checkpoint was kept"
        )
        raise TrainingDiverged(
            f"training diverged: {what} (lr {self.config.lr}); {kept}. Lower --lr (or raise warmup_steps) "
            "and start a new run"
        )

    def log_metrics(self, record: dict) -> None:
        if self.group.main:
            with open(self.directory / METRICS, "a") as handle:
                handle.write(json.dumps(record) + "\n")

    def save(self, name: str, state: dict) -> None:
        """Write a checkpoint (rank 0 only: the processes' states are the same)."""
        if self.group.main:
            save_checkpoint(self.directory / name, self.identity, state)

    def fit(self) -> dict:
        config = self.config
        tracker = open_tracker(config.logger, self.directory, config) if self.group.main else None
        try:
            return self.train_and_test(tracker)
        finally:
            if tracker is not None:
                tracker.close()

    def train_and_test(self, tracker) -> dict:
        config = self.config
        spent: list[float] = []  # seconds of each epoch this process trained, validation included
        with deterministic(config.deterministic):
            while self.epoch < config.epochs and self.bad_evals < config.patience:
                start = time.perf_counter()
                loss = self.train_epoch()
                self.epoch += 1
                record = {"epoch": self.epoch, "loss": round(loss, 5), "lr": self.scheduler.get_last_lr()[0]}
                if self.epoch % config.eval_interval == 0 or self.epoch == config.epochs:
                    metrics = self.evaluator.validate(self.model, self.valid)
                    record["valid"] = {k: recorded(v) for k, v in metrics.items()}
                    if metrics[config.select_metric] > self.best + config.min_delta:
                        self.best, self.best_epoch, self.bad_evals = metrics[config.select_metric], self.epoch, 0
                        self.save(BEST, {"model": self.model.state_dict(), "epoch": self.epoch})
                    else:
                        self.bad_evals += 1
                    log.info(
                        "epoch %d  loss %.4f  valid recall@10 %s  ndcg@10 %s  (best %s %s @%d)  %.1fs%s",
                        self.epoch,
                        loss,
                        shown(metrics["recall@10"]),
                        shown(metrics["ndcg@10"]),
                        config.select_metric,
                        shown(self.best),
                        self.best_epoch,
                        time.perf_counter() - start,
                        time_left(spent + [time.perf_counter() - start], config.epochs - self.epoch),
                    )
                record["seconds"] = round(time.perf_counter() - start, 2)
                spent.append(record["seconds"])
                if len(spent) == 1 and config.epochs - self.epoch > 0:
                    log.info(
                        "epoch %d took %s: at this pace the cap of %d epochs is %s away (early stopping may end "
                        "sooner)",
                        self.epoch,
                        duration(spent[0]),
                        config.epochs,
                        duration(spent[0] * (config.epochs - self.epoch)),
                    )
                self.log_metrics(record)
                if tracker is not None:
                    tracker.log(self.epoch, epoch_values(record))
                self.save(LAST, self.state())
        self.group.barrier()  # best.pt is written before any process reads it
        results = self.test()
        if tracker is not None:
            tracker.final(results)
        return results

    def test(self) -> dict:
        config = self.config
        path = self.directory / BEST
        best = read_checkpoint(path, self.device)
        check_identity(
            path,
            best["identity"],
            self.identity,
            self.config,
            "resumable",
            "It was replaced after training; train the run again",
        )
        restore_weights(self.model, best, path)
        with deterministic(config.deterministic):
            valid, _ = self.evaluator.test(self.model, self.split.valid)
            test, ranks = self.evaluator.test(self.model, self.split.test)
        results = {
            "best_epoch": best["epoch"],
            **self.evaluator.widths(self.model),
            "commit": self.commit,
            "valid": {k: recorded(v) for k, v in valid.items()},
            "test": {k: recorded(v) for k, v in test.items()},
        }
        if self.group.main:
            save_ranks(self.directory / TEST_RANKS, ranks)
            atomic_write_text(self.directory / RESULTS, json.dumps(results, indent=2))
        self.log_metrics({"final": results})
        return results
