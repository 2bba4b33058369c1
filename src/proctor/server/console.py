"""The review console: server-rendered pages (Jinja2 + vendored htmx) over the same core.

Pages are grouped by what people do on them: working the queue and its items
(``console_queue``), and looking at the overview, the policy, the log and runs
(``console_pages``). This module signs people in and out and renders errors as pages;
``console_base`` holds what every page shares (sessions, CSRF, templates).
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from .._errors import Forbidden, ProctorError, TooManyRequests, status_of
from . import console_drift, console_pages, console_queue
from .auth import UNKNOWN, Unauthorized
from .console_base import NO_AGENTS, back, page, posted_form
from .refusals import authenticate, record

console = APIRouter(include_in_schema=False)


@console.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    return page(request, "login.html")


@console.post("/login")
async def login(request: Request) -> Response:
    """Sign in with a token; refusals are logged and limited like the API's."""
    form = await posted_form(request)
    try:
        who = await authenticate(request, form.get("token", "").strip() or None)
        if not who.may("read"):
            raise Forbidden(NO_AGENTS)
    except (Unauthorized, TooManyRequests, Forbidden) as exc:
        status = 401 if isinstance(exc, Unauthorized) else status_of(exc)
        await record(request, status, exc)
        error = "That token is unknown or revoked." if str(exc) == UNKNOWN else str(exc)
        shown = page(request, "login.html", status=status, error=error)
        if isinstance(exc, TooManyRequests):
            shown.headers["Retry-After"] = str(exc.retry_after)
        return shown
    request.session.clear()
    request.session.update(token_id=who.token_id, csrf=secrets.token_urlsafe(24))
    return back("/queue", request)


@console.post("/logout")
async def logout(request: Request) -> Response:
    await posted_form(request)
    request.session.clear()
    return back("/login", request)


console.include_router(console_queue.router)
console.include_router(console_pages.router)
console.include_router(console_drift.router)


async def login_needed(request: Request, exc: Exception) -> Response:
    return RedirectResponse("/login", status_code=303)


async def console_error(
    request: Request, exc: ProctorError, status: int, headers: dict[str, str] | None = None
) -> Response:
    shown = page(request, "error.html", status=status, message=str(exc))
    shown.headers.update(headers or {})
    return shown
