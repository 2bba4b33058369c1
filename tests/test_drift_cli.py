"""``proctor drift`` as a user runs it: a real subprocess on a real database."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tests.test_cli import proctor
from tests.test_drift_monitor import policy, refunds

from proctor import Proctor


@pytest.fixture
def database(sqlite_url: str) -> str:
    with Proctor(sqlite_url) as px:
        px.policy.apply(policy())
        refunds(px, 300, 50.0, seed=1)
        refunds(px, 200, 50.0, seed=2)
    return sqlite_url


def test_drift_check_status_history(database: str) -> None:
    first = proctor("drift", "check", "--json", "-d", database)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"detections": []}
    with Proctor(database) as px:
        refunds(px, 100, 85.0, seed=3)
    found = proctor("drift", "check", "-d", database)
    assert found.returncode == 0, found.stderr
    assert "drift refund-amount" in found.stdout and "bot/refund lowered 3 -> 2" in found.stdout
    status = json.loads(proctor("drift", "status", "--json", "-d", database).stdout)
    assert {m["id"]: m["status"] for m in status}["refund-amount"] == "drift"
    shown = proctor("drift", "status", "-d", database)
    assert "refund-amount" in shown.stdout and "drift" in shown.stdout
    history = json.loads(proctor("drift", "history", "--json", "-d", database).stdout)
    assert [h["kind"] for h in history] == ["drift.detected"]
    assert history[0]["response"]["autonomy"]["to"] == 2
    agents = proctor("agent", "list", "-d", database)
    assert "bot/refund" in agents.stdout and "2 (guided)" in agents.stdout


def test_drift_calibrate_reports_and_applies(database: str) -> None:
    r = proctor("drift", "calibrate", "refund-amount", "--since", "1h", "--json", "-d", database)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["events"] == 500 and report["windows"] == 5 and not report["applied"]
    assert report["expected_false_alarms_per_10000"] == pytest.approx(0.002 * 100)
    assert report["threshold"] > 0
    applied = proctor(
        "drift", "calibrate", "refund-amount", "--since", "1h", "--apply", "-d", database
    )
    assert applied.returncode == 0 and "applied" in applied.stdout, applied.stderr
    status = json.loads(proctor("drift", "status", "--json", "-d", database).stdout)
    row = {m["id"]: m for m in status}["refund-amount"]
    assert row["status"] == "watching" and row["threshold"] == pytest.approx(report["threshold"])


def test_drift_reset_and_mistakes_are_one_line(database: str) -> None:
    bad = proctor("drift", "calibrate", "nope", "--since", "1h", "-d", database)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "nope" in bad.stderr
    few = proctor("drift", "calibrate", "refund-amount", "--since", "1s", "-d", database)
    assert few.returncode == 2 and "needs at least" in few.stderr
    versions = proctor("drift", "calibrate", "escalations", "--since", "1h", "-d", database)
    assert versions.returncode == 2 and "compares versions" in versions.stderr
    ok = proctor("drift", "reset", "refund-amount", "--reason", "new prices", "-d", database)
    assert ok.returncode == 0 and "re-baselining" in ok.stdout, ok.stderr


def test_import_proctor_and_a_decision_do_not_load_numpy(database: str) -> None:
    code = (
        "import sys\n"
        "from proctor import Proctor\n"
        "from proctor.policy import Action\n"
        f"px = Proctor({database!r})\n"
        "px.gate.decide(Action('bot', 'refund', {'amount': 5.0}), None)\n"
        "assert 'numpy' not in sys.modules, 'numpy on the decision path'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
