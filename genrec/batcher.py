"""The decoding side of ``genrec serve``: one thread that owns a run and decodes queued requests
together (:class:`MicroBatcher`), and what the HTTP side may ask of it (:class:`Batcher`).

The HTTP app (:mod:`genrec.serve`) never touches the run: it hands requests to a batcher and awaits
futures. The batcher runs either in the server's own process (:class:`MicroBatcher`, for an app built
around a run already in memory) or in a process of its own (:class:`genrec.batcher_process.BatcherProcess`,
what ``genrec serve`` starts), where decoding and HTTP do not share an interpreter lock.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Literal, Protocol

import torch

from genrec.errors import GenrecError
from genrec.journal import Journal

log = logging.getLogger(__name__)

Change = Literal["remove", "restore", "add_items"]


class NotInCatalogue(GenrecError):
    """A catalogue change named an item the catalogue does not have (HTTP 404)."""


class Batcher(Protocol):
    """What the HTTP app needs from the side that decodes: the run's ``label`` and ``dataset``, and
    requests, catalogue changes and a health report, each answered through a future."""

    label: str
    dataset: str

    def submit(self, request: Any) -> Future:
        """The lists for ``request`` (a :class:`genrec.serve.RecommendRequest`), one per history."""
        ...

    def change(self, action: Change, items: list) -> Future:
        """``action`` applied to ``items`` between decoding passes; the run method's result."""
        ...

    def health(self) -> Future:
        """The catalogue's size, removed items, decoding passes so far and torch threads."""
        ...

    def close(self) -> None:
        """Stop decoding (what is queued is dropped)."""
        ...


class MicroBatcher:
    """One worker thread that owns the run: whenever it is free, it takes every queued request with
    equal options (up to ``max_batch`` histories, waiting at most ``max_wait_ms`` for company) and
    decodes them in one pass, and it applies catalogue changes between passes, so no request sees a
    half-applied change. Under load, requests gather while a pass runs, so batches grow with the
    load without a timer delaying any request when the worker is idle (``max_wait_ms`` 0).

    With a ``journal`` (:class:`genrec.journal.Journal`'s file), the changes it recorded are applied
    first and every new one is recorded, so the catalogue survives a restart.

    Why one worker with the process's torch threads rather than several: passes of a few users are
    many small operators, and two decoding threads slowed each other 3.5-fold through the
    interpreter lock (docs/results.md, "Serving"); one thread with intra-op threads keeps the cores
    for the large operators."""

    def __init__(self, run: Any, max_batch: int = 64, max_wait_ms: float = 0.0, journal: Path | None = None):
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait_ms / 1000
        self.label, self.dataset = run.label, run.interactions.name
        self.journal = None if journal is None else Journal(journal)  # applied changes, to outlive a restart
        if self.journal is not None and (replayed := self.journal.replay(run)):
            log.info("%s: %d catalogue change(s) replayed", journal, replayed)
        self.requests: queue.Queue = queue.Queue()
        self.batches = 0  # decoding passes so far (how much batching happened)
        self.torch_threads = torch.get_num_threads()  # the worker's own, once it has decoded
        self.worker = threading.Thread(target=self.serve_forever, name="genrec-batcher", daemon=True)
        self.worker.start()

    def submit(self, request: Any) -> Future:
        """The lists for ``request``, decoded with the requests queued beside it."""
        done: Future = Future()
        self.requests.put(("recommend", request, done))
        return done

    def change(self, action: Change, items: list) -> Future:
        """``action`` applied to ``items`` once the requests queued before it are decoded."""
        done: Future = Future()
        self.requests.put((action, items, done))
        return done

    def health(self) -> Future:
        """Read at once, between or during passes (counts that a pass does not change)."""
        done: Future = Future()
        done.set_result(
            {
                "model": self.label,
                "dataset": self.dataset,
                "items": int(self.run.available.sum()),
                "removed": int((~self.run.available).sum()),
                "decoding_passes": self.batches,
                "torch_threads": self.torch_threads,
            }
        )
        return done

    def serve_forever(self) -> None:
        while True:
            first = self.requests.get()
            if first is None:
                return
            pending = [first]
            deadline = time.monotonic() + self.max_wait
            size = len(first[1].histories) if first[0] == "recommend" else 0
            while first[0] == "recommend" and size < self.max_batch:
                try:
                    entry = self.requests.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if entry is None:
                    self.requests.put(None)
                    break
                pending.append(entry)
                if entry[0] != "recommend":
                    break  # a catalogue change: decode what came before it first
                size += len(entry[1].histories)
            self.process(pending)

    def process(self, pending: list) -> None:
        groups: dict[tuple, list] = {}
        for kind, payload, done in pending:
            if kind == "recommend":
                groups.setdefault(payload.options(), []).append((payload, done))
        for entries in groups.values():
            self.decode(entries)
        for kind, payload, done in pending:
            if kind != "recommend":
                try:
                    done.set_result(self.apply(kind, payload))
                except Exception as exc:  # noqa: BLE001 - handed to the request that asked, never lost in the thread
                    done.set_exception(exc)

    def apply(self, kind: Change, items: list) -> Any:
        if kind in ("remove", "restore"):
            missing = [item for item in items if item not in self.run.item_index]
            if missing:
                raise NotInCatalogue(f"item {missing[0]!r} is not in the catalogue of {self.dataset}")
        result = getattr(self.run, kind)(items)
        if self.journal is not None:
            self.journal.record(kind, items)
        return result

    def decode(self, entries: list) -> None:
        first = entries[0][0]
        histories = [history for request, _ in entries for history in request.histories]
        try:
            lists = self.run.recommend(
                histories,
                k=first.k,
                exclude_seen=first.exclude_seen,
                num_beams=first.num_beams,
                on_unknown=first.on_unknown,
                allow=first.allow,
                deny=first.deny,
                category=first.category,
                diversity=first.diversity,
            )
        except GenrecError as exc:
            if len(entries) > 1:  # one request's unknown id must not fail its neighbours: decode them apart
                for entry in entries:
                    self.decode([entry])
            else:
                entries[0][1].set_exception(exc)
            return
        except Exception as exc:  # noqa: BLE001 - handed to the waiting requests, never lost in the worker thread
            for _, done in entries:
                done.set_exception(exc)
            return
        self.batches += 1
        self.torch_threads = torch.get_num_threads()
        start = 0
        for request, done in entries:
            done.set_result(lists[start : start + len(request.histories)])
            start += len(request.histories)

    def close(self) -> None:
        self.requests.put(None)
        self.worker.join(timeout=10)
