"""``genrec serve``: a trained run behind an HTTP JSON API, with concurrent requests micro-batched.

Why FastAPI + uvicorn: request bodies are validated by pydantic models (the library genrec's
configuration already uses), so a malformed request is a 422 naming the field rather than a crash,
and both projects are widely used and maintained. Decoding is not async: handlers hand their
histories to a batcher (:mod:`genrec.batcher`) and await its answer on the event loop; the batcher
decodes the requests queued with the same options in one pass (a beam search of 64 users costs far
less than 64 searches of one). ``genrec serve`` runs the batcher in a process of its own
(:class:`genrec.batcher_process.BatcherProcess`); an app built in Python around a loaded run may
run it as a thread (:class:`genrec.batcher.MicroBatcher`).

Endpoints: ``POST /recommend``, ``POST /items`` (add items without retraining: TIGER / PSID / Latte),
``DELETE /items/{item_id}`` (out of stock: never recommended again), ``POST /items/{item_id}/restore``,
``GET /health``. An item id may hold ``/`` (``DELETE /items/a/b`` removes ``a/b``) or any other
character, percent-encoded.

What a client can make the server do is bounded: bodies over ``max_body_bytes`` are a 413 before they
are read whole; a rejected body is a 422 that names the fields and never echoes their values (a
value such as ``NaN`` cannot even be written back as JSON, which made a 500), and error details are
cut to a few hundred characters. With ``api_key`` set, catalogue changes (and with
``auth="all"`` recommendations too) need the header ``Authorization: Bearer <key>`` or
``X-API-Key: <key>``; without a key they are refused unless ``open_changes`` (the CLI allows them
only on a loopback address).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from concurrent.futures import Future
from typing import Literal

from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from genrec.batcher import Batcher, NotInCatalogue
from genrec.batcher_process import DecoderEnded
from genrec.decoding.diversity import Diversity
from genrec.errors import GenrecError

MAX_BODY_BYTES = 16 * 2**20  # 10,000 histories of 50 ids of 30 characters fit
MAX_DETAIL_CHARS = 500  # an error message echoes ids and names: cut, so a huge request is not mirrored back


def cut(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


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


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is a 413, judged by its Content-Length
    or, when it is streamed without one, as soon as its chunks pass the limit; the app then receives
    the body it would have, read once."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await self.refuse(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self.refuse(scope, receive, send)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def refuse(self, scope, receive, send) -> None:
        detail = f"request body over {self.limit} bytes: send fewer histories or items per request"
        await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)


def field_errors(exc: RequestValidationError) -> list[dict]:
    """pydantic's errors with where and what, without the rejected value (``input``/``ctx``): echoing
    it mirrors a large body back, and a ``NaN`` could not be written as JSON at all."""
    return [
        {
            "loc": [cut(str(part), 100) if isinstance(part, str) else part for part in error["loc"]],
            "msg": cut(error["msg"]),
            "type": error["type"],
        }
        for error in exc.errors()[:20]
    ]


def checked_auth(auth: str, api_key: str | None) -> None:
    """Refuse an ``auth`` that is not a mode, or ``"all"`` without a key to check."""
    if auth not in ("changes", "all"):
        raise GenrecError(f"auth must be 'changes' or 'all', got {auth!r}")
    if auth == "all" and not api_key:
        raise GenrecError("auth='all' needs an api_key (the key that every request must carry)")


def create_app(
    batcher: Batcher,
    timeout_s: float = 120.0,
    api_key: str | None = None,
    auth: Literal["changes", "all"] = "changes",
    open_changes: bool = True,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The HTTP app over ``batcher`` (``app.state.batcher``, closed when the app shuts down): a
    :class:`genrec.batcher.MicroBatcher` over a loaded run, or the process ``genrec serve`` starts
    (:class:`genrec.batcher_process.BatcherProcess`). ``api_key`` guards the catalogue changes
    (``auth="all"``: every route but ``/health``); without one, changes are refused unless
    ``open_changes``. Bodies are limited to ``max_body_bytes``; an answer not ready within
    ``timeout_s`` is an error."""
    checked_auth(auth, api_key)
    app = FastAPI(title="genrec", summary=f"{batcher.label} trained on {batcher.dataset}")
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.state.batcher = batcher
    app.router.add_event_handler("shutdown", batcher.close)

    @app.exception_handler(RequestValidationError)
    async def invalid(_, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": field_errors(exc)}, status_code=422)

    def key_checked(authorization: str | None, x_api_key: str | None) -> None:
        """The request's key against ``api_key``, compared in constant time."""
        bearer = authorization[7:] if authorization and authorization[:7].lower() == "bearer " else None
        given = x_api_key or bearer
        if given is None or not hmac.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(
                status_code=401,
                detail="this route needs the server's API key: header 'Authorization: Bearer <key>' or 'X-API-Key'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    async def may_change(authorization: str | None = Header(None), x_api_key: str | None = Header(None)) -> None:
        if api_key:
            key_checked(authorization, x_api_key)
        elif not open_changes:
            raise HTTPException(
                status_code=403,
                detail="catalogue changes are off: this server listens beyond this machine without an API key "
                "(start it with GENREC_API_KEY or --api_key_file)",
            )

    async def may_read(authorization: str | None = Header(None), x_api_key: str | None = Header(None)) -> None:
        if auth == "all":
            key_checked(authorization, x_api_key)

    async def wait(done: Future):
        """The batcher's answer, awaited on the event loop (no thread of uvicorn's pool is held per
        request: a pool hop per request cost more CPU than parsing it)."""
        try:
            return await asyncio.wait_for(asyncio.wrap_future(done), timeout_s)
        except NotInCatalogue as exc:
            raise HTTPException(status_code=404, detail=cut(str(exc))) from None
        except GenrecError as exc:  # unknown ids, a model that cannot add items, ...
            raise HTTPException(status_code=400, detail=cut(str(exc))) from None
        except DecoderEnded as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from None

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", **await wait(batcher.health())}

    @app.post("/recommend", dependencies=[Depends(may_read)])
    async def recommend(request: RecommendRequest) -> Response:
        lists = await wait(batcher.submit(request))
        answer = {
            "recommendations": [
                {"items": [item for item, _ in ranked], "scores": [score for _, score in ranked]} for ranked in lists
            ]
        }  # plain strings and floats: written directly, not walked by FastAPI's encoder
        return Response(json.dumps(answer, separators=(",", ":")), media_type="application/json")

    @app.post("/items", dependencies=[Depends(may_change)])
    async def add(request: NewItems) -> dict:
        added = await wait(batcher.change("add_items", request.items))
        return {"added": [{"id": item, "semantic_id": list(code)} for item, code in added]}

    @app.post("/items/{item_id:path}/restore", dependencies=[Depends(may_change)])
    async def restore(item_id: str) -> dict:
        await wait(batcher.change("restore", [item_id]))
        return {"restored": item_id}

    @app.delete("/items/{item_id:path}", dependencies=[Depends(may_change)])
    async def remove(item_id: str) -> dict:
        await wait(batcher.change("remove", [item_id]))
        return {"removed": item_id}

    return app
