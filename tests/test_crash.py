"""SIGKILL in the middle of a decision loop loses nothing that was acknowledged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import sqlalchemy as sa

from proctor import Proctor
from proctor.audit.verify import verify
from proctor.store.tables import audit_log

CHILD = r"""
import sys
from proctor import Proctor
px = Proctor(sys.argv[1])
@px.tool(agent="bot")
def lookup(n: int) -> int:
    return n
i = 0
while True:
    i += 1
    lookup(i)
    # Acknowledged: the decision and the outcome were both committed when this prints.
    print(i, flush=True)
"""

POLICY = "policy: crash\nagents: {bot: {tools: [lookup]}}\nrules: [{id: ok, decide: allow}]\n"


def test_sigkill_loses_no_acknowledged_decision(db_url: str) -> None:
    with Proctor(db_url) as px:
        px.policy.apply(POLICY)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, db_url],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    acknowledged = []
    deadline = time.monotonic() + 60
    while len(acknowledged) < 300 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        acknowledged.append(int(line))
    child.send_signal(signal.SIGKILL)  # mid-loop: possibly inside a transaction
    rest = child.stdout.read()
    acknowledged += [int(x) for x in rest.split()]
    child.wait(timeout=10)
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 300

    with Proctor(db_url) as px:
        result = verify(px.store)
        assert result.ok, result.message()
        with px.store.read() as conn:
            rows = (
                conn.execute(sa.select(audit_log.c.record).where(audit_log.c.kind == "outcome"))
                .scalars()
                .all()
            )
            decided = conn.execute(
                sa.select(sa.func.count()).where(audit_log.c.kind == "decision")
            ).scalar_one()
        assert len(rows) >= len(acknowledged)
        assert decided >= len(rows)
        # every call the child reported as returned has its decision in the log
        recorded_args = set()
        with px.store.read() as conn:
            for (rec,) in conn.execute(
                sa.select(audit_log.c.record).where(audit_log.c.kind == "decision")
            ):
                recorded_args.add(json.loads(rec)["action"]["args"]["n"])
        assert set(acknowledged) <= recorded_args
