"""docs/audit-format.md: its verifier, taken from the page and run as an auditor would,
with nothing but the standard library and a JCS package, against a real log's export."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.test_audit import make_legacy

from proctor import Denied, Option, Proctor, ReviewPending
from proctor.audit.export import export_jsonl
from proctor.audit.verify import verify

DOC = Path(__file__).resolve().parent.parent / "docs" / "audit-format.md"

POLICY = """
policy: ledger
defaults: {decision: deny, queue: billing}
queues: {billing: {}}
agents:
  bot: {tools: [refund, credit, note]}
risk: "has(args.amount) ? args.amount / 1000.0 : 0.0"
rules:
  - {id: small, when: 'tool == "refund" && args.amount <= 100.0', decide: allow}
  - {id: big, when: 'tool == "refund" && args.amount > 100.0', decide: review}
  - {id: credits, when: 'tool == "credit"', decide: allow}
  - {id: notes, when: 'tool == "note"', decide: allow, on_error: review}
"""


def verifier(tmp_path: Path) -> Path:
    (code,) = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(code.splitlines()) <= 30
    script = tmp_path / "verify.py"
    script.write_text(code, encoding="utf-8")
    return script


def run(script: Path, log: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), str(log)], capture_output=True, text=True, timeout=60
    )


def busy_log(px: Proctor) -> int:
    """Decisions, reviews, outcomes, a choice and a failure, with awkward numbers and text."""
    px.policy.apply(POLICY)

    @px.tool(agent="bot", wait=0)
    def refund(order: str, amount: float, note: str = "", extra: Any = None) -> str:
        return f"refunded {amount}"

    @px.tool(agent="bot", wait=0)
    def credit(account: str, amount: float) -> str:
        return f"credited {amount}"

    @px.tool(agent="bot")
    def note(text: str, meta: dict[str, Any]) -> None:
        raise ConnectionError("upstream reset")

    with px.run(agent="bot", confidence=0.95, cost=12.0, région="Île-de-France"):
        refund("A-1", 20.0, "café ☕ naïve", {"clé": 1e-7, "\ue000": -0.0, "😀": [1e21, 2**60]})
        with pytest.raises(ReviewPending) as pending:
            refund("A-2", 250.0, "Grüße aus Köln", {"tiny": 1e-7, "big": 2**53 + 1})
        px.reviews.approve(pending.value.item_id, by="ana", note="ok — vérifié")
        assert px.resume(pending.value.item_id) == "refunded 250.0"
        with pytest.raises(ReviewPending) as pending:
            refund("A-3", 300.0)
        px.reviews.reject(pending.value.item_id, by="ana", reason="duplicate «A-2»")
        with pytest.raises(ConnectionError):
            note("日本語のメモ", {"\U0001f600": 1.5, "\ufb33": 2.0, "\u20ac": 1e-6})
        options = [
            Option(refund, {"order": "A-4", "amount": 80.0}),
            Option(credit, {"account": "C", "amount": 5.0}),
        ]
        with pytest.raises(ReviewPending) as pending:
            px.choose(options, wait=0)
        px.reviews.choose(pending.value.item_id, by="ana", option=1)
        assert px.resume(pending.value.item_id) == "credited 5.0"

    @px.tool(agent="bot")
    def wire(to: str) -> str:  # not among the agent's tools: denied
        return to

    with pytest.raises(Denied):
        wire("acct-9")
    result = verify(px.store)
    assert result.ok, result.message()
    return result.checked


def export(px: Proctor, path: Path) -> list[dict[str, Any]]:
    with path.open("w", encoding="utf-8") as out:
        export_jsonl(px.store, out)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def rewrite(path: Path, lines: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


def test_the_documented_verifier_checks_a_real_log(px: Proctor, tmp_path: Path) -> None:
    count = busy_log(px)
    log = tmp_path / "log.jsonl"
    lines = export(px, log)
    kinds = {line["kind"] for line in lines}
    assert {"decision", "outcome", "review.approve", "review.reject", "review.choose"} <= kinds
    assert any(line["record"].get("_numbers") for line in lines)
    text = log.read_text(encoding="utf-8")
    assert "1e-7" in text and '"1152921504606846976"' in text and "😀" in text
    script = verifier(tmp_path)
    r = run(script, log)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"ok: {count} records, last digest {lines[-1]['hash']}")

    # The same records written differently (spacing, member order, escapes) still verify:
    # the verifier hashes their canonical form, not the file's bytes.
    rewrite(log, [dict(reversed(line.items())) for line in lines])
    assert run(script, log).returncode == 0


@pytest.mark.parametrize(
    "tamper",
    ["amount", "reviewer", "column", "dropped", "swapped"],
)
def test_the_documented_verifier_catches_a_modified_log(
    px: Proctor, tmp_path: Path, tamper: str
) -> None:
    busy_log(px)
    log = tmp_path / "log.jsonl"
    lines = export(px, log)
    if tamper == "amount":
        at = next(i for i, ln in enumerate(lines) if "A-2" in json.dumps(ln["record"]))
        lines[at]["record"]["action"]["args"]["amount"] = 25
    elif tamper == "reviewer":
        at = next(i for i, ln in enumerate(lines) if ln["kind"] == "review.approve")
        lines[at]["record"]["by"] = "mallory"
    elif tamper == "column":
        at = next(i for i, ln in enumerate(lines) if ln["decision"] == "review")
        lines[at]["decision"] = "allow"
    elif tamper == "dropped":
        at = 5
        del lines[at]
    else:
        at = 6
        lines[at], lines[at + 1] = lines[at + 1], lines[at]
    rewrite(log, lines)
    r = run(verifier(tmp_path), log)
    assert r.returncode == 1
    assert f"FAILED at record {at + 1}:" in r.stderr


def test_the_documented_verifier_follows_a_chain_across_formats(
    px: Proctor, tmp_path: Path
) -> None:
    """A log an older release started: format 1 and 2 records link into format 3 ones."""
    busy_log(px)
    make_legacy(px, 4, 9)
    assert verify(px.store).ok
    log = tmp_path / "log.jsonl"
    lines = export(px, log)
    assert [line["fmt"] for line in lines[:11]] == [1] * 4 + [2] * 5 + [3] * 2
    assert run(verifier(tmp_path), log).returncode == 0
    lines[6]["text"] = lines[6]["text"].replace('"v":2', '"v":3')
    rewrite(log, lines)
    r = run(verifier(tmp_path), log)
    assert r.returncode == 1 and "FAILED at record 7:" in r.stderr
