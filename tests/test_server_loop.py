"""A write waiting for the database never stalls the server: a real `proctor serve` on
SQLite while another process holds the write lock."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from tests.test_server_process import POLICY, Server, free_port

HOLD_SECONDS = 3.0
HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


@pytest.fixture
def server(sqlite_url: str) -> Iterator[Server]:
    srv = Server(sqlite_url, free_port())
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_healthz_answers_while_an_action_waits_for_the_write_lock(server: Server) -> None:
    admin = server.client(server.admin)
    admin.policy.apply(POLICY)
    admin.close()
    token = server.token("agent", "runner", agents="support-bot")
    action = {"agent": "support-bot", "tool": "lookup_order", "args": {"order_id": "A-1"}}
    path = server.db.removeprefix("sqlite:///")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, path, str(HOLD_SECONDS)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    locked_at = time.monotonic()
    with ThreadPoolExecutor(max_workers=1) as pool, httpx.Client(timeout=30) as probe:
        posted = pool.submit(
            httpx.post,
            f"{server.url}/api/v1/actions",
            json=action,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        time.sleep(0.3)  # the action is now waiting for the lock inside the server
        probes = []
        while time.monotonic() - locked_at < HOLD_SECONDS - 0.5 and len(probes) < 20:
            start = time.perf_counter()
            assert probe.get(f"{server.url}/healthz").status_code == 200
            probes.append(time.perf_counter() - start)
            time.sleep(0.05)
        waited = not posted.done()  # the lock really was held throughout the probes
        response = posted.result(timeout=30)
    holder.wait(timeout=10)
    holder.stdout.close()
    assert statistics.median(probes) < 0.05, probes
    assert max(probes) < 0.5, probes
    assert len(probes) >= 5 and waited
    # The action waited for the lock, then was decided: slow, never refused.
    assert response.status_code == 200 and response.json()["decision"]["decision"] == "allow"
