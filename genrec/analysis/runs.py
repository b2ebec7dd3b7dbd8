"""A finished run (a folder ``genrec train`` or ``genrec compare`` wrote) loaded for analysis: its
resolved configuration, best checkpoint, split and the semantic IDs its items have."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genrec.config import load_config
from genrec.data import Interactions, LeaveOneOutSplit
from genrec.errors import ConfigError
from genrec.semantic_ids import SemanticIDs


@dataclass
class FinishedRun:
    directory: Path
    config: Any
    model: Any
    interactions: Interactions
    split: LeaveOneOutSplit
    sids: SemanticIDs  # the model's own; for an item-ID model, those its configuration would build

    @property
    def label(self) -> str:
        """The model, with its backbone when it is not the papers' T5."""
        architecture = getattr(self.config, "architecture", "t5")
        return self.config.model if architecture == "t5" else f"{self.config.model} ({architecture})"


def load_run(directory: Path, overrides: dict[str, Any] | None = None) -> FinishedRun:
    """Load ``directory``'s best checkpoint; ``overrides`` may change where data and caches are
    (``data_dir``, ``cache_dir``, ``device``) and how it is evaluated, never what it learned."""
    from genrec.pipeline import load_trained
    from genrec.semantic_ids import semantic_ids

    directory = Path(directory)
    if not (directory / "config.yaml").is_file() or not (directory / "best.pt").is_file():
        raise ConfigError(f"{directory} is not a finished run (it needs config.yaml and best.pt)")
    config = load_config([f"--config={directory / 'config.yaml'}"], **(overrides or {}))
    model, interactions, split = load_trained(config, directory / "best.pt")
    sids = getattr(model, "semantic_ids", None) or semantic_ids(config, interactions, split)
    return FinishedRun(directory, config, model, interactions, split, sids)
