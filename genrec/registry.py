"""Plug-in discovery: every sub-package of ``genrec.datasets`` / ``genrec.models`` that has a
``config.yaml`` is a dataset / model, named after its folder. Adding one needs no edit elsewhere.

Packages outside genrec add theirs through entry points, so a user's model, dataset, quantizer or command
lives in the user's own package and is found once that package is installed::

    [project.entry-points."genrec.models"]
    MyModel = "my_package.my_model"          # a package with config.yaml, Settings and build()
    [project.entry-points."genrec.datasets"]
    MyData = "my_package.my_data"            # a package with config.yaml, Settings and load()
    [project.entry-points."genrec.quantizers"]
    my_vq = "my_package.quantizer:QUANTIZER" # a genrec.semantic_ids.methods.Quantizer named my_vq
    [project.entry-points."genrec.commands"]
    my-report = "my_package.cli:cmd_report"  # genrec my-report: (argv) -> exit code, docstring = --help

A plug-in may not take a name genrec has: the error names both.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from genrec.errors import GenrecError

GROUPS = {
    "model": "genrec.models",
    "dataset": "genrec.datasets",
    "quantizer": "genrec.quantizers",
    "command": "genrec.commands",
}


def plugins(kind: str, taken: Iterable[str] = ()) -> dict[str, EntryPoint]:
    """The installed packages' entry points for ``kind`` (a key of :data:`GROUPS`), by name; one that
    takes a name of genrec's own (``taken``) is an error naming its distribution."""
    found = {entry.name: entry for entry in entry_points(group=GROUPS[kind])}
    clashes = sorted(set(found) & set(taken))
    if clashes:
        raise GenrecError(
            f"the {kind} plug-in {clashes[0]!r} from {origin(found[clashes[0]])} takes the name of genrec's own "
            f"{kind}: rename its entry point"
        )
    return found


def load_plugin(entry: EntryPoint, kind: str) -> Any:
    """What ``entry`` names (a module, or ``module:attribute``); a failed import is one error line."""
    try:
        return entry.load()
    except (ImportError, AttributeError) as exc:
        raise GenrecError(f"the {kind} plug-in {entry.name!r} ({origin(entry)}) cannot be loaded: {exc}") from None


def origin(entry: EntryPoint) -> str:
    """Where a plug-in comes from, for messages: its target and its distribution."""
    where = f" (distribution {entry.dist.name})" if entry.dist is not None else ""
    return f"{entry.value}{where}"


class Registry:
    """The packages under ``directory`` that have a ``config.yaml``, and those installed packages
    declare as plug-ins of ``kind`` (``model`` or ``dataset``)."""

    def __init__(self, package: str, directory: str, kind: str):
        self.package = package
        self.directory = Path(directory)
        self.kind = kind

    def builtin(self) -> list[str]:
        return sorted(p.parent.name for p in self.directory.glob("*/config.yaml"))

    def plugins(self) -> dict[str, EntryPoint]:
        return plugins(self.kind, self.builtin())

    def names(self) -> list[str]:
        return sorted([*self.builtin(), *self.plugins()])

    def get(self, name: str) -> ModuleType:
        if name in self.builtin():
            return importlib.import_module(f"{self.package}.{name}")
        entry = self.plugins().get(name)
        if entry is None:
            raise KeyError(name)
        return load_plugin(entry, self.kind)

    def config_file(self, name: str) -> Path:
        if name in self.builtin():
            return self.directory / name / "config.yaml"
        path = Path(self.get(name).__file__).parent / "config.yaml"
        if not path.is_file():
            raise GenrecError(f"the {self.kind} plug-in {name!r} has no config.yaml beside {path.parent}/__init__.py")
        return path
