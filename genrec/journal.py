"""Catalogue changes that outlive the server: ``genrec serve`` appends every change it applies (items
added, removed, restored) to a JSON-lines journal and replays the journal when it starts again, so a
restart serves the catalogue the last process served, not the one the run was trained on.

Replaying gives the same semantic IDs as the first time: new items are embedded and quantized
against the catalogue as trained, one addition after another, as they were applied. A change is
written after it is applied (a change the run refuses is never recorded) and flushed to the disk
before the request is answered.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from genrec.errors import GenrecError

ACTIONS = ("add_items", "remove", "restore")


class Journal:
    """The journal at ``path`` (created with its first change)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def replay(self, run) -> int:
        """Apply the recorded changes to ``run`` in their order; the number applied. A line that is
        not a change, or that the run refuses, is an error naming it: the journal belongs to another
        run or was edited."""
        if not self.path.is_file():
            return 0
        applied = 0
        with open(self.path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    change = json.loads(line)
                    action, items = change["action"], change["items"]
                except (ValueError, KeyError, TypeError):
                    raise GenrecError(f"{self.path}:{number}: not a catalogue change") from None
                if action not in ACTIONS or not isinstance(items, list):
                    raise GenrecError(f"{self.path}:{number}: not a catalogue change ({action!r})")
                try:
                    getattr(run, action)(items)
                except GenrecError as exc:
                    raise GenrecError(
                        f"{self.path}:{number}: cannot replay this change on {run.directory} ({exc}); is the "
                        "journal another run's?"
                    ) from None
                applied += 1
        return applied

    def record(self, action: Literal["add_items", "remove", "restore"], items: list[Any]) -> None:
        """Append one applied change and flush it to the disk."""
        line = json.dumps({"action": action, "items": items}) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise GenrecError(
                f"the change was applied but could not be recorded in {self.path} ({exc.strerror}): this server "
                "serves it, a restarted one will not"
            ) from None
