"""What every console page shares: templates and their filters, the signed-in principal,
CSRF-checked forms, and rendering a page or a redirect with a message.

Sessions hold the token's id and a CSRF secret in a signed cookie; every form carries the
CSRF token and every POST checks it. Every page needs the permission the API needs for the
same data (``auth.PERMISSIONS``): agents have no console at all.
"""

from __future__ import annotations

import hmac
import secrets
import time
from pathlib import Path
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from .. import _clock
from .._errors import Forbidden
from ..sdk import Proctor
from .auth import Principal, require

NO_AGENTS = (
    "Agent tokens cannot sign in to the console: an agent's token is for the API. Sign in"
    " with a reviewer, SME, viewer, policy author or admin token."
)
SUMMARY_CHARS = 200  # a one-line argument summary is cut here (the cell cuts it shorter)
TITLE_CHARS = 4000  # the full JSON on hover, up to this much

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


def fmt_time(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def duration(seconds: float) -> str:
    """A short, readable length of time: 45s, 12m, 5h 03m, 29h, 2d 7h (as the pages'
    script counts down)."""
    s = abs(seconds)
    if s < 90:
        return f"{s:.0f}s"
    if s < 90 * 60:
        return f"{s / 60:.0f}m"
    if s < 10 * 3600:
        return f"{int(s // 3600)}h {int(s % 3600 // 60):02d}m"
    if s < 48 * 3600:
        return f"{int(s // 3600)}h"
    return f"{int(s // 86400)}d {int(s % 86400 // 3600)}h"


def args_line(args: dict[str, Any] | None) -> str:
    """Arguments on one line, ``name=value, ...``; strings bare, the rest as JSON."""
    parts = []
    for name, value in (args or {}).items():
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        parts.append(f"{name}={text}")
    line = ", ".join(parts).replace("\n", " ")
    return line if len(line) <= SUMMARY_CHARS else line[: SUMMARY_CHARS - 1] + "…"


def args_title(args: dict[str, Any] | None) -> str:
    text = pretty(args or {})
    return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1] + "…"


def sla_state(due: float | None, created: float, now: float) -> str:
    """``overdue``, ``soon`` (under a quarter of the SLA left) or ``ok``."""
    if due is None:
        return ""
    if due <= now:
        return "overdue"
    return "soon" if due - now < 0.25 * max(due - created, 0.0) else "ok"


templates.env.filters["when"] = fmt_time
templates.env.filters["pretty"] = pretty
templates.env.filters["short"] = lambda s, n=12: (s or "")[:n]
templates.env.filters["duration"] = duration
templates.env.filters["args_line"] = args_line
templates.env.filters["args_title"] = args_title
templates.env.globals["sla_state"] = sla_state


class LoginNeeded(Exception):
    """No session: the app's handler sends the browser to the sign-in page."""


def px_of(request: Request) -> Proctor:
    px: Proctor = request.app.state.px
    return px


def signed_in(request: Request, permission: str = "read") -> Principal:
    """The signed-in principal, if its role has ``permission`` (403 otherwise)."""
    token_id = request.session.get("token_id")
    who: Principal | None = request.app.state.verifier.by_id(token_id) if token_id else None
    if who is None:
        request.session.clear()
        raise LoginNeeded
    request.state.principal = who
    if not who.may("read"):  # agents: their tokens are for the API only
        raise Forbidden(NO_AGENTS)
    require(who, permission)
    return who


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(24)
    return str(token)


async def posted_form(request: Request) -> dict[str, str]:
    """The posted form, after checking its CSRF token against the session's."""
    form = {k: str(v) for k, v in (await request.form()).items()}
    expected = request.session.get("csrf")
    if not expected or not hmac.compare_digest(form.get("csrf", ""), str(expected)):
        raise Forbidden("the form's CSRF token is missing or wrong: reload the page and retry")
    return form


def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    who = context.pop("who", None)
    flash = request.session.pop("flash", None)
    return templates.TemplateResponse(
        request,
        name,
        {
            "who": who,
            "csrf": csrf_token(request),
            "flash": flash,
            "now": _clock.now(),
            **context,
        },
        status_code=status,
    )


def fragment(request: Request, name: str, **context: Any) -> HTMLResponse:
    """Part of a page, for htmx to swap in: it leaves any message for the next full page."""
    return templates.TemplateResponse(
        request, name, {"csrf": csrf_token(request), "now": _clock.now(), **context}
    )


def back(url: str, request: Request, flash: str | None = None) -> RedirectResponse:
    """A redirect after a POST, with a message the next page shows once."""
    if flash:
        request.session["flash"] = flash
    return RedirectResponse(url, status_code=303)
