"""The review console: server-rendered pages (Jinja2 + vendored htmx) over the same core.

Sessions hold the token's id and a CSRF secret in a signed cookie; every form carries the
CSRF token and every POST checks it. Every page needs the permission the API needs for the
same data (``auth.PERMISSIONS``): agents have no console at all, and what a page offers
follows the signed-in role. Handlers that touch the database run on worker threads.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from .._errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    ProctorError,
    TooManyRequests,
    status_of,
)
from ..review.items import STATUSES, ReviewItem
from ..sdk import Proctor
from . import console_data
from .auth import UNKNOWN, Principal, Unauthorized, require
from .refusals import authenticate, record

NO_AGENTS = (
    "Agent tokens cannot sign in to the console: an agent's token is for the API. Sign in"
    " with a reviewer, SME, viewer, policy author or admin token."
)

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
console = APIRouter(include_in_schema=False)


def _fmt_time(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


templates.env.filters["when"] = _fmt_time
templates.env.filters["pretty"] = _json
templates.env.filters["short"] = lambda s, n=12: (s or "")[:n]


class _LoginNeeded(Exception):
    pass


def _px(request: Request) -> Proctor:
    px: Proctor = request.app.state.px
    return px


def _who(request: Request, permission: str = "read") -> Principal:
    """The signed-in principal, if its role has ``permission`` (403 otherwise)."""
    token_id = request.session.get("token_id")
    who: Principal | None = request.app.state.verifier.by_id(token_id) if token_id else None
    if who is None:
        request.session.clear()
        raise _LoginNeeded
    request.state.principal = who
    if not who.may("read"):  # agents: their tokens are for the API only
        raise Forbidden(NO_AGENTS)
    require(who, permission)
    return who


def _csrf(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(24)
    return str(token)


async def _form(request: Request) -> dict[str, str]:
    """The posted form, after checking its CSRF token against the session's."""
    form = {k: str(v) for k, v in (await request.form()).items()}
    expected = request.session.get("csrf")
    if not expected or not hmac.compare_digest(form.get("csrf", ""), str(expected)):
        raise Forbidden("the form's CSRF token is missing or wrong: reload the page and retry")
    return form


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    who = context.pop("who", None)
    flash = request.session.pop("flash", None)
    return templates.TemplateResponse(
        request,
        name,
        {
            "who": who,
            "csrf": _csrf(request),
            "flash": flash,
            "now": time.time(),
            **context,
        },
        status_code=status,
    )


def _back(url: str, request: Request, flash: str | None = None) -> RedirectResponse:
    if flash:
        request.session["flash"] = flash
    return RedirectResponse(url, status_code=303)


# -- signing in ------------------------------------------------------------------------------


@console.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    return _page(request, "login.html")


@console.post("/login")
async def login(request: Request) -> Response:
    """Sign in with a token; refusals are logged and limited like the API's."""
    form = await _form(request)
    try:
        who = await authenticate(request, form.get("token", "").strip() or None)
        if not who.may("read"):
            raise Forbidden(NO_AGENTS)
    except (Unauthorized, TooManyRequests, Forbidden) as exc:
        status = 401 if isinstance(exc, Unauthorized) else status_of(exc)
        await record(request, status, exc)
        error = "That token is unknown or revoked." if str(exc) == UNKNOWN else str(exc)
        page = _page(request, "login.html", status=status, error=error)
        if isinstance(exc, TooManyRequests):
            page.headers["Retry-After"] = str(exc.retry_after)
        return page
    request.session.clear()
    request.session.update(token_id=who.token_id, csrf=secrets.token_urlsafe(24))
    return _back("/queue", request)


@console.post("/logout")
async def logout(request: Request) -> Response:
    await _form(request)
    request.session.clear()
    return _back("/login", request)


# -- the queue -------------------------------------------------------------------------------


def _queue_items(request: Request, who: Principal) -> tuple[list[ReviewItem], dict[str, str]]:
    q = request.query_params
    filters = {k: q.get(k, "") for k in ("queue", "kind", "status")}
    status = filters["status"] or "pending"
    if status not in STATUSES and status != "all":
        status = "pending"
    items = _px(request).backend.items(
        None if status == "all" else status, filters["queue"] or None
    )
    items = [
        i
        for i in items
        if who.sees_item(i.queue, i.agent) and (not filters["kind"] or i.kind == filters["kind"])
    ]
    return items, filters


@console.get("/queue", response_class=HTMLResponse)
def queue_page(request: Request) -> HTMLResponse:
    who = _who(request)
    items, filters = _queue_items(request, who)
    policy = _px(request).backend.active_policy()
    queues = sorted(policy.queues) if policy else []
    return _page(
        request,
        "queue.html",
        who=who,
        items=items,
        filters=filters,
        queues=queues,
        query=urlencode({k: v for k, v in filters.items() if v}),
    )


@console.get("/queue/rows", response_class=HTMLResponse)
def queue_rows(request: Request) -> HTMLResponse:
    who = _who(request)
    items, _ = _queue_items(request, who)
    return _page(request, "queue_rows.html", who=who, items=items)


# -- one item --------------------------------------------------------------------------------


def _item(request: Request, who: Principal, item_id: str) -> ReviewItem:
    item = _px(request).backend.item(item_id)
    if not who.sees_item(item.queue, item.agent):
        raise NotFound(f"no review item {item_id!r}")
    return item


def _field_value(raw: str, kind: str) -> Any:
    """A form field in the type the tool's parameter declares."""
    if kind == "float":
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return value
    if kind == "int":
        return int(raw)
    if kind == "bool":
        return raw in ("true", "on", "1", "yes")
    if kind in ("list", "dict", "any"):
        return orjson.loads(raw) if raw.strip() else None
    return raw


@console.get("/items/{item_id}", response_class=HTMLResponse)
def item_page(item_id: str, request: Request) -> HTMLResponse:
    who = _who(request)
    item = _item(request, who, item_id)
    px = _px(request)
    policy = px.backend.active_policy()
    records = console_data.item_records(px.store, item_id)
    after = [r for r in records if r.get("kind") in ("grant.claim", "outcome", "grant.in_doubt")]
    return _page(
        request,
        "item.html",
        who=who,
        item=item,
        can_act=who.reviews(item.queue),
        queues=sorted(q for q in (policy.queues if policy else {}) if q != item.queue),
        params=(item.params or {}).get("params", {}),
        after=after,
        severity=item.severity(),
        actions=item.next_actions(),
    )


@console.post("/items/{item_id}/{verb}")
async def decide(item_id: str, verb: str, request: Request) -> Response:
    who = await asyncio.to_thread(_who, request, "decide")
    form = await _form(request)
    return await asyncio.to_thread(_decide, request, who, item_id, verb, form)


def _decide(
    request: Request, who: Principal, item_id: str, verb: str, form: dict[str, str]
) -> Response:
    item = _item(request, who, item_id)
    if not who.reviews(item.queue):
        raise Forbidden(f"{who.name} ({who.role}) may not decide items in queue '{item.queue}'")
    here = f"/items/{item_id}"
    backend = _px(request).backend
    try:
        if verb == "approve":
            fields: dict[str, Any] = {"note": form.get("note") or None}
            if form.get("confirm_not_run") == "yes":
                fields["confirm_not_run"] = True
            backend.review("approve", item_id, who.name, **fields)
        elif verb == "reject":
            backend.review("reject", item_id, who.name, reason=form.get("reason", ""))
        elif verb == "escalate":
            backend.review(
                "escalate", item_id, who.name, to=form.get("to", ""), note=form.get("note") or None
            )
        elif verb == "choose":
            backend.review(
                "choose",
                item_id,
                who.name,
                option=int(form.get("option", "-1")),
                note=form.get("note") or None,
            )
        elif verb == "edit-preview":
            return _edit_preview(request, who, item, form)
        elif verb == "edit":
            edits = orjson.loads(form.get("edits", "{}"))
            backend.review("edit", item_id, who.name, args=edits, note=form.get("note") or None)
        else:
            raise NotFound(f"no action {verb!r}")
    except (Conflict, InvalidRequest, Forbidden) as exc:
        return _back(here, request, f"Not done: {exc}")
    except (ValueError, orjson.JSONDecodeError) as exc:
        return _back(here, request, f"Not done: {exc}")
    return _back(here, request, f"Done: {verb} by {who.name}.")


def _edit_preview(
    request: Request, who: Principal, item: ReviewItem, form: dict[str, str]
) -> Response:
    params = (item.params or {}).get("params", {})
    base = item.exec_args or item.args
    edits: dict[str, Any] = {}
    try:
        for name, spec in params.items():
            field = f"arg_{name}"
            if spec["type"] == "bool":
                value: Any = field in form
            elif field not in form:
                continue
            else:
                value = _field_value(form[field], spec["type"])
            if value != base.get(name):
                edits[name] = value
    except (ValueError, orjson.JSONDecodeError) as exc:
        return _back(f"/items/{item.id}", request, f"Not done: {exc}")
    if not edits:
        return _back(f"/items/{item.id}", request, "The edit changes nothing.")
    diff = {k: [base.get(k), v] for k, v in edits.items()}
    return _page(
        request,
        "edit_confirm.html",
        who=who,
        item=item,
        diff=diff,
        edits=orjson.dumps(edits).decode(),
        note=form.get("note", ""),
    )


# -- runs, policy, audit, overview ---------------------------------------------------------


@console.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(run_id: str, request: Request) -> HTMLResponse:
    who = _who(request)
    records = console_data.run_records(_px(request).store, run_id)
    return _page(request, "run.html", who=who, run_id=run_id, records=records)


@console.get("/policies", response_class=HTMLResponse)
def policies_page(request: Request) -> HTMLResponse:
    who = _who(request)
    store = _px(request).store
    active, history = console_data.policy_history(store)
    old, new = request.query_params.get("old"), request.query_params.get("new")
    if not old and len(history) > 1:
        old, new = history[1]["version"], history[0]["version"]
    diff = console_data.policy_diff(store, old, new) if old and new else []
    policy = _px(request).backend.active_policy()
    return _page(
        request,
        "policies.html",
        who=who,
        active=active,
        history=history,
        diff=diff,
        old=old,
        new=new,
        text=policy.text if policy else "",
    )


@console.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request) -> HTMLResponse:
    who = _who(request)
    q = request.query_params
    store = _px(request).store
    try:
        since = float(q.get("since") or 0) or None
    except ValueError:
        since = None
    rows = console_data.audit_search(
        store,
        agent=q.get("agent") or None,
        tool=q.get("tool") or None,
        decision=q.get("decision") or None,
        kind=q.get("kind") or None,
        since_minutes=since,
    )
    from ..audit.verify import verify

    verified = verify(store) if who.may("verify") else None  # as the API's /audit/verify
    return _page(request, "audit.html", who=who, rows=rows, q=dict(q), verified=verified)


@console.get("/", response_class=HTMLResponse)
def overview_page(request: Request) -> HTMLResponse:
    who = _who(request)
    from ..telemetry.problems import rank

    store = _px(request).store
    return _page(
        request,
        "overview.html",
        who=who,
        problems=rank(store)[:20],
        charts=console_data.overview(store),
    )


async def login_needed(request: Request, exc: Exception) -> Response:
    return RedirectResponse("/login", status_code=303)


async def console_error(
    request: Request, exc: ProctorError, status: int, headers: dict[str, str] | None = None
) -> Response:
    page = _page(request, "error.html", status=status, message=str(exc))
    page.headers.update(headers or {})
    return page
