"""`proctor policy check` warnings and `--strict`, and `policy init`'s default, as run."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import EXAMPLE
from tests.test_cli import proctor

from proctor.policy import compile_policy

WARNED = """\
policy: warned
defaults: {decision: deny, queue: ops}
queues: {ops: {}}
agents:
  bot:
    tools:
      issue_refund: {params: {amount: float, order_id: str}}
rules:
  - id: typo
    when: tool == "isue_refund"
    decide: allow
  - id: large
    when: tool == "issue_refund" && args.amount > "100"
    decide: review
  - id: fine
    when: tool == "issue_refund" && args.amount > 100
    decide: review
"""


def test_check_prints_warnings_with_places_on_stderr_and_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(WARNED)
    r = proctor("policy", "check", str(path))
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [
        f"{path}:10:19: warning: rule 'typo' can never match: no agent's envelope allows"
        " tool 'isue_refund'; did you mean 'issue_refund'? [unreachable-rule]",
        f"{path}:13:51: warning: '>' compares args.amount (declared float) with \"100\""
        " (a string): CEL cannot order them, so this fails at run time, which denies the"
        " action; write 100.0 [type-mismatch]",
    ]
    assert "ok: policy 'warned'" in r.stdout and r.stdout.rstrip().endswith("2 warning(s)")


def test_strict_makes_the_warnings_errors(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(WARNED)
    r = proctor("policy", "check", "--strict", str(path))
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert [line.split(": ", 2)[:2] for line in lines] == [
        [f"{path}:10:19", "error"],
        [f"{path}:13:51", "error"],
    ]
    assert "Traceback" not in r.stderr
    clean = proctor("policy", "check", "--strict", str(EXAMPLE))
    assert clean.returncode == 0 and clean.stderr == ""
    assert "warning" not in clean.stdout


def test_errors_still_come_first_and_alone(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(WARNED.replace("    decide: allow", "    decision: allow"))
    r = proctor("policy", "check", str(path))
    assert r.returncode == 2
    assert r.stderr == f"{path}:11:5: unknown key 'decision'; did you mean 'decide'?\n"


def test_init_without_oversight_writes_a_moderate_starter_and_says_so(tmp_path: Path) -> None:
    r = proctor("policy", "init")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "no --oversight given: writing a moderate-oversight starter\n"
    assert compile_policy(r.stdout).agents["my-agent"].oversight == "moderate"
    given = proctor("policy", "init", "--oversight", "light")
    assert given.returncode == 0 and given.stderr == ""
    assert compile_policy(given.stdout).agents["my-agent"].oversight == "light"
    out = tmp_path / "p.yaml"
    written = proctor("policy", "init", "-o", str(out))
    assert written.returncode == 0 and "moderate-oversight" in written.stderr
    assert compile_policy(out.read_text()).agents["my-agent"].oversight == "moderate"
