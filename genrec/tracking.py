"""Optional experiment tracking (``--logger``): every epoch's training loss, learning rate and
validation metrics, then the run's settings with its test metrics, as TensorBoard event files in the
run folder (``tensorboard/``, the settings under its HPARAMS tab), a Weights & Biases run or an
MLflow run (``MLFLOW_TRACKING_URI``, else ``mlruns/`` in the run folder). ``metrics.jsonl`` and
``run.log`` are written either way; a tracker only mirrors them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genrec.errors import ConfigError


def hyperparameters(config: Any) -> dict[str, Any]:
    """The run's settings as trackers take them: numbers, strings and booleans as they are, lists and
    ``None`` as text (TensorBoard's hparams and MLflow's params accept only scalars)."""
    return {
        key: value if isinstance(value, bool | int | float | str) else str(value)
        for key, value in config.model_dump(mode="json").items()
    }


def final_values(results: dict) -> dict[str, float]:
    """``results.json``'s test and validation metrics as ``test/<metric>`` and ``valid_best/<metric>``."""
    values = {f"test/{name}": value for name, value in results.get("test", {}).items()}
    values.update({f"valid_best/{name}": value for name, value in results.get("valid", {}).items()})
    return {name: float(value) for name, value in values.items() if isinstance(value, int | float)}


class TensorBoard:
    def __init__(self, directory: Path, config: Any):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "logger=tensorboard needs the tensorboard package: pip install 'genrec[tracking]'"
            ) from None
        self.writer, self.config = SummaryWriter(log_dir=str(directory / "tensorboard")), config

    def log(self, epoch: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, epoch)
        self.writer.flush()

    def final(self, results: dict) -> None:
        self.writer.add_hparams(hyperparameters(self.config), final_values(results), run_name=".")
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

    def final(self, results: dict) -> None:
        self.run.summary.update(final_values(results))

    def close(self) -> None:
        self.run.finish()


class MLflow:
    def __init__(self, directory: Path, config: Any):
        try:
            import mlflow
        except ImportError:
            raise ConfigError("logger=mlflow needs the mlflow package: pip install mlflow") from None
        import os

        self.mlflow = mlflow
        if not os.environ.get("MLFLOW_TRACKING_URI"):  # no server named: a file store beside the run's files
            mlflow.set_tracking_uri((directory / "mlruns").resolve().as_uri())
        mlflow.set_experiment("genrec")
        self.run = mlflow.start_run(run_name=directory.name)
        mlflow.log_params(hyperparameters(config))

    def log(self, epoch: int, values: dict[str, float]) -> None:
        self.mlflow.log_metrics({name.replace("@", "_at_"): value for name, value in values.items()}, step=epoch)

    def final(self, results: dict) -> None:
        self.mlflow.log_metrics({name.replace("@", "_at_"): value for name, value in final_values(results).items()})

    def close(self) -> None:
        self.mlflow.end_run()


def open_tracker(kind: str, directory: Path, config: Any) -> TensorBoard | WeightsAndBiases | MLflow | None:
    """The tracker ``kind`` names (``none``: no tracker)."""
    trackers = {"tensorboard": TensorBoard, "wandb": WeightsAndBiases, "mlflow": MLflow}
    return trackers[kind](directory, config) if kind in trackers else None


def epoch_values(record: dict) -> dict[str, float]:
    """A ``metrics.jsonl`` epoch record as tracker scalars: ``train/loss``, ``train/lr``,
    ``valid/<metric>``."""
    values = {"train/loss": record["loss"], "train/lr": record["lr"]}
    values.update({f"valid/{name}": value for name, value in record.get("valid", {}).items()})
    return values
