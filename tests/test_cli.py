"""The `proctor` command, run as a user runs it: a real subprocess, exit codes and output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import EXAMPLE


def proctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from proctor.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_policy_check_ok() -> None:
    r = proctor("policy", "check", str(EXAMPLE))
    assert r.returncode == 0, r.stderr
    assert "ok: policy 'support-desk'" in r.stdout


def test_policy_check_bad_file_is_one_line_with_place(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("policy: x\nrules:\n  - id: a\n    when: tool == == 1\n    decide: allow\n")
    r = proctor("policy", "check", str(bad))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert r.stderr.startswith(f"{bad}:4:19: CEL syntax error")
    assert "Traceback" not in r.stderr


BAD_POLICIES = [
    # (id, text, line, column, message)
    ("deep-yaml", "policy: x\nrules: " + "[" * 1200 + "]" * 1200, 2, 71, "nests deeper than 64"),
    (
        "deep-block-yaml",
        "policy: x\n" + "".join(f"{'  ' * i}k{i}:\n" for i in range(1200)) + "  " * 1200 + "v: 1\n",
        66,
        129,
        "nests deeper than 64",
    ),
    (
        "when-string",
        "policy: x\nrules:\n  - id: a\n    when: '\"yes\"'\n    decide: allow\n",
        4,
        12,
        "rule 'a': 'when' must be a boolean expression, but this one gives a string",
    ),
    (
        "risk-boolean",
        "policy: x\nrisk: args.amount > 5.0\n",
        2,
        7,
        "'risk' must give a number, but this one gives a boolean",
    ),
    (
        "deep-cel",
        "policy: x\nrules:\n  - id: a\n    decide: allow\n    when: "
        + "(" * 2000
        + "true"
        + ")" * 2000,
        5,
        11,
        "the expression is 4004 characters long",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [c[1:] for c in BAD_POLICIES],
    ids=[c[0] for c in BAD_POLICIES],
)
def test_policy_check_refuses_bad_file_in_one_line(
    tmp_path: Path, text: str, line: int, column: int, message: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    r = proctor("policy", "check", str(bad))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert r.stderr.startswith(f"{bad}:{line}:{column}: "), r.stderr
    assert message in r.stderr


def test_policy_check_missing_file_exits_2() -> None:
    r = proctor("policy", "check", "no-such-policy.yaml")
    assert r.returncode == 2 and "no such policy file" in r.stderr


def test_policy_test_passes_and_fails(tmp_path: Path) -> None:
    r = proctor("policy", "test", str(EXAMPLE))
    assert r.returncode == 0, r.stdout
    assert r.stdout.splitlines()[-1] == "3 passed, 0 failed"
    failing = tmp_path / "failing.yaml"
    failing.write_text(EXAMPLE.read_text().replace("expect: deny", "expect: allow"))
    r = proctor("policy", "test", str(failing))
    assert r.returncode == 1
    assert "FAIL" in r.stdout and r.stdout.splitlines()[-1] == "2 passed, 1 failed"
    bad = tmp_path / "bad.yaml"
    bad.write_text("policy: [\n")
    assert proctor("policy", "test", str(bad)).returncode == 2


def test_apply_verify_export(db_url: str, tmp_path: Path) -> None:
    r = proctor("policy", "apply", str(EXAMPLE), "--database", db_url, "-m", "first")
    assert r.returncode == 0, r.stderr
    assert "version" in r.stdout
    r = proctor("audit", "verify", "--database", db_url)
    assert r.returncode == 0, r.stderr
    assert "1 records verified" in r.stdout
    out = tmp_path / "log.jsonl"
    r = proctor("audit", "export", "--format", "jsonl", "-o", str(out), "--database", db_url)
    assert r.returncode == 0, r.stderr
    (line,) = out.read_text().splitlines()
    assert json.loads(line)["record"]["message"] == "first"


def test_database_comes_from_environment(sqlite_url: str) -> None:
    env = {"PROCTOR_DATABASE_URL": sqlite_url}
    assert proctor("policy", "apply", str(EXAMPLE), env=env).returncode == 0
    r = proctor("audit", "verify", env=env)
    assert r.returncode == 0 and "1 records verified" in r.stdout


def test_verify_failure_exits_1_naming_record(sqlite_url: str) -> None:
    import sqlite3

    assert proctor("policy", "apply", str(EXAMPLE), "-d", sqlite_url).returncode == 0
    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE proctor_audit_log SET record = replace(record, 'support', 'xupport')")
    r = proctor("audit", "verify", "-d", sqlite_url)
    assert r.returncode == 1
    assert "FAILED at record 1" in r.stderr


def test_unusable_database_url_exits_2() -> None:
    r = proctor("audit", "verify", "--database", "mysql://x/y")
    assert r.returncode == 2 and "unsupported database" in r.stderr


@pytest.mark.parametrize("kind", ["gate", "policy"])
def test_bench_prints_json(kind: str) -> None:
    args = ["bench", kind, "--rules", "20", "-n", "300", "--json"]
    r = proctor(*args)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    for key in ("p50_us", "p99_us", "per_s", "rules", "backend"):
        assert key in data
    assert data["rules"] == 20 and data["p50_us"] > 0


def test_bench_calls_compares_identity_with_none() -> None:
    r = proctor("bench", "calls", "--rules", "10", "-n", "200", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    for side in ("plain", "identity"):
        assert data[f"decide_{side}_p50_us"] > 0 and data[f"call_{side}_p50_us"] > 0
    assert "decide_identity_overhead_p50_pct" in data and "call_run_overhead_p50_pct" in data


def test_bench_gate_on_postgresql(pg_url: str) -> None:
    base = pg_url.split("?")[0]
    r = proctor("bench", "gate", "--rules", "10", "-n", "200", "--database", base, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["backend"] == "postgresql"


def test_unknown_command_is_usage_error() -> None:
    r = proctor("policy", "frobnicate")
    assert r.returncode == 2 and "No such command" in r.stderr
