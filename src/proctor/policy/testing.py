"""Run a policy's own ``tests:`` section, like ``opa test``."""

from __future__ import annotations

from dataclasses import dataclass

from .compile import CompiledPolicy
from .evaluate import Action, Decision, evaluate


@dataclass(frozen=True)
class TestResult:
    index: int
    name: str
    passed: bool
    decision: Decision
    message: str


def run_tests(policy: CompiledPolicy) -> list[TestResult]:
    results = []
    for i, test in enumerate(policy.document.tests):
        a = test.action
        action = Action(
            a.agent, a.tool, dict(a.args), dict(a.context), a.reversible, tuple(a.reads)
        )
        decision = evaluate(policy, action)
        name = test.name or f"{a.agent} {a.tool} {_short(a.args)} -> {test.expect}"
        problems = []
        if decision.decision != test.expect:
            problems.append(f"expected {test.expect}, got {decision.decision} ({decision.reason})")
        if test.rules is not None and sorted(test.rules) != sorted(decision.rule_ids):
            problems.append(f"expected rules {sorted(test.rules)}, got {sorted(decision.rule_ids)}")
        results.append(TestResult(i, name, not problems, decision, "; ".join(problems)))
    return results


def _short(args: dict[str, object]) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in args.items())
    return "{" + (text if len(text) <= 40 else text[:37] + "...") + "}"
