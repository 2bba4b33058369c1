"""Evaluation: combining, envelopes, risk, fail-closed evaluation errors, the tool index."""

from __future__ import annotations

import pytest

from proctor.policy import Action, compile_policy, evaluate, run_tests
from proctor.policy.evaluate import sampled

POLICY = """
policy: p
defaults: {decision: deny}
queues: {ops: {}, qa: {}}
agents:
  bot:
    tools: [refund, reply, lookup, export]
    data: [orders, customers.contact]
    autonomy: 3
risk: "(has(args.amount) && args.amount > 500.0 ? 0.5 : 0.0) + (action.reversible ? 0.0 : 0.3)"
rules:
  - {id: ok, when: 'tool in ["refund", "lookup", "reply"]', decide: allow}
  - {id: big, when: 'tool == "refund" && args.amount > 100.0', decide: review, queue: ops,
     reason: Big refunds need a human}
  - {id: risky, when: 'risk >= 0.8', decide: deny, reason: Too risky}
  - {id: stage, when: 'agent.autonomy < 2', decide: review, queue: ops}
  - {id: replies, when: 'tool == "reply"', decide: allow, sample: 0.5, queue: qa}
  - {id: flaky, when: 'tool == "lookup"', decide: allow, on_error: review, queue: ops}
  - {id: sized, when: 'tool == "export" && size(args) > 1', decide: allow}
"""


@pytest.fixture(scope="module")
def policy():  # type: ignore[no-untyped-def]
    return compile_policy(POLICY)


def act(tool: str, reversible: bool = True, reads: tuple[str, ...] = (), **args: object) -> Action:
    return Action("bot", tool, dict(args), {}, reversible, reads)


def test_allow_names_its_rule(policy) -> None:  # type: ignore[no-untyped-def]
    d = evaluate(policy, act("refund", amount=20.0))
    assert (d.decision, d.rule_ids) == ("allow", ("ok",))
    assert d.policy_version == policy.version
    assert d.risk == 0.0


def test_review_beats_allow(policy) -> None:  # type: ignore[no-untyped-def]
    d = evaluate(policy, act("refund", amount=250.0))
    assert (d.decision, d.rule_ids, d.queue) == ("review", ("big",), "ops")
    assert d.reason == "Big refunds need a human"


def test_deny_beats_review_and_uses_risk(policy) -> None:  # type: ignore[no-untyped-def]
    d = evaluate(policy, act("refund", reversible=False, amount=900.0))
    assert d.decision == "deny"
    assert d.rule_ids == ("risky",)
    assert d.risk == pytest.approx(0.8)


def test_no_match_falls_to_default(policy) -> None:  # type: ignore[no-untyped-def]
    d = evaluate(policy, act("export"))
    assert (d.decision, d.rule_ids) == ("deny", ("defaults",))


def test_envelope_refuses_unknown_tool_and_agent(policy) -> None:  # type: ignore[no-untyped-def]
    assert evaluate(policy, act("delete_account")).rule_ids == ("envelope.tools",)
    d = evaluate(policy, Action("stranger", "refund", {"amount": 1.0}))
    assert (d.decision, d.rule_ids) == ("deny", ("envelope.agent",))


def test_data_scopes(policy) -> None:  # type: ignore[no-untyped-def]
    assert evaluate(policy, act("lookup", reads=("orders.items",))).decision == "allow"
    assert evaluate(policy, act("lookup", reads=("customers.contact.email",))).decision == "allow"
    d = evaluate(policy, act("lookup", reads=("customers",)))
    assert (d.decision, d.rule_ids) == ("deny", ("envelope.data",))
    assert "customers" in d.reason


def test_missing_field_fails_closed_naming_the_rule(policy) -> None:  # type: ignore[no-untyped-def]
    d = evaluate(policy, act("refund"))  # big reads args.amount, which is absent
    assert d.decision == "deny"
    assert d.rule_ids == ("big",)
    assert "amount" in d.reason and "failing closed" in d.reason
    assert d.error == "KeyError"


def test_type_error_fails_closed() -> None:
    p = compile_policy(
        "policy: p\nagents: {bot: {tools: [t]}}\n"
        "rules: [{id: r, when: 'args.n > 1.0', decide: allow}]\n"
    )
    d = evaluate(p, Action("bot", "t", {"n": "lots"}))
    assert d.decision == "deny" and d.error is not None


def test_non_boolean_condition_fails_closed() -> None:
    p = compile_policy(
        "policy: p\nagents: {bot: {tools: [t]}}\nrules: [{id: r, when: 'args.n', decide: allow}]\n"
    )
    d = evaluate(p, Action("bot", "t", {"n": 2}))
    assert d.decision == "deny" and "not a boolean" in d.reason


def test_on_error_and_sample_are_carried(policy) -> None:  # type: ignore[no-untyped-def]
    d = evaluate(policy, act("lookup"))
    assert d.on_error and d.queue == "ops"
    r = evaluate(policy, act("reply", text="hi"))
    assert (r.sample, r.sample_queue) == (0.5, "qa")


def test_rules_are_indexed_by_tool(policy) -> None:  # type: ignore[no-untyped-def]
    assert [r.id for r in policy.candidates("lookup")] == ["ok", "risky", "stage", "flaky"]
    assert [r.id for r in policy.candidates("export")] == ["risky", "stage", "sized"]


def test_whole_map_is_given_when_a_rule_needs_it(policy) -> None:  # type: ignore[no-untyped-def]
    # size(args) cannot be answered from a projection: every key must reach CEL
    assert evaluate(policy, act("export", a=1, b=2)).decision == "allow"
    assert evaluate(policy, act("export", a=1)).decision == "deny"


def test_index_is_equivalent_to_trying_every_rule() -> None:
    text = POLICY.replace(
        "tools: [refund, reply, lookup, export]", "tools: [refund, reply, lookup, export, x]"
    )
    p = compile_policy(text)
    for tool in ["refund", "reply", "lookup", "export", "x"]:
        tried = {r.id for r in p.candidates(tool)}
        skipped = [r for r in p.rules if r.id not in tried]
        for rule in skipped:  # a skipped rule can never match this tool
            assert rule.tools is not None and tool not in rule.tools


def test_sampling_is_deterministic_and_near_rate() -> None:
    ids = [f"{i:032x}" for i in range(4000)]
    hits = sum(sampled(i, 0.25) for i in ids)
    assert 850 < hits < 1150
    assert [sampled(i, 0.25) for i in ids[:50]] == [sampled(i, 0.25) for i in ids[:50]]
    assert not sampled(ids[0], 0.0) and sampled(ids[0], 1.0)


def test_policy_tests_section_runs(policy) -> None:  # type: ignore[no-untyped-def]
    text = (
        POLICY
        + """
tests:
  - {action: {agent: bot, tool: refund, args: {amount: 20.0}}, expect: allow, rules: [ok]}
  - {action: {agent: bot, tool: refund, args: {amount: 250.0}}, expect: allow}
  - {action: {agent: bot, tool: refund, args: {amount: 250.0}}, expect: review, rules: [ok]}
"""
    )
    results = run_tests(compile_policy(text))
    assert [r.passed for r in results] == [True, False, False]
    assert "expected allow, got review" in results[1].message
    assert "expected rules ['ok'], got ['big']" in results[2].message
