"""`proctor demo`: two weeks of history in the default database, and what comes next."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from proctor import Proctor
from proctor._errors import ConfigError
from proctor.audit.verify import verify
from proctor.cli.demo import prepare
from proctor.demo.agent import load_tickets, train
from proctor.demo.history import Scenario, backdate
from proctor.demo.tickets import generate
from proctor.store.tables import audit_log

END = 1_763_800_000.0  # a fixed end: the same seed gives the same history
ROOT = Path(__file__).resolve().parent.parent


def proctor(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it in ``cwd``, with no database setting."""
    env = {k: v for k, v in os.environ.items() if k != "PROCTOR_DATABASE_URL"}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p
    )
    return subprocess.run(
        [sys.executable, "-c", "from proctor.cli import main; main()", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


@pytest.mark.slow
def test_the_next_commands_find_the_demo_with_its_live_agents_first(tmp_path: Path) -> None:
    started = time.monotonic()
    r = proctor(tmp_path, "demo", "--no-serve")
    took = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    assert "written into ./.proctor/proctor.db" in r.stdout and "verified" in r.stdout
    live = re.findall(r"^  ([0-9a-f]{24})  refund [\d.]+ on (A-LIVE-\d)", r.stdout, re.M)
    assert [order for _, order in live] == ["A-LIVE-1", "A-LIVE-2"]
    assert f"proctor queue approve {live[0][0]} --by ana" in r.stdout
    assert "proctor kpi" in r.stdout and "proctor problems" in r.stdout
    assert took < 60, f"the demo took {took:.1f} s"

    listed = proctor(tmp_path, "queue", "list")
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if re.match(r"│ [0-9a-f]{24} ", line)]
    assert len(rows) > 2
    for (item_id, order), row in zip(live, rows[:2], strict=True):
        assert item_id in row and order in row  # first, and the order id readable

    checked = proctor(tmp_path, "alerts", "check")
    assert "firing order-lookups-failing" in checked.stdout, checked.stdout
    problems = proctor(tmp_path, "problems")
    assert "lookup_order is failing for support-bot" in problems.stdout, problems.stdout

    db = tmp_path / ".proctor" / "proctor.db"
    with Proctor(f"sqlite:///{db}") as px:
        assert verify(px.store).ok
        with px.store.read() as conn:
            first, last = conn.execute(
                sa.select(sa.func.min(audit_log.c.ts), sa.func.max(audit_log.c.ts))
            ).one()
            kinds = Counter(dict(conn.execute(
                sa.select(audit_log.c.kind, sa.func.count()).group_by(audit_log.c.kind)
            ).all()))  # fmt: skip
            denied = conn.execute(
                sa.select(sa.func.count()).where(audit_log.c.decision == "deny")
            ).scalar_one()
        records = sum(kinds.values())
    assert last - first > 13 * 86400  # days of history, not one second
    assert kinds["policy.apply"] == 3 and denied > 0
    for kind in ("review.approve", "review.reject", "review.edit", "review.escalate"):
        assert kinds[kind] > 0, kind
    assert kinds["review.sla_breach"] > 0 and kinds["grant.claim"] > 0

    again = proctor(tmp_path, "demo", "--no-serve")  # a user's database is never overwritten
    assert again.returncode == 2
    assert again.stderr.count("\n") == 1 and "--fresh" in again.stderr
    assert "the last demo's database" in again.stderr
    with Proctor(f"sqlite:///{db}") as px:
        assert verify(px.store).checked == records


def test_prepare_refuses_what_is_there_unless_fresh(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not a database")
    with pytest.raises(ConfigError, match=r"not a Proctor database.*--fresh"):
        prepare(f"sqlite:///{path}", fresh=False)
    assert path.read_text() == "not a database"
    url, _ = prepare(f"sqlite:///{path}", fresh=True)
    assert not path.exists() and url == f"sqlite:///{path.resolve()}"
    assert prepare(f"sqlite:///{tmp_path}/new/p.db", fresh=False)[0].endswith("new/p.db")


def _log(db: Path) -> list[dict[str, Any]]:
    """The records, without what is random (ids, measured durations) and without the QA
    samples (the gate samples by decision id)."""
    drop = {"id", "run_id", "trace_id", "item_id", "decision_id", "review_item", "parent_run_id"}
    drop |= {"seq", "decision_seq", "duration_ms", "owner"}

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in drop}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    with Proctor(f"sqlite:///{db}") as px, px.store.read() as conn:
        rows = conn.execute(sa.select(audit_log.c.record).order_by(audit_log.c.seq)).all()
    records = [orjson.loads(r) for (r,) in rows]
    return [clean(r) for r in records if r.get("queue") != "qa" or r["kind"] == "decision"]


def test_the_same_seed_gives_the_same_history(tmp_path: Path) -> None:
    logs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        with Proctor(f"sqlite:///{tmp_path / name}.db") as px:
            backdate(px, Scenario(end=END, days=2, seed=seed))
        logs.append(_log(tmp_path / f"{name}.db"))
    assert len(logs[0]) > 500
    assert logs[0] == logs[1]
    assert logs[0] != logs[2]


def test_the_two_weeks_have_a_daily_and_weekly_rhythm() -> None:
    scenario = Scenario(end=END)
    tickets = scenario.tickets()
    assert tickets == Scenario(end=END).tickets()
    assert 1000 < len(tickets) < 2500
    times = [t for t, _ in tickets if t < scenario.end - 3 * 3600]  # before the surge
    hours = Counter(time.localtime(t).tm_hour for t in times)
    assert sum(hours[h] for h in range(9, 17)) > 5 * sum(hours[h] for h in range(0, 8))
    days = Counter(time.localtime(t).tm_wday for t in times)
    assert min(days[d] for d in range(5)) > max(days[5], days[6])
    assert [t["id"] for _, t in tickets[:2]] == ["T-10001", "T-10002"]


def test_bundled_tickets_are_what_the_generator_makes() -> None:
    bundled = files("proctor.demo").joinpath("tickets.jsonl").read_text(encoding="utf-8")
    assert [orjson.loads(line) for line in bundled.splitlines()] == generate()
    assert len(generate()) >= 300


def test_the_agent_model_learns_the_tickets() -> None:
    tickets = load_tickets()
    model = train(tickets)
    held_out = tickets[220:]
    right = sum(model.predict(t["text"])[0] == t["category"] for t in held_out)
    assert right / len(held_out) > 0.9
    confidences = [model.predict(t["text"])[1] for t in held_out]
    assert all(0.0 < c <= 1.0 for c in confidences) and min(confidences) < 0.9
