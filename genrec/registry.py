"""Plug-in discovery: every sub-package of ``genrec.datasets`` / ``genrec.models`` that has a
``config.yaml`` is a dataset / model, named after its folder. Adding one needs no edit elsewhere."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType


class Registry:
    def __init__(self, package: str, directory: str):
        self.package = package
        self.directory = Path(directory)

    def names(self) -> list[str]:
        return sorted(p.parent.name for p in self.directory.glob("*/config.yaml"))

    def get(self, name: str) -> ModuleType:
        if name not in self.names():
            raise KeyError(name)
        return importlib.import_module(f"{self.package}.{name}")

    def config_file(self, name: str) -> Path:
        return self.directory / name / "config.yaml"
