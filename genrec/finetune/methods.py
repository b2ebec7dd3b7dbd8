"""The fine-tuning methods by name (``genrec finetune --method=NAME``) and the run folder a
fine-tuning writes."""

from __future__ import annotations

import json
from pathlib import Path

from genrec.cache import atomic_write_text
from genrec.config import dump_config
from genrec.finetune.dpo import DPOSettings, DPOTrainer
from genrec.finetune.grpo import GRPOSettings, GRPOTrainer
from genrec.finetune.loop import Finetuner, FinetuneSettings
from genrec.run_folder import CONFIG, FINETUNE

METHODS: dict[str, tuple[type[FinetuneSettings], type[Finetuner]]] = {
    "grpo": (GRPOSettings, GRPOTrainer),
    "dpo": (DPOSettings, DPOTrainer),
}


def finetune(run, settings: FinetuneSettings, directory: Path) -> dict:
    """Fine-tune ``run`` (a :class:`genrec.run.Run`) with the method whose settings ``settings`` are,
    into the new run folder ``directory``: its ``config.yaml`` is the parent's, so
    :func:`genrec.load_run` loads it; ``finetune.json`` records the method, the parent and the
    settings; ``best.pt`` is the starting model until validation improves on it. The test results."""
    (method,) = [name for name, (kind, _) in METHODS.items() if type(settings) is kind]
    directory.mkdir(parents=True, exist_ok=False)
    dump_config(run.config.model_copy(update={"run_name": None, "checkpoint": None}), directory / CONFIG)
    atomic_write_text(
        directory / FINETUNE,
        json.dumps(
            {"method": method, "parent": str(run.directory), "settings": settings.model_dump(mode="json")}, indent=2
        ),
    )
    return METHODS[method][1](run, settings, directory).fit()
