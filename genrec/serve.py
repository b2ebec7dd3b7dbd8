"""``genrec serve``: a trained run behind an HTTP JSON API, with concurrent requests micro-batched.

Why FastAPI + uvicorn: request bodies are validated by pydantic models (the library genrec's
configuration already uses), so a malformed request is a 422 naming the field rather than a crash,
and both projects are widely used and maintained. Decoding is not async: handlers run in uvicorn's
thread pool and hand their histories to one :class:`MicroBatcher` thread, which waits a few
milliseconds for concurrent requests with the same options and decodes them in one pass (a beam
search of 64 users costs far less than 64 searches of one).

Endpoints: ``POST /recommend``, ``POST /items`` (add items without retraining: TIGER / PSID / Latte),
``DELETE /items/{item_id}`` (out of stock: never recommended again), ``POST /items/{item_id}/restore``,
``GET /health``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Literal

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from genrec.decoding.diversity import Diversity
from genrec.errors import GenrecError
from genrec.run import Run

log = logging.getLogger(__name__)


class RecommendRequest(BaseModel):
    """One or many histories (raw item ids, oldest first) and how to recommend for them."""

    model_config = ConfigDict(extra="forbid")
    histories: list[list[str]] = Field(min_length=1, max_length=10_000)
    k: int = Field(10, ge=1, le=1000)
    exclude_seen: bool = False
    num_beams: int | None = Field(None, ge=1, le=10_000)
    on_unknown: Literal["error", "skip"] = "error"
    allow: list[str] | None = None
    deny: list[str] | None = None
    category: str | None = None
    diversity: Diversity | None = None

    def options(self) -> tuple:
        """What must be equal for two requests to share a decoding pass."""
        return (
            self.k,
            self.exclude_seen,
            self.num_beams,
            self.on_unknown,
            None if self.allow is None else tuple(self.allow),
            None if self.deny is None else tuple(self.deny),
            self.category,
            self.diversity,
        )


class NewItems(BaseModel):
    """Items to add: each an ``id`` and its text fields (``title``, ``categories``, ...)."""

    model_config = ConfigDict(extra="forbid")
    items: list[dict[str, str]] = Field(min_length=1, max_length=10_000)


class MicroBatcher:
    """One worker thread that owns the run: it decodes queued requests with equal options together
    (up to ``max_batch`` histories, waiting at most ``max_wait_ms`` for company) and applies
    catalogue changes between passes, so no request sees a half-applied change."""

    def __init__(self, run: Run, max_batch: int = 64, max_wait_ms: float = 5.0):
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait_ms / 1000
        self.requests: queue.Queue = queue.Queue()
        self.batches = 0  # decoding passes so far (how much batching happened)
        self.worker = threading.Thread(target=self.serve_forever, name="genrec-batcher", daemon=True)
        self.worker.start()

    def submit(self, request: RecommendRequest) -> Future:
        done: Future = Future()
        self.requests.put(("recommend", request, done))
        return done

    def change(self, action: Literal["remove", "restore", "add_items"], items: list) -> Future:
        done: Future = Future()
        self.requests.put((action, items, done))
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
                    done.set_result(getattr(self.run, kind)(payload))
                except Exception as exc:  # noqa: BLE001 - handed to the request that asked, never lost in the thread
                    done.set_exception(exc)

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
        start = 0
        for request, done in entries:
            done.set_result(lists[start : start + len(request.histories)])
            start += len(request.histories)

    def close(self) -> None:
        self.requests.put(None)
        self.worker.join(timeout=10)


def create_app(run: Run, max_batch: int = 64, max_wait_ms: float = 5.0, timeout_s: float = 120.0) -> FastAPI:
    """The HTTP app over ``run``; its :class:`MicroBatcher` is ``app.state.batcher``."""
    app = FastAPI(title="genrec", summary=f"{run.label} trained on {run.interactions.name}")
    batcher = MicroBatcher(run, max_batch, max_wait_ms)
    app.state.batcher = batcher
    app.router.add_event_handler("shutdown", batcher.close)

    def wait(done: Future):
        try:
            return done.result(timeout=timeout_s)
        except GenrecError as exc:  # unknown ids, a model that cannot add items, ...
            raise HTTPException(status_code=400, detail=str(exc)) from None

    @app.get("/health")
    def health() -> dict:
        return {
            "status": "ok",
            "model": run.label,
            "dataset": run.interactions.name,
            "items": int(run.available.sum()),
            "removed": int((~run.available).sum()),
        }

    @app.post("/recommend")
    def recommend(request: RecommendRequest) -> dict:
        lists = wait(batcher.submit(request))
        return {
            "recommendations": [
                {"items": [item for item, _ in ranked], "scores": [score for _, score in ranked]} for ranked in lists
            ]
        }

    def known(item_id: str) -> str:
        if item_id not in run.item_index:
            raise HTTPException(
                status_code=404, detail=f"item {item_id!r} is not in the catalogue of {run.interactions.name}"
            )
        return item_id

    @app.post("/items")
    def add(request: NewItems) -> dict:
        added = wait(batcher.change("add_items", request.items))
        return {"added": [{"id": item, "semantic_id": list(code)} for item, code in added]}

    @app.delete("/items/{item_id}")
    def remove(item_id: str) -> dict:
        wait(batcher.change("remove", [known(item_id)]))
        return {"removed": item_id}

    @app.post("/items/{item_id}/restore")
    def restore(item_id: str) -> dict:
        wait(batcher.change("restore", [known(item_id)]))
        return {"restored": item_id}

    return app
