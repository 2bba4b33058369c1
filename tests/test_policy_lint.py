"""Warnings of ``proctor policy check``: what loads but cannot work, each at its place."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import EXAMPLE

from proctor import PolicyError
from proctor.policy import compile_policy
from proctor.policy.compile import canonical_form
from proctor.policy.lint import Finding, lint
from proctor.policy.starters import STARTERS

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "src" / "proctor" / "demo" / "policy.yaml"

HEAD = """\
policy: lint
defaults: {decision: deny, queue: ops}
queues: {ops: {}}
agents:
  bot:
    tools:
      issue_refund: {params: {amount: float, order_id: str, count: int}}
      lookup_order:
"""  # rules start on line 9


def findings(body: str) -> list[tuple[int, int, str]]:
    return [(f.line, f.column, f.code) for f in lint(compile_policy(HEAD + body, "p.yaml"))]


def only(body: str) -> Finding:
    found = lint(compile_policy(HEAD + body, "p.yaml"), "p.yaml")
    assert len(found) == 1, found
    return found[0]


def test_a_rule_pinned_to_a_tool_no_envelope_allows_can_never_match() -> None:
    f = only('rules:\n  - id: typo\n    when: tool == "isue_refund"\n    decide: allow\n')
    assert (f.line, f.column, f.code) == (11, 19, "unreachable-rule")
    assert f.message == (
        "rule 'typo' can never match: no agent's envelope allows tool 'isue_refund';"
        " did you mean 'issue_refund'?"
    )
    assert f.located() == f"p.yaml:11:19: warning: {f.message} [unreachable-rule]"


def test_tools_listed_or_pinned_in_a_conjunct_or_a_list() -> None:
    body = (
        "rules:\n"
        "  - id: listed\n    tools: [lookup_order, delete_all]\n    decide: deny\n"  # 10-12
        "  - id: gone\n    tools: [delete_all, wipe]\n    decide: deny\n"  # 13-15
        "  - id: in\n"
        '    when: args.count > 1 && tool in ["lookup_order", "send_email"]\n'  # 17
        "    decide: allow\n"
        "  - id: either\n"
        '    when: tool == "lookup_order" || tool == "lookup_ordr"\n'  # 20
        "    decide: allow\n"
    )
    found = lint(compile_policy(HEAD + body, "p.yaml"))
    assert [(f.line, f.column, f.code) for f in found] == [
        (11, 27, "unknown-tool"),
        (14, 13, "unreachable-rule"),
        (14, 25, "unknown-tool"),
        (17, 54, "unknown-tool"),
        (20, 45, "unknown-tool"),
    ]
    assert "tools 'delete_all', 'wipe'" in found[1].message
    assert found[4].message.endswith("did you mean 'lookup_order'?")


def test_no_agents_means_every_pinned_rule_is_unreachable() -> None:
    text = "policy: x\nrules:\n  - {id: r, when: 'tool == \"t\"', decide: allow}\n"
    [f] = lint(compile_policy(text))
    assert (f.line, f.column, f.code) == (3, 28, "unreachable-rule")
    assert "did you mean" not in f.message


@pytest.mark.parametrize(
    ("when", "column", "message"),
    [
        (
            'args.amount > "100"',
            25,
            "'>' compares args.amount (declared float) with \"100\" (a string): CEL cannot"
            " order them, so this fails at run time, which denies the action; write 100.0",
        ),
        (
            "args.order_id == 5",
            28,
            "'==' compares args.order_id (declared str) with 5 (an int): they are never"
            " equal, so this is always false",
        ),
        ("5 != args.order_id", 11, "they are never equal, so this is always true"),
        ("args.amount * 2 > 10.0", 25, "'*' mixes args.amount (declared float) and 2 (an int)"),
        ("1000 / args.amount > 1.0", 11, "; write 1000.0"),
        ("args.count + 1.5 > 2.0", 24, "'+' mixes args.count (declared int) and 1.5"),
        ("args.count % 2 == 0 && args.amount % 2.0 == 0.0", 48, "'%' is not defined for doubles"),
        ('args.count in ["a", "b"]', 25, "never in this list, which holds only strings"),
        ('args["amount"] <= "7"', 29, "write 7.0"),
        ("args.count > '3'", 24, "write 3"),
        ("args.amount > true", 25, "CEL cannot order them"),
        ("args.amount == args.order_id", 26, "args.amount (declared float) with args.order_id"),
        ("risk > '0.5'", 18, "risk (a double)"),
        ("(args.amount > 1.0) && [true, !(args.order_id == 1)][0]", 60, "never equal"),
    ],
)
def test_comparisons_and_arithmetic_against_declared_parameters(
    when: str, column: int, message: str
) -> None:
    f = only(f"rules:\n  - id: r\n    when: {when}\n    decide: allow\n    tools: [issue_refund]\n")
    assert (f.line, f.column, f.code) == (11, column, "type-mismatch")
    assert message in f.message


@pytest.mark.parametrize(
    "when",
    [
        "args.amount > 100",  # int and double compare by value in this CEL engine
        "args.amount == 100 || args.count > 2.5 || args.count in [1.0, 2u]",
        "args.amount * 2.0 > 10.0 && args.count * 2 > 1 && args.order_id + 'x' == 'y'",
        "args.order_id == null || args.amount >= -1",
        "context.amount > '5'",  # context is never declared
        "args.order_id.size() > 3 && size(args.order_id) > 3",
    ],
)
def test_what_works_is_not_reported(when: str) -> None:
    assert (
        findings(
            f"rules:\n  - id: r\n    when: {when}\n    tools: [issue_refund]\n    decide: allow\n"
        )
        == []
    )


def test_an_unpinned_rule_and_the_risk_use_what_the_declarations_agree_on() -> None:
    head = HEAD.replace(
        "      lookup_order:\n",
        "      lookup_order: {params: {order_id: int}}\n  other:\n    tools: [send_reply]\n",
    )
    body = (
        'risk: "has(args.amount) ? args.amount / 1000 : 0.0"\n'  # 11
        "rules:\n"
        "  - {id: a, when: 'args.order_id == 5', decide: allow}\n"  # str and int: unknown
        "  - {id: b, when: 'args.amount > \"5\"', decide: allow}\n"  # 14: float wherever
    )
    found = lint(compile_policy(head + body, "p.yaml"))
    assert [(f.line, f.column, f.code) for f in found] == [
        (11, 41, "type-mismatch"),
        (14, 34, "type-mismatch"),
    ]
    assert found[0].message.startswith("'/' mixes args.amount (declared float) and 1000")


def test_a_parameter_no_tool_of_the_rule_declares() -> None:
    rule = 'rules:\n  - id: r\n    when: tool == "issue_refund" && has(args.amout)\n'
    f = only(rule + "    decide: allow\n")
    assert (f.line, f.column, f.code) == (11, 41, "unknown-param")
    assert f.message == (
        "rule 'r' reads args.amout, but issue_refund declares no parameter 'amout'"
        " (parameters: amount, count, order_id); did you mean 'amount'?"
    )
    # lookup_order declares nothing: a rule that may see it is not judged
    assert findings("rules:\n  - {id: r, when: 'has(args.amout)', decide: allow}\n") == []
    assert findings("rules:\n  - {id: r, when: 'args.note == 5', decide: allow}\n") == []


def test_places_inside_folded_and_multi_line_expressions() -> None:
    body = (
        "risk: >-\n"
        "  (has(args.amount) ? args.amount / 2.0 : 0.0)\n"
        '  + (args.amount > "5" ? 0.3 : 0.0)\n'  # 11
        "rules:\n"
        "  - id: r\n"
        '    when: tool == "issue_refund" &&\n'
        "      args.amount * 2 > 1.0\n"  # 15
        "    decide: allow\n"
        "  - id: s\n"
        "    when: |\n"
        '      tool == "issue_refund"\n'
        "        && args.order_id == 5\n"  # 20
        "    decide: allow\n"
    )
    assert findings(body) == [
        (11, 20, "type-mismatch"),
        (15, 21, "type-mismatch"),
        (20, 29, "type-mismatch"),
    ]


def test_the_tools_mapping_form_loads_and_the_list_form_keeps_its_version() -> None:
    listed = "policy: x\nagents:\n  bot:\n    tools: [a, b]\n"
    mapped = "policy: x\nagents:\n  bot:\n    tools: {a: , b: {params: {n: int}}}\n"
    p, q = compile_policy(listed), compile_policy(mapped)
    assert p.agent_tools == q.agent_tools == {"bot": frozenset({"a", "b"})}
    assert q.agents["bot"].params("b") == {"n": "int"} and q.agents["bot"].params("a") is None
    assert p.agents["bot"].params("a") is None
    # the list form's canonical form, and so its version, is what it was before
    assert canonical_form(p.document) == b'{"agents":{"bot":{"tools":["a","b"]}},"policy":"x"}'
    assert p.version != q.version
    limits = mapped + "    limits: {b: {per_hour: 3}, c: {per_hour: 1}}\n"
    with pytest.raises(PolicyError, match="limit for tool 'c'"):
        compile_policy(limits)


@pytest.mark.parametrize(
    ("tools", "column", "message"),
    [
        ("{a: {params: {n: flot}}}", 29, "agents.bot.tools.a.params.n: Input should be 'str'"),
        ("{a: {parms: {}}}", 17, "unknown key 'parms'; did you mean 'params'?"),
        ("5", 12, "agents.bot.tools: a list of tool names, or a mapping of tool names to"),
        ('{"b c": }', 13, "agents.bot.tools.b c: String should match pattern"),
        ("[a, 'b c']", 16, "agents.bot.tools.1: String should match pattern"),
    ],
)
def test_bad_tool_declarations_are_errors_with_places(
    tools: str, column: int, message: str
) -> None:
    with pytest.raises(PolicyError) as info:
        compile_policy(f"policy: x\nagents:\n  bot:\n    tools: {tools}\n", "p.yaml")
    assert (info.value.line, info.value.column) == (4, column)
    assert message in info.value.message


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ("policy: x\nrulez: []\n", 2, 1, "unknown key 'rulez'; did you mean 'rules'?"),
        (
            "policy: x\nrules:\n  - id: a\n    decision: allow\n",
            4,
            5,
            "unknown key 'decision'; did you mean 'decide'?",
        ),
        (
            "policy: x\nrules:\n  - id: a\n    decide: allow\n    whn: 'true'\n",
            5,
            5,
            "unknown key 'whn'; did you mean 'when'?",
        ),
        ("policy: x\ndefaults: {desicion: allow}\n", 2, 12, "did you mean 'decision'?"),
        ("policy: x\nqueues: {q: {rolez: []}}\n", 2, 14, "did you mean 'roles'?"),
        ("policy: x\nfoo: 1\n", 2, 1, "unknown key 'foo'"),
    ],
)
def test_unknown_keys_are_errors_that_suggest_the_key_meant(
    text: str, line: int, column: int, message: str
) -> None:
    with pytest.raises(PolicyError) as info:
        compile_policy(text)
    assert (info.value.line, info.value.column) == (line, column)
    assert message in info.value.message


# The example is the design document's policy file as written, so it stands for both.
SHIPPED = {
    "example": lambda: EXAMPLE.read_text(),
    "demo": lambda: DEMO.read_text(),
    **{f"starter-{name}": (lambda text=text: text) for name, text in STARTERS.items()},
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_policy_checks_clean(name: str) -> None:
    assert lint(compile_policy(SHIPPED[name](), name)) == []
