"""`proctor demo --no-serve`: the main job, on a fresh embedded database."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import orjson
import sqlalchemy as sa
from tests.test_cli import proctor

from proctor import Proctor
from proctor.audit.verify import verify
from proctor.demo.agent import load_tickets, train
from proctor.demo.tickets import generate
from proctor.store.tables import audit_log


def test_demo_runs_the_workload_and_leaves_work_for_humans(tmp_path: Path) -> None:
    workspace = tmp_path / "demo"
    r = proctor("demo", "--no-serve", "--dir", str(workspace))
    assert r.returncode == 0, r.stderr
    assert "What the agent did" in r.stdout and "records verified" in r.stdout
    with Proctor(f"sqlite:///{workspace / 'proctor.db'}") as px:
        pending = px.reviews.list()
        assert len({i.queue for i in pending}) >= 2
        kinds = {i.kind for i in pending}
        assert {"approval", "exception", "sample"} <= kinds
        with px.store.read() as conn:
            denied = conn.execute(
                sa.select(sa.func.count()).where(
                    audit_log.c.kind == "decision", audit_log.c.decision == "deny"
                )
            ).scalar_one()
        assert denied >= 1
        assert verify(px.store).ok
    again = proctor("demo", "--no-serve", "--dir", str(workspace))  # starts fresh each time
    assert again.returncode == 0 and r.stdout.count("records verified") == 1


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
