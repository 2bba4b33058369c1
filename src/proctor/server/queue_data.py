"""The review queue as the console pages it: one order, pages of it, and where an item
stands in it (``n of N``, the next one after a decision).

The order is the one reviewers work in, most severe first (risk, SLA pressure, impact, as
``ReviewItem.severity``), then oldest, then by id: total, so at one moment every item has
exactly one place and pages neither repeat nor skip rows. Only light columns are read to
order the queue; whole items are read for the rows on the page.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

import sqlalchemy as sa

from ..review.items import KINDS, STATUSES, ReviewItem
from ..store import Store
from ..store.tables import review_items

PAGE_SIZE = 50
PAGE_SIZES = (25, 50, 100, 200)
MOST = 20_000  # items ordered per view at most (the newest); a page says when it is capped


@dataclass(frozen=True)
class QueueFilter:
    """What the list shows; kept in every link so paging and deciding stay in the same list."""

    queue: str = ""
    kind: str = ""
    status: str = "pending"

    @classmethod
    def from_query(cls, q: Mapping[str, str]) -> QueueFilter:
        kind = q.get("kind", "")
        status = q.get("status", "") or "pending"
        return cls(
            queue=q.get("queue", ""),
            kind=kind if kind in KINDS else "",
            status=status if status in STATUSES or status == "all" else "pending",
        )

    def params(self) -> dict[str, str]:
        """The non-default filters, as query parameters."""
        out = {"queue": self.queue, "kind": self.kind}
        if self.status != "pending":
            out["status"] = self.status
        return {k: v for k, v in out.items() if v}

    def query(self, **extra: object) -> str:
        more = {k: str(v) for k, v in extra.items() if v not in (None, "")}
        return urlencode({**self.params(), **more})

    def label(self) -> str:
        parts = [self.queue or "every queue", self.kind or "", self.status]
        return " · ".join(p for p in parts if p)


@dataclass(frozen=True)
class Pager:
    """Rows ``start``-``end`` of ``total`` on page ``page`` (1-based) of ``size`` rows."""

    total: int
    page: int
    size: int
    capped: bool = False

    @classmethod
    def of(cls, total: int, page: int, size: int, capped: bool = False) -> Pager:
        last = max(1, -(-total // size))
        return cls(total, min(max(1, page), last), size, capped)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size

    @property
    def start(self) -> int:
        return min(self.total, self.offset + 1)

    @property
    def end(self) -> int:
        return min(self.total, self.offset + self.size)

    @property
    def previous(self) -> int | None:
        return self.page - 1 if self.page > 1 else None

    @property
    def next(self) -> int | None:
        return self.page + 1 if self.page < self.pages else None


def page_number(raw: str | None) -> int:
    try:
        return max(1, int(raw or 1))
    except ValueError:
        return 1


def page_size(raw: str | None) -> int:
    try:
        size = int(raw or PAGE_SIZE)
    except ValueError:
        return PAGE_SIZE
    return size if size in PAGE_SIZES else PAGE_SIZE


def severity(
    risk: float | None,
    impact: float | None,
    sla_due: float | None,
    created_at: float,
    status: str,
    now: float,
) -> float:
    """``ReviewItem.severity`` over the light columns (a test holds the two equal)."""
    pressure = 0.0
    if sla_due is not None and status == "pending":
        total = max(sla_due - created_at, 1e-9)
        left = sla_due - now
        pressure = 1.5 if left <= 0 else min(1.0, max(0.0, 1.0 - left / total))
    return round((risk or 0.0) + pressure + min(max(impact or 0.0, 0.0), 1.0), 4)


@dataclass(frozen=True)
class Ordered:
    ids: list[str]
    capped: bool


def ordered(
    store: Store, f: QueueFilter, visible: Callable[[str, str], bool], now: float
) -> Ordered:
    """The ids of the items ``f`` selects that ``visible(queue, agent)`` allows, in order."""
    c = review_items.c
    query = sa.select(c.id, c.queue, c.agent, c.status, c.risk, c.impact, c.sla_due, c.created_at)
    if f.status != "all":
        query = query.where(c.status == f.status)
    if f.queue:
        query = query.where(c.queue == f.queue)
    if f.kind:
        query = query.where(c.kind == f.kind)
    with store.read() as conn:
        rows = conn.execute(query.order_by(c.created_at.desc()).limit(MOST + 1)).all()
    capped = len(rows) > MOST
    keyed = [
        (-severity(r.risk, r.impact, r.sla_due, r.created_at, r.status, now), r.created_at, r.id)
        for r in rows[:MOST]
        if visible(r.queue, r.agent)
    ]
    keyed.sort()
    return Ordered([k[2] for k in keyed], capped)


def load(store: Store, ids: list[str]) -> list[ReviewItem]:
    """Whole items for ``ids``, in that order (any gone since are left out)."""
    if not ids:
        return []
    with store.read() as conn:
        rows = conn.execute(sa.select(review_items).where(review_items.c.id.in_(ids))).all()
    found = {r.id: ReviewItem.from_row(r) for r in rows}
    return [found[i] for i in ids if i in found]


@dataclass(frozen=True)
class Position:
    """Where one item stands in a filtered list: ``index`` is 0-based, None when the item
    is not in it (decided, moved, or filtered out)."""

    index: int | None
    total: int
    previous: str | None
    next: str | None

    def page(self, size: int) -> int:
        """The list page this item is on."""
        return 1 + (self.index or 0) // size


def position(ids: list[str], item_id: str) -> Position:
    if item_id not in ids:
        return Position(None, len(ids), None, ids[0] if ids else None)
    i = ids.index(item_id)
    return Position(
        i,
        len(ids),
        ids[i - 1] if i > 0 else None,
        ids[i + 1] if i + 1 < len(ids) else None,
    )


def next_after(ids: list[str], item_id: str, at: int | None) -> str | None:
    """The item to show after ``item_id`` was decided, from the list as it is now.

    If the item is still listed (an ``all`` list, or moved within the filter), the one
    after it; otherwise the one that took its place (``at``, its index before). Past the
    end, the list starts over; None when nothing else is left.
    """
    i = ids.index(item_id) + 1 if item_id in ids else max(at or 0, 0)
    rest = [x for x in ids[i:] + ids[:i] if x != item_id]
    return rest[0] if rest else None
