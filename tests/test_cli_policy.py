"""`proctor policy init`'s default, as run."""

from __future__ import annotations

from pathlib import Path

from tests.test_cli import proctor

from proctor.policy import compile_policy


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
