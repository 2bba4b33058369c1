"""Malformed policies: each error names the exact line and column."""

from __future__ import annotations

import pytest

from proctor import PolicyError
from proctor.policy import compile_policy

BASE_AGENT = "agents:\n  bot:\n    tools: [t]\n"

CASES = [
    # (id, text, line, column, message fragment)
    ("yaml-syntax", "policy: x\nrules: [\n  {id: a\n", 4, 1, "invalid YAML"),
    ("bad-indent", "policy: x\n  rules: []\n", 2, 8, "invalid YAML"),
    ("not-mapping", "- a\n- b\n", 1, 1, "must be a mapping"),
    ("missing-policy", "rules: []\n", 1, 1, "missing required key 'policy'"),
    ("unknown-top-key", "policy: x\nrulez: []\n", 2, 1, "unknown key 'rulez'"),
    (
        "unknown-rule-key",
        "policy: x\nrules:\n  - id: a\n    decide: allow\n    whn: 'true'\n",
        5,
        5,
        "unknown key 'whn'",
    ),
    ("bad-decide", "policy: x\nrules:\n  - id: a\n    decide: maybe\n", 4, 13, "rules.0.decide"),
    ("wrong-type-tools", "policy: x\nagents:\n  bot:\n    tools: 5\n", 4, 12, "agents.bot.tools"),
    (
        "autonomy-range",
        "policy: x\nagents:\n  bot:\n    autonomy: 7\n",
        4,
        15,
        "less than or equal to 4",
    ),
    (
        "sample-range",
        "policy: x\n" + BASE_AGENT + "rules:\n  - id: a\n    decide: allow\n    sample: 1.5\n",
        8,
        13,
        "less than or equal to 1",
    ),
    ("bad-duration", "policy: x\ndefaults: {review_timeout: soon}\n", 2, 28, "duration"),
    ("duplicate-key", "policy: x\npolicy: y\n", 2, 1, "duplicate key 'policy'"),
    (
        "cel-syntax",
        "policy: x\nrules:\n  - id: a\n    when: tool == == 1\n    decide: allow\n",
        4,
        19,
        "CEL syntax error",
    ),
    (
        "cel-syntax-quoted",
        'policy: x\nrules:\n  - id: a\n    when: "args.x > "\n    decide: allow\n',
        4,
        21,
        "CEL syntax error",
    ),
    (
        "cel-unknown-var",
        "policy: x\nrules:\n  - id: a\n    when: tool == 'x' && user.admin\n    decide: allow\n",
        4,
        26,
        "unknown variable 'user'",
    ),
    (
        "cel-unknown-var-block",
        "policy: x\nrules:\n  - id: a\n    when: |\n      tool == 'x' &&\n"
        "        foo > 1\n    decide: allow\n",
        6,
        9,
        "unknown variable 'foo'",
    ),
    ("risk-uses-risk", "policy: x\nrisk: risk + 1.0\n", 2, 7, "unknown variable 'risk'"),
    (
        "unknown-queue",
        "policy: x\nrules:\n  - id: a\n    decide: review\n    queue: nowhere\n",
        5,
        12,
        "unknown queue 'nowhere'",
    ),
    (
        "review-without-queue",
        "policy: x\nrules:\n  - id: a\n    decide: review\n",
        4,
        13,
        "names no queue",
    ),
    (
        "duplicate-rule-id",
        "policy: x\nrules:\n  - {id: a, decide: allow}\n  - {id: a, decide: deny}\n",
        4,
        10,
        "duplicate rule id 'a'",
    ),
    (
        "sample-on-deny",
        "policy: x\nqueues: {qa: {}}\nrules:\n  - {id: a, decide: deny, sample: 0.1, queue: qa}\n",
        4,
        35,
        "only applies to rules that decide allow",
    ),
    ("escalate-unknown", "policy: x\nqueues:\n  a: {escalate_to: b}\n", 3, 20, "unknown queue 'b'"),
    ("bad-sensitive", "policy: x\nsensitive: [password]\n", 2, 13, "start with 'args.'"),
    (
        "test-unknown-rule",
        "policy: x\nrules: [{id: a, decide: allow}]\ntests:\n"
        "  - {action: {agent: b, tool: t}, expect: allow, rules: [zzz]}\n",
        4,
        58,
        "unknown rule id",
    ),
    ("empty", "", 1, 1, "empty"),
]


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed_policy_reports_exact_place(
    text: str, line: int, column: int, fragment: str
) -> None:
    with pytest.raises(PolicyError) as info:
        compile_policy(text, "p.yaml")
    err = info.value
    assert fragment in err.message
    assert (err.line, err.column) == (line, column), err.located()
    assert err.located().startswith(f"p.yaml:{line}:{column}: ")


def test_design_example_loads_as_written() -> None:
    from tests.conftest import EXAMPLE

    policy = compile_policy(EXAMPLE.read_text(), str(EXAMPLE))
    assert policy.name == "support-desk"
    assert [r.id for r in policy.rules] == ["routine", "large-refund", "unsure", "replies"]
    assert len(policy.version) == 64


def test_version_ignores_formatting_comments_and_spelled_out_defaults() -> None:
    a = compile_policy("policy: x\nrules: [{id: a, decide: allow}]\n")
    b = compile_policy("# a comment\npolicy:   x\nrules:\n  - id: a\n    decide: allow\n")
    c = compile_policy(
        "policy: x\ndefaults: {decision: deny, review_timeout: 4h}\n"
        "rules: [{id: a, decide: allow, when: 'true'}]\n"
    )
    d = compile_policy("policy: x\nrules: [{id: a, decide: deny}]\n")
    assert a.version == b.version == c.version != d.version
