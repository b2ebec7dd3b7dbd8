"""Optional experiment tracking (``--logger``): every epoch's training loss, learning rate and
validation metrics, as TensorBoard event files in the run folder (``tensorboard/``) or as a Weights &
Biases run. ``metrics.jsonl`` and ``run.log`` are written either way; a tracker only mirrors them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genrec.errors import ConfigError


class TensorBoard:
    def __init__(self, directory: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "logger=tensorboard needs the tensorboard package: pip install 'genrec[tracking]'"
            ) from None
        self.writer = SummaryWriter(log_dir=str(directory / "tensorboard"))

    def log(self, epoch: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WeightsAndBiases:
    def __init__(self, directory: Path, config: Any):
        try:
            import wandb
        except ImportError:
            raise ConfigError(
                "logger=wandb needs the wandb package: pip install wandb (and wandb login, or WANDB_MODE=offline)"
            ) from None
        self.wandb = wandb
        self.run = wandb.init(
            project="genrec", name=directory.name, dir=str(directory), config=config.model_dump(mode="json")
        )

    def log(self, epoch: int, values: dict[str, float]) -> None:
        self.run.log(values, step=epoch)

    def close(self) -> None:
        self.run.finish()


def open_tracker(kind: str, directory: Path, config: Any) -> TensorBoard | WeightsAndBiases | None:
    """The tracker ``kind`` names (``none``: no tracker)."""
    if kind == "tensorboard":
        return TensorBoard(directory)
    if kind == "wandb":
        return WeightsAndBiases(directory, config)
    return None


def epoch_values(record: dict) -> dict[str, float]:
    """A ``metrics.jsonl`` epoch record as tracker scalars: ``train/loss``, ``train/lr``,
    ``valid/<metric>``."""
    values = {"train/loss": record["loss"], "train/lr": record["lr"]}
    values.update({f"valid/{name}": value for name, value in record.get("valid", {}).items()})
    return values
