"""The FastAPI application: a thin layer over the same core the embedded SDK uses.

Errors are rendered in one place: Proctor's own exceptions carry their HTTP status,
validation errors are 422 naming the field, bodies over the limit are 413. Anything else
is a bug, and is left to surface as one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from .._errors import (
    ConfigError,
    PolicyError,
    ProctorError,
    StoreError,
    TooManyRequests,
    status_of,
)
from .._extras import missing
from .._settings import float_setting, int_setting, setting
from ..sdk import Proctor
from ..telemetry.alerts import AlertMonitor
from ..telemetry.metrics import StoreMetrics
from ..telemetry.notifications import deliver_due
from . import refusals
from .auth import TokenVerifier, Unauthorized
from .console import console, console_error, login_needed
from .console_base import LoginNeeded

DEFAULT_MAX_BODY = 1 << 20
log = logging.getLogger(__name__)
SWEEP_SECONDS = 5.0
DELIVER_SECONDS = 1.0


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, declared or streamed, and URLs
    carrying NUL characters with 422 (no database text column can hold them)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b""):
            await self._reply(
                send,
                422,
                {"error": "InvalidRequest", "message": "URLs must not contain NUL characters"},
            )
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._too_large(send)
                return
        seen = 0
        limit = self.limit

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._too_large(send)

    async def _too_large(self, send: Any) -> None:
        message = f"request bodies are limited to {self.limit} bytes"
        await self._reply(send, 413, {"error": "payload_too_large", "message": message})

    @staticmethod
    async def _reply(send: Any, status: int, content: dict[str, Any]) -> None:
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": orjson.dumps(content)})


class _TooLarge(Exception):
    pass


def create_app(
    px: Proctor,
    *,
    max_body: int = DEFAULT_MAX_BODY,
    sweep: bool = True,
    session_secret: str | None = None,
) -> FastAPI:
    """The server for one embedded Proctor (its database)."""
    verifier = TokenVerifier(px.store)
    alert_every = float_setting("alert_check_seconds")  # a bad value stops the start, loudly
    drift_every = float_setting("drift_check_seconds")
    tally = refusals.RefusalTally(
        float_setting("refusal_window_seconds"), int_setting("refusal_limit")
    )
    if tally.limit < 1:
        raise ConfigError("PROCTOR_REFUSAL_LIMIT must be at least 1")
    # Decisions are written one at a time on a thread of their own: off the event loop (a
    # write may wait seconds for another process's lock), queued in order rather than
    # contending for SQLite's lock with its sleeping retries, and never starving the
    # threads that other requests and background tasks use.
    decider = ThreadPoolExecutor(max_workers=1, thread_name_prefix="proctor-decide")
    shutting_down = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(refusals.flushing(px.store, tally))]
        if sweep:
            tasks += [
                asyncio.create_task(_sweeper(px)),
                asyncio.create_task(_alerting(px, alert_every)),
                asyncio.create_task(_drifting(px, drift_every)),
                asyncio.create_task(_delivering(px)),
            ]
        yield
        shutting_down.set()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(StoreError):  # what is counted so far, before the process ends
            await asyncio.to_thread(refusals.write_due, px.store, tally, everything=True)
        decider.shutdown(wait=False)

    app = FastAPI(
        title="Proctor",
        version="1",
        summary="Policy-as-code decisions, human review and a tamper-evident log for AI agents.",
        default_response_class=ORJSONResponse,
        lifespan=lifespan,
    )
    app.state.px = px
    app.state.verifier = verifier
    app.state.refusals = tally
    app.state.decider = decider
    app.state.shutting_down = shutting_down

    @app.exception_handler(ProctorError)
    async def proctor_error(request: Request, exc: ProctorError) -> Response:
        status = 401 if isinstance(exc, Unauthorized) else status_of(exc)
        if status in (401, 403, 429):
            await refusals.record(request, status, exc)
        headers = None
        if status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        elif isinstance(exc, TooManyRequests):
            headers = {"Retry-After": str(exc.retry_after)}
        if not request.url.path.startswith("/api/"):
            return await console_error(request, exc, status, headers)
        body: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
        if isinstance(exc, PolicyError):
            body.update(line=exc.line, column=exc.column, message=exc.message)
        return ORJSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"{where}: {first.get('msg')}"
        if where == "body" and "json" not in request.headers.get("content-type", ""):
            message = "send the request body as JSON (Content-Type: application/json)"
        return ORJSONResponse(
            {
                "error": "InvalidRequest",
                "message": message,
                "field": where,
                "errors": [
                    {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg")}
                    for e in errors[:20]
                ],
            },
            status_code=422,
        )

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, Any]:
        """The process is up: answered on the event loop, touching neither the database nor
        a worker thread, so a busy database never makes a live server look dead."""
        return {"ok": True}

    metrics = StoreMetrics(px.store)
    app.state.metrics = metrics

    @app.get("/metrics", tags=["health"])
    def prometheus() -> Response:
        """Prometheus metrics (text format), for the whole database, not only this server."""
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/readyz", tags=["health"])
    def readyz() -> Response:
        """The database answers; 503 while it does not."""
        try:
            with px.store.read() as conn:
                conn.exec_driver_sql("SELECT 1")
        except StoreError as exc:
            return ORJSONResponse({"ok": False, "message": str(exc)}, status_code=503)
        return ORJSONResponse({"ok": True})

    from .api import router
    from .drift_api import router as drift_router

    app.include_router(router)
    app.include_router(drift_router)
    app.include_router(console)
    app.add_exception_handler(LoginNeeded, login_needed)
    app.mount(
        "/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static"
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret or setting("secret_key") or secrets.token_urlsafe(32),
        session_cookie="proctor_session",
        same_site="lax",
        https_only=False,
        max_age=12 * 3600,
    )
    app.add_middleware(BodyLimit, limit=max_body)
    return app


IDEMPOTENCY_SECONDS = 24 * 3600.0


async def _sweeper(px: Proctor) -> None:
    """Apply review timeouts and find dead runners, so nothing waits on an absent agent;
    forget idempotency keys older than a day (retries come within seconds)."""
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        with contextlib.suppress(StoreError):  # the database is back next round, or readyz says
            await asyncio.to_thread(px.reviews.sweep)
            await asyncio.to_thread(_forget_keys, px, time.time() - IDEMPOTENCY_SECONDS)


async def _alerting(px: Proctor, every: float) -> None:
    """Check the policy's alerts every ``alert_check_seconds``."""
    monitor = AlertMonitor(px.store)
    while True:
        await asyncio.sleep(every)
        with contextlib.suppress(StoreError):
            await asyncio.to_thread(monitor.check)


async def _drifting(px: Proctor, every: float) -> None:
    """Read the log for the policy's drift monitors every ``drift_check_seconds``; without
    the drift extra (numpy) the server serves on and says once why it does not."""
    try:
        from ..drift.monitor import DriftMonitor
    except ImportError as exc:
        log.warning("drift monitors are not checked: %s", missing("drift", exc))
        return
    monitor = DriftMonitor(px.store)
    while True:
        await asyncio.sleep(every)
        with contextlib.suppress(StoreError):
            await asyncio.to_thread(monitor.check)


async def _delivering(px: Proctor) -> None:
    """Send due notifications; on threads of their own, so a slow target delays nothing
    but other notifications."""
    while True:
        await asyncio.sleep(DELIVER_SECONDS)
        with contextlib.suppress(StoreError):
            await asyncio.to_thread(deliver_due, px.store)


def _forget_keys(px: Proctor, before: float) -> None:
    with px.store.write() as tx:
        tx.sql("DELETE FROM proctor_idempotency WHERE created_at < ?", (before,))


AsyncHandler = Callable[..., Awaitable[Any]]
