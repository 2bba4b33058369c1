"""Console pages for working the queue: the paged list, one item, and deciding it.

Every link out of the list carries its filters (and page size), so an item knows which
list it was opened from: it shows ``n of N`` in that list, and after a decision the
browser goes to the next item of the same list, or to a page saying the list is empty.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from .. import _clock
from .._errors import Conflict, Forbidden, InvalidRequest, NotFound
from ..review.items import KINDS, STATUSES, ReviewItem
from . import console_data, queue_data
from .auth import Principal
from .console_base import back, fragment, page, posted_form, px_of, signed_in
from .queue_data import PAGE_SIZE, Pager, QueueFilter, page_number, page_size

router = APIRouter(include_in_schema=False)


class _View:
    """The list a request names: its filters, page size and order at this moment."""

    def __init__(self, request: Request, who: Principal) -> None:
        q = request.query_params
        self.filters = QueueFilter.from_query(q)
        self.size = page_size(q.get("size"))
        self.size_param = "" if self.size == PAGE_SIZE else str(self.size)
        found = queue_data.ordered(px_of(request).store, self.filters, who.sees_item, _clock.now())
        self.ids, self.capped = found.ids, found.capped
        self.nav = self.filters.query(size=self.size_param)  # what item links carry

    def list_url(self, page: int = 1) -> str:
        query = self.filters.query(page=page if page > 1 else "", size=self.size_param)
        return f"/queue?{query}" if query else "/queue"


def _list_context(request: Request, view: _View) -> dict[str, Any]:
    number = page_number(request.query_params.get("page"))
    pager = Pager.of(len(view.ids), number, view.size, view.capped)
    rows = view.ids[pager.offset : pager.offset + pager.size]
    return {
        "items": queue_data.load(px_of(request).store, rows),
        "filters": view.filters,
        "pager": pager,
        "capped": view.capped,
        "most": queue_data.MOST,
        "nav": view.nav,
        "view": view,
        "refresh": view.filters.query(
            page=pager.page if pager.page > 1 else "", size=view.size_param
        ),
    }


@router.get("/queue", response_class=HTMLResponse)
def queue_page(request: Request) -> HTMLResponse:
    who = signed_in(request)
    view = _View(request, who)
    policy = px_of(request).backend.active_policy()
    queues = sorted(set(policy.queues if policy else ()) | {view.filters.queue} - {""})
    return page(
        request,
        "queue.html",
        who=who,
        queues=queues,
        kinds=KINDS,
        statuses=(*STATUSES, "all"),
        sizes=queue_data.PAGE_SIZES,
        size=view.size,
        **_list_context(request, view),
    )


@router.get("/queue/rows", response_class=HTMLResponse)
def queue_rows(request: Request) -> HTMLResponse:
    """The list alone (pager and table), for the page's live refresh: same page, same
    filters."""
    who = signed_in(request)
    return fragment(request, "queue_list.html", **_list_context(request, _View(request, who)))


@router.get("/queue/done", response_class=HTMLResponse)
def queue_done(request: Request) -> HTMLResponse:
    """Where a reviewer lands when the last item of their list was decided."""
    who = signed_in(request)
    view = _View(request, who)
    return page(request, "queue_done.html", who=who, view=view, filters=view.filters)


# -- one item --------------------------------------------------------------------------------


def _item(request: Request, who: Principal, item_id: str) -> ReviewItem:
    item = px_of(request).backend.item(item_id)
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


@router.get("/items/{item_id}", response_class=HTMLResponse)
def item_page(item_id: str, request: Request) -> HTMLResponse:
    who = signed_in(request)
    item = _item(request, who, item_id)
    px = px_of(request)
    view = _View(request, who)
    where = queue_data.position(view.ids, item_id)
    policy = px.backend.active_policy()
    records = console_data.item_records(px.store, item_id)
    after = [r for r in records if r.get("kind") in ("grant.claim", "outcome", "grant.in_doubt")]
    at = "" if where.index is None else where.index
    return page(
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
        where=where,
        view=view,
        back_url=view.list_url(where.page(view.size)),
        act_query=view.filters.query(size=view.size_param, at=at),
    )


@router.post("/items/{item_id}/{verb}")
async def decide(item_id: str, verb: str, request: Request) -> Response:
    who = await asyncio.to_thread(signed_in, request, "decide")
    form = await posted_form(request)
    return await asyncio.to_thread(_decide, request, who, item_id, verb, form)


def _done(verb: str, item: ReviewItem, form: dict[str, str]) -> str:
    what = f"{item.tool} for {item.agent}"
    return {
        "approve": f"Approved {what}.",
        "reject": f"Rejected {what}.",
        "escalate": f"Escalated {what} to {form.get('to', '')}.",
        "choose": f"Chose option {form.get('option', '')} for {item.agent}.",
        "edit": f"Approved {what} with your changes.",
        "settle": f"Settled {what}.",
    }[verb]


def _decide(
    request: Request, who: Principal, item_id: str, verb: str, form: dict[str, str]
) -> Response:
    item = _item(request, who, item_id)
    if not who.reviews(item.queue):
        raise Forbidden(f"{who.name} ({who.role}) may not decide items in queue '{item.queue}'")
    view_query = request.url.query
    here = f"/items/{item_id}?{view_query}"
    backend = px_of(request).backend
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
        elif verb == "settle":
            happened = form.get("happened")
            if happened not in ("yes", "no"):
                raise InvalidRequest("say whether it happened")
            backend.review(
                "settle",
                item_id,
                who.name,
                happened=happened == "yes",
                note=form.get("note") or None,
            )
        elif verb == "edit-preview":
            return _edit_preview(request, who, item, form)
        elif verb == "edit":
            edits = orjson.loads(form.get("edits", "{}"))
            after = backend.review(
                "edit", item_id, who.name, args=edits, note=form.get("note") or None
            )
            if after.status == "pending" and (after.queue, after.rule_ids) != (
                item.queue,
                item.rule_ids,
            ):
                flash = (
                    f"Your edit needs a decision in queue '{after.queue}' ({after.reason}):"
                    " the item moved there, and your approval was not counted."
                )
                return _to_next(request, who, item, flash)
        else:
            raise NotFound(f"no action {verb!r}")
    except (Conflict, InvalidRequest, Forbidden) as exc:
        return back(here, request, f"Not done: {exc}")
    except (ValueError, orjson.JSONDecodeError) as exc:
        return back(here, request, f"Not done: {exc}")
    return _to_next(request, who, item, _done(verb, item, form))


def _to_next(request: Request, who: Principal, item: ReviewItem, flash: str) -> Response:
    """The next item of the list the decided one was opened from, or the empty-list page."""
    view = _View(request, who)
    try:
        at: int | None = int(request.query_params.get("at", ""))
    except ValueError:
        at = None
    following = queue_data.next_after(view.ids, item.id, at)
    if following is None:
        return back(f"/queue/done?{view.nav}", request, flash)
    return back(f"/items/{following}?{view.nav}", request, flash)


def _edit_preview(
    request: Request, who: Principal, item: ReviewItem, form: dict[str, str]
) -> Response:
    here = f"/items/{item.id}?{request.url.query}"
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
        return back(here, request, f"Not done: {exc}")
    if not edits:
        return back(here, request, "The edit changes nothing.")
    diff = {k: [base.get(k), v] for k, v in edits.items()}
    return page(
        request,
        "edit_confirm.html",
        who=who,
        item=item,
        diff=diff,
        edits=orjson.dumps(edits).decode(),
        note=form.get("note", ""),
        query=request.url.query,
    )
