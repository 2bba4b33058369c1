"""Two weeks at the support desk, backdated: the history the demo's console shows.

The agent works a seeded stream of tickets with a daily and weekly rhythm (local time),
reviewers answer its items the way a staffed desk does (quickly by day, slowly at night
and at weekends), the policy changes twice, the order service has one outage in the
middle and is failing again at the end, under a surge of "where is my order" tickets.
Four days before the end the ticket mix shifts (more refunds, larger ones): the policy's
drift monitors, checked hourly as cron would, see it and lower the refund tool's stage.
Everything runs through the real SDK under ``_clock.simulated``, so each record carries
the time it would have had. The same seed and end time give the same log, apart from
random ids, the measured durations of tool calls, and which replies the gate samples for
QA (it samples by decision id, which is random; each item's reviewer draws from a
generator of its own, so that changes nothing else).
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

import sqlalchemy as sa

from .. import _clock
from .._errors import ToolFailed
from ..drift.monitor import DriftMonitor
from ..sdk import Proctor
from ..store.tables import review_items
from ..telemetry.alerts import AlertMonitor
from .agent import SupportAgent, Tally, load_tickets, train
from .tickets import generate

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
# Tickets per hour of the day (local time), relative; and per day of the week, Monday first.
HOURLY = (0.1, 0.08, 0.06, 0.06, 0.08, 0.15, 0.35, 0.7, 1.2, 1.6, 1.7, 1.6,
          1.2, 1.4, 1.5, 1.5, 1.3, 1.0, 0.8, 0.7, 0.6, 0.45, 0.3, 0.18)  # fmt: skip
WEEKDAY = (1.3, 1.1, 1.0, 1.0, 0.9, 0.45, 0.35)
SURGE_WEIGHTS = (10, 75, 5, 5, 5)  # a courier's outage: mostly "where is my order?"
DRIFT_WEIGHTS = (60, 10, 10, 10, 10)  # after a price change: refunds, and larger ones
DRIFT_AMOUNTS = 2.5
SETTLE = 10 * MINUTE  # reviewers have answered everything older than this by the end


@dataclass(frozen=True)
class Desk:
    """Who works a queue and how quickly they answer in office hours (median minutes)."""

    people: tuple[str, ...]
    median_minutes: float


DESKS = {
    "billing": Desk(("ana", "ben"), 7.0),
    "finance": Desk(("farid",), 35.0),
    "ops": Desk(("dev",), 12.0),
    "qa": Desk(("chloe",), 90.0),
}
REFUSALS = {
    "billing": (
        "duplicate of an earlier ticket",
        "the item has not come back yet",
        "outside the 30-day refund window",
        "already compensated with a voucher",
    ),
    "finance": ("needs the returned item first", "a chargeback is already open"),
    "qa": (
        "the reply does not answer the question",
        "wrong category: this was a shipping question",
        "too curt for an upset customer",
    ),
}


@dataclass
class Summary:
    """What the two weeks held, for the demo's report."""

    tickets: int = 0
    agent: Tally = field(default_factory=Tally)
    reviews: Tally = field(default_factory=Tally)
    policies: int = 0
    drift: int = 0  # detections by the drift monitors
    start: float = 0.0
    end: float = 0.0


class SimClock:
    """The simulated wall clock: it only moves forward."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def reach(self, t: float) -> None:
        self.t = max(self.t, t)


def local_time(end: float, days_before: int, hour: float) -> float:
    """``hour`` o'clock, local time, on the day ``days_before`` days before ``end``."""
    day = time.localtime(end - days_before * DAY)
    midnight = time.mktime((day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0, 0, 0, -1))
    return midnight + hour * HOUR


def staffing(t: float) -> float:
    """How much slower than in office hours a desk answers at ``t`` (local time)."""
    lt = time.localtime(t)
    weekday, hour = lt.tm_wday < 5, lt.tm_hour
    if weekday and 8 <= hour < 18:
        return 1.0
    if (weekday and 18 <= hour < 22) or (not weekday and 9 <= hour < 18):
        return 2.5
    return 6.0


def _poisson(rng: random.Random, mean: float) -> int:
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def arrivals(rng: random.Random, start: float, end: float, per_weekday: float) -> list[float]:
    """Ticket arrival times: a Poisson stream with the desk's daily and weekly rhythm."""
    out: list[float] = []
    t = start - start % HOUR
    total = sum(HOURLY)
    while t < end:
        lt = time.localtime(t)
        mean = per_weekday * WEEKDAY[lt.tm_wday] * HOURLY[lt.tm_hour] / total
        out.extend(
            u for _ in range(_poisson(rng, mean)) if start <= (u := t + rng.random() * HOUR) < end
        )
        t += HOUR
    return sorted(out)


@dataclass(frozen=True)
class Scenario:
    """The two weeks: volume, incidents and policy changes, relative to ``end``."""

    end: float
    days: int = 14
    seed: int = 7
    per_weekday: float = 110.0
    surge_per_hour: float = 30.0
    surge_hours: float = 2.0
    failing_at_end: float = 50 * MINUTE  # the order service fails this long before the end

    @property
    def start(self) -> float:
        return self.end - self.days * DAY

    def _day(self, of_fourteen: int) -> int:
        """Days before the end: the fourteen-day story, scaled to ``days``."""
        return max(1, round(self.days * of_fourteen / 14))

    def outage(self) -> tuple[float, float]:
        begin = local_time(self.end, self._day(5), 14.0)
        return begin, begin + 2.5 * HOUR

    def lookup_failures(self, t: float) -> float:
        begin, over = self.outage()
        if begin <= t < over:
            return 0.45
        if t >= self.end - self.failing_at_end:
            return 0.4
        return 0.02

    def drift_from(self) -> float:
        """When the ticket mix shifts and refunds grow."""
        return local_time(self.end, self._day(4), 8.0)

    def policies(self) -> list[tuple[float, str, str]]:
        """(when, text, message): the policy as it was first, then its two changes."""
        final = files("proctor.demo").joinpath("policy.yaml").read_text(encoding="utf-8")
        no_alerts = final.split("\n# Added after", 1)[0] + "\n"
        first = no_alerts.replace("sample: 0.1\n", "sample: 0.2\n")
        assert first != no_alerts, "the demo policy's QA sample rate moved"
        return [
            (self.start - 2 * HOUR, first, "support-bot goes live: QA samples one reply in five"),
            (local_time(self.end, self._day(9), 10.5), no_alerts, "QA looks clean: one in ten"),
            (self.outage()[1] + 20 * HOUR, final, "alert when order look-ups fail"),
        ]

    def tickets(self) -> list[tuple[float, dict[str, Any]]]:
        rng = random.Random(self.seed)
        times = arrivals(rng, self.start, self.end, self.per_weekday)
        surge_from = self.end - self.surge_hours * HOUR
        surge = sorted(
            surge_from + rng.random() * (self.end - surge_from)
            for _ in range(_poisson(rng, self.surge_per_hour * self.surge_hours))
        )
        usual = generate(len(times), self.seed + 1)
        shifted = generate(len(times), self.seed + 3, DRIFT_WEIGHTS)
        drift_from = self.drift_from()
        stream = [
            (
                t,
                ticket
                if t < drift_from
                else {**new, "amount": round(new["amount"] * DRIFT_AMOUNTS, 2)},
            )
            for t, ticket, new in zip(times, usual, shifted, strict=True)
        ]
        stream += zip(surge, generate(len(surge), self.seed + 2, SURGE_WEIGHTS), strict=True)
        stream.sort(key=lambda pair: pair[0])
        return [(t, {**ticket, "id": f"T-{10001 + n}"}) for n, (t, ticket) in enumerate(stream)]


class History:
    """The event loop: tickets, reviewers, resumes, SLA sweeps and hourly alert checks."""

    def __init__(self, px: Proctor, scenario: Scenario) -> None:
        self.px = px
        self.s = scenario
        self.clock = SimClock(scenario.start - 3 * HOUR)
        self.agent = SupportAgent(px, wait=0, seed=scenario.seed + 4, pace=self.clock.advance)
        self.summary = Summary(start=scenario.start, end=scenario.end)
        self.events: list[tuple[float, int, str, Any]] = []
        self.n = 0
        self.failed_runs: set[str] = set()
        self.rngs: dict[str, random.Random] = {}

    def at(self, t: float, kind: str, payload: Any = None) -> None:
        if t < self.s.end:
            self.n += 1
            heapq.heappush(self.events, (t, self.n, kind, payload))

    def run(self, progress: Callable[[float], None] | None = None) -> Summary:
        """Play the two weeks; ``progress`` is told the simulated time now and then."""
        s = self.s
        for when, text, message in s.policies():
            self.at(when, "policy", (text, message))
        tickets = s.tickets()
        self.summary.tickets = len(tickets)
        for t, ticket in tickets:
            self.at(t, "ticket", ticket)
        t = s.start
        while t < s.end:
            self.at(t, "sweep")
            t += 5 * MINUTE
        alerts_from = s.policies()[-1][0]
        t = s.end - HOUR
        while t > alerts_from:  # cron ran `proctor alerts check` hourly; the last, an hour ago
            self.at(t, "alerts")
            self.at(t + MINUTE, "drift")  # and `proctor drift check`
            t -= HOUR
        self.model = train(load_tickets())
        self.monitor = AlertMonitor(self.px.store)
        self.drift = DriftMonitor(self.px.store)
        with _clock.simulated(self.clock):
            while self.events:
                when, _, kind, payload = heapq.heappop(self.events)
                self.clock.reach(when)
                getattr(self, f"_{kind}")(payload)
                if progress is not None and kind == "ticket":
                    progress(self.clock.t)
        with self.px.store.read() as conn:
            expired = conn.execute(
                sa.select(sa.func.count()).where(review_items.c.status == "expired")
            ).scalar_one()
        self.summary.reviews.add("expired", expired)
        return self.summary

    # -- events ------------------------------------------------------------------------

    def _policy(self, payload: tuple[str, str]) -> None:
        text, message = payload
        self.px.policy.apply(text, author="pat", message=message)
        self.summary.policies += 1

    def _ticket(self, ticket: dict[str, Any]) -> None:
        began = self.clock.t
        self.agent.lookup_failures = self.s.lookup_failures(began)
        self.agent.handle(ticket, self.model, self.summary.agent)
        c = review_items.c
        with self.px.store.read() as conn:
            rows = conn.execute(
                sa.select(c.id, c.queue, c.kind, c.tool)
                .where(c.status == "pending", c.created_at >= began)
                .order_by(c.created_at, c.decision_seq)
            ).all()
        if self.agent.failed_run is not None:
            self.failed_runs.add(self.agent.failed_run)
        for item_id, queue, kind, tool in rows:
            key = f"{self.s.seed}/{ticket['id']}/{tool}/{kind}"
            self.rngs[item_id] = random.Random(key)
            self._schedule(item_id, queue, began)

    def _schedule(self, item_id: str, queue: str, created: float) -> None:
        """When the desk answers: lognormal around its median, slower off hours."""
        now, rng = self.clock.t, self.rngs[item_id]
        median = DESKS[queue].median_minutes * MINUTE * staffing(now)
        when = now + rng.lognormvariate(math.log(median), 0.7)
        forced = False
        if when >= self.s.end - MINUTE and created < self.s.end - SETTLE:
            when = rng.uniform(max(now, self.s.end - SETTLE), self.s.end - MINUTE)
            forced = True
        self.at(when, "review", (item_id, queue, created, forced))

    def _review(self, payload: tuple[str, str, float, bool]) -> None:
        item_id, queue, created, forced = payload
        reviews = self.px.reviews
        item = reviews.get(item_id)
        if item.status != "pending":
            return
        if item.queue != queue:  # moved up when its SLA passed: the next desk answers
            self._schedule(item_id, item.queue, created)
            return
        rng = self.rngs[item_id]
        by = rng.choice(DESKS[queue].people)
        r = rng.random()
        tally = self.summary.reviews
        if item.kind == "exception":
            if item.run_id in self.failed_runs and r < 0.8:
                reviews.approve(item_id, by=by, note="order service is back: retry")
                self._resume_soon(item_id)
                tally.add("approved")
            else:
                reviews.reject(item_id, by=by, reason="the agent's retry went through")
                tally.add("closed")
            return
        if queue == "billing" and item.kind == "approval" and r >= 0.95 and not forced:
            reviews.escalate(item_id, by=by, to="finance", note="third refund this month")
            tally.add("escalated")
            self._schedule(item_id, "finance", created)
            return
        approve = {"billing": 0.85, "finance": 0.75, "qa": 0.9}.get(queue, 0.85)
        if r < approve:
            amount = item.args.get("amount")
            if queue == "billing" and r >= 0.78 and isinstance(amount, float):
                half = round(amount / 2, 2)
                edited = reviews.edit(item_id, by=by, args={"amount": half}, note="partial refund")
                if edited.status == "pending":  # at stage 2 an edit is approved as well
                    reviews.approve(item_id, by=by)
                tally.add("edited")
            else:
                reviews.approve(item_id, by=by)
                tally.add("approved")
            if item.kind != "sample":
                self._resume_soon(item_id)
        else:
            reviews.reject(item_id, by=by, reason=rng.choice(REFUSALS[queue]))
            tally.add("rejected")

    def _resume_soon(self, item_id: str) -> None:
        """The agent picks its approved actions up within a minute (at once near the end,
        so that nothing approved is left unrun)."""
        when = self.clock.t + self.rngs[item_id].uniform(5.0, 60.0)
        if when < self.s.end:
            self.at(when, "resume", item_id)
        else:
            self._resume(item_id)

    def _resume(self, item_id: str) -> None:
        self.agent.lookup_failures = self.s.lookup_failures(self.clock.t)
        try:
            self.px.resume(item_id)
        except (TimeoutError, ToolFailed):
            self.summary.reviews.add("failed again")

    def _sweep(self, _: None) -> None:
        self.px.reviews.sweep()

    def _alerts(self, _: None) -> None:
        self.monitor.check()

    def _drift(self, _: None) -> None:
        self.summary.drift += len(self.drift.check())


def backdate(
    px: Proctor, scenario: Scenario, progress: Callable[[float], None] | None = None
) -> Summary:
    """Play ``scenario`` into ``px``'s database, every record at its simulated time."""
    return History(px, scenario).run(progress)
