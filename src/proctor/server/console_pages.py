"""Console pages for looking rather than deciding: the overview, the policy, the decision
log (with verification on demand) and one run."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from .. import _clock
from .._errors import NotFound
from ..audit.verify import verify
from ..execution import breakers
from ..telemetry.healing import breaker_rows
from . import console_data
from .console_base import back, fragment, page, posted_form, px_of, signed_in
from .queue_data import PAGE_SIZE, Pager, page_number, page_size

router = APIRouter(include_in_schema=False)

AUDIT_FILTERS = ("agent", "tool", "decision", "kind", "since")


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(run_id: str, request: Request) -> HTMLResponse:
    who = signed_in(request)
    records = console_data.run_records(px_of(request).store, run_id)
    return page(request, "run.html", who=who, run_id=run_id, records=records)


@router.get("/policies", response_class=HTMLResponse)
def policies_page(request: Request) -> HTMLResponse:
    who = signed_in(request)
    store = px_of(request).store
    active, history = console_data.policy_history(store)
    shadow = console_data.shadow_version(store)
    old, new = request.query_params.get("old"), request.query_params.get("new")
    if not old and len(history) > 1:
        old, new = history[1]["version"], history[0]["version"]
    diff = console_data.policy_diff(store, old, new) if old and new else []
    policy = px_of(request).backend.active_policy()
    return page(
        request,
        "policies.html",
        who=who,
        active=active,
        shadow=shadow,
        history=history,
        diff=diff,
        old=old,
        new=new,
        text=policy.text if policy else "",
        base_url=str(request.base_url).rstrip("/"),
    )


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request) -> HTMLResponse:
    """The log, newest first, a page at a time. The chain is verified on demand only
    (``POST /audit/verify``): walking every record on each view is slow on a big log."""
    who = signed_in(request)
    q = request.query_params
    try:
        since = float(q.get("since") or 0) or None
    except ValueError:
        since = None
    try:
        upto: int | None = int(q.get("upto", ""))
    except ValueError:
        upto = None
    size, number = page_size(q.get("size")), page_number(q.get("page"))
    filters = {k: q.get(k, "") for k in AUDIT_FILTERS}

    def read(number: int, upto: int | None) -> console_data.AuditPage:
        return console_data.audit_page(
            px_of(request).store,
            agent=filters["agent"] or None,
            tool=filters["tool"] or None,
            decision=filters["decision"] or None,
            kind=filters["kind"] or None,
            since_minutes=since,
            upto=upto,
            offset=(number - 1) * size,
            size=size,
        )

    found = read(number, upto)
    pager = Pager.of(found.total, number, size, found.capped)
    if pager.page != number:  # past the end: the last page
        found = read(pager.page, found.upto)
    keep = {k: v for k, v in filters.items() if v}
    keep.update(upto=str(found.upto))
    if size != PAGE_SIZE:
        keep.update(size=str(size))

    def audit_link(n: int) -> str:
        return "/audit?" + urlencode({**keep, "page": str(n)})

    return page(
        request,
        "audit.html",
        who=who,
        rows=found.rows,
        q=filters,
        pager=pager,
        keep=keep,
        upto=found.upto,
        can_verify=who.may("verify"),
        audit_link=audit_link,
    )


@router.post("/audit/verify", response_class=HTMLResponse)
async def audit_verify(request: Request) -> Response:
    """Verify the whole chain now, as the API's ``/audit/verify`` (same permission)."""
    who = await asyncio.to_thread(signed_in, request, "verify")
    await posted_form(request)
    started = time.monotonic()
    result = await asyncio.to_thread(verify, px_of(request).store)
    took = time.monotonic() - started
    if request.headers.get("HX-Request") != "true":  # a plain form post: back to the page
        verdict = "Verified" if result.ok else "Verification FAILED"
        return back("/audit", request, f"{verdict}: {result.message()}")
    return fragment(
        request, "audit_verify.html", result=result, at=_clock.now(), took=took, who=who
    )


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request) -> HTMLResponse:
    who = signed_in(request)
    from ..telemetry.problems import rank

    px = px_of(request)
    policy = px.backend.active_policy()
    now = _clock.now()
    depth = console_data.queue_depth(px.store, sorted(policy.queues) if policy else [], now)
    return page(
        request,
        "overview.html",
        who=who,
        problems=rank(px.store)[:20],
        charts=console_data.overview(px.store),
        depth=depth,
        breaches=[d for d in depth if d["breached"]],
        deepest=max((d["pending"] for d in depth), default=0),
        breakers=breaker_rows(px.store),
        healing=console_data.recovery(px.store),
        can_reset=who.may("manage"),
    )


@router.post("/breakers/{scope:path}/reset")
async def reset_breaker(scope: str, request: Request) -> Response:
    """Close a circuit breaker by hand, as the API's reset (admins only), logged with the
    signed-in token's name; back to the overview."""
    who = await asyncio.to_thread(signed_in, request, "manage")
    await posted_form(request)

    def close() -> None:
        with px_of(request).store.write() as tx:
            breakers.reset(tx, scope, who.name)

    try:
        await asyncio.to_thread(close)
    except LookupError:
        raise NotFound(f"no circuit breaker {scope!r}") from None
    return back("/#breakers", request, f"Closed the circuit breaker {scope}.")
