"""``proctor bench heal`` against its flaky service (a real process on loopback): healing
never charges twice, completes more than one plain try, and retries within its bound."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import orjson
import sqlalchemy as sa
from rich.console import Console

from proctor import Proctor
from proctor.bench.gate import _database
from proctor.bench.heal import (
    ATTEMPTS,
    ROWS,
    _run_mode,
    bench_breaker,
    flaky_service,
    table,
)
from proctor.store.tables import audit_log

N = 120  # the down stretch scales with it: calls 48 to 65
MODE_KEYS = {
    "calls",
    "completed",
    "completion_rate",
    "by_primary",
    "by_fallback",
    "failed",
    "duplicate_effects",
    "duplicate_keys",
    "charges",
    "deferred",
    "requests",
    "fates",
    "escalated",
    "recovered_retry",
    "recovered_fallback",
    "recovered_lookup",
    "breaker_opened",
    "retries",
    "max_retries_per_call",
    "p50_ms",
    "p95_ms",
    "wall_s",
}


def proctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from proctor.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def attempts_per_decision(url: str) -> Counter[str]:
    with Proctor(url) as px, px.store.read() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.record).where(audit_log.c.kind == "call.attempt")
        ).all()
    return Counter(orjson.loads(r[0])["decision_id"] for r in rows)


def test_healing_on_beats_off_without_duplicates(db_url: str) -> None:
    other = None if db_url.startswith("sqlite") else db_url.split("?")[0]
    with flaky_service(seed=11) as service:
        on = _run_mode("on", N, 11, db_url, service)
        with _database(other) as off_url:
            off = _run_mode("off", N, 11, off_url, service)
    assert on["duplicate_effects"] == 0 and on["duplicate_keys"] == 0
    assert on["completion_rate"] > off["completion_rate"]
    assert on["completed"] == on["by_primary"] + on["by_fallback"]
    assert on["by_fallback"] == on["recovered_fallback"] > 0  # the down stretch fell back
    assert on["breaker_opened"] >= 1 and on["recovered_retry"] > 0
    # each failed try followed by another is one call.attempt record of the call's decision
    tries = attempts_per_decision(db_url)
    assert tries and max(tries.values()) <= ATTEMPTS - 1
    assert sum(tries.values()) == on["retries"]
    assert max(tries.values()) == on["max_retries_per_call"]
    assert off["retries"] == 0 and off["by_fallback"] == 0 and off["escalated"] == 0


def test_cli_reports_every_mode_as_documented() -> None:
    r = proctor("bench", "heal", "-n", "80", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert {"bench", "n", "seed", "backend", "what", "service", "modes"} <= set(data)
    assert data["backend"] == "sqlite" and data["service"]["down_calls"] == [32, 44]
    assert set(data["modes"]) == {"on", "off", "naive"}
    for mode in data["modes"].values():
        assert set(mode) == MODE_KEYS
        assert mode["calls"] == 80 and mode["p50_ms"] > 0
    on, off, naive = (data["modes"][m] for m in ("on", "off", "naive"))
    assert on["duplicate_effects"] == 0 and on["completion_rate"] > off["completion_rate"]
    assert naive["duplicate_effects"] > 0  # blind retries after a lost answer charge twice
    assert 0 < naive["max_retries_per_call"] <= 2 and naive["escalated"] == 0
    assert on["max_retries_per_call"] <= data["service"]["retry_attempts"] - 1
    console = Console(record=True, width=120)
    console.print(table(data))
    text = console.export_text()
    assert all(label in text for _, label in ROWS) and "naive retries" in text


def test_gate_part_compares_a_closed_breaker_with_none() -> None:
    data = bench_breaker(n=100)
    assert data["backend"] == "sqlite" and data["breaker_state"] == "closed"
    assert data["none_p50_us"] > 0 and data["breaker_p50_us"] > 0
    assert "overhead_p50_pct" in data and data["budget_pct"] == 5.0
