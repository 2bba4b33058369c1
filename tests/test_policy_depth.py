"""Hostile nesting, in the YAML or in a CEL expression, is a PolicyError with a place:
never a RecursionError, a crash of the CEL library, or a policy that crashes when run."""

from __future__ import annotations

import pytest

from proctor import PolicyError
from proctor.policy import Action, compile_policy, evaluate
from proctor.policy.source import MAX_DEPTH

DEEP = "the policy nests deeper than 64 levels"


def _block_mapping(levels: int) -> str:
    lines = [f"{'  ' * i}k{i}:" for i in range(1, levels)]
    return "policy: x\nrules:\n" + "\n".join(lines) + f"\n{'  ' * levels}end: 1\n"


def _chained_aliases(links: int) -> str:
    """Each anchor wraps the previous one once more: shallow text, deep data."""
    lines = ["policy: x", "a0: &a0 [[[[[[[[[[1]]]]]]]]]]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, links)]
    return "\n".join(lines) + "\n"


YAML_CASES = [
    # (id, text, line, column)
    ("flow-sequences", "policy: x\nrules: " + "[" * 1200 + "]" * 1200, 2, 71),
    ("flow-mappings", "policy: x\nrules: " + "{a: " * 1200 + "1" + "}" * 1200, 2, 260),
    ("block-mappings", _block_mapping(1200), 66, 129),
    ("aliases", _chained_aliases(1200), 56, 12),
]


@pytest.mark.parametrize(
    ("text", "line", "column"), [c[1:] for c in YAML_CASES], ids=[c[0] for c in YAML_CASES]
)
def test_deeply_nested_policy_is_refused_where_it_crosses_the_limit(
    text: str, line: int, column: int
) -> None:
    with pytest.raises(PolicyError) as info:
        compile_policy(text, "p.yaml")
    assert info.value.message == DEEP
    assert (info.value.line, info.value.column) == (line, column), info.value.located()


@pytest.mark.parametrize(
    ("text", "column"),
    [("policy: x\na: &x [*x]\n", 8), ("policy: x\na: &x {b: [1, {c: *x}]}\n", 19)],
)
def test_alias_inside_the_node_it_names_is_refused(text: str, column: int) -> None:
    with pytest.raises(PolicyError) as info:
        compile_policy(text, "p.yaml")
    assert info.value.message == "an alias may not refer to a node that holds it"
    assert (info.value.line, info.value.column) == (2, column)


def test_nesting_up_to_the_limit_is_read_as_usual() -> None:
    inner = MAX_DEPTH - 2  # the top-level mapping and 'tests' are two levels
    text = "policy: x\ntests: [" + "[" * inner + "]" * inner + "]\n"
    with pytest.raises(PolicyError) as info:
        compile_policy(text, "p.yaml")
    assert info.value.message.startswith("tests.0: "), info.value.located()  # a schema error


def test_yaml_errors_after_deep_but_legal_nesting_keep_their_place() -> None:
    with pytest.raises(PolicyError) as info:
        compile_policy("policy: x\nrules: " + "[" * 10 + "]" * 9 + "\n", "p.yaml")
    assert info.value.message.startswith("invalid YAML")
    assert info.value.line == 3


RULE = "policy: x\nagents: {bot: {tools: [t]}}\nrules:\n  - id: r\n    decide: allow\n    when: "


@pytest.mark.parametrize(
    ("when", "column", "fragment"),
    [
        ("(" * 2000 + "true" + ")" * 2000, 11, "characters long; at most 4000"),
        ("1" + " + 1" * 20_000, 11, "characters long; at most 4000"),
        ("args.a" + ".b" * 30_000, 11, "characters long; at most 4000"),
        ("(" * 65 + "true" + ")" * 65, 11 + 64, "nests brackets deeper than 64 levels"),
        ("size(" + "[" * 70 + "]" * 70 + ") > 0", 11 + 68, "nests brackets deeper than 64"),
    ],
    ids=["parentheses", "sum", "fields", "nested", "nested-lists"],
)
def test_deep_or_long_expression_is_refused_at_its_value(
    when: str, column: int, fragment: str
) -> None:
    with pytest.raises(PolicyError) as info:
        compile_policy(RULE + when + "\n", "p.yaml")
    assert fragment in info.value.message
    assert (info.value.line, info.value.column) == (6, column), info.value.located()


def test_a_ternary_chain_the_parser_refuses_is_a_plain_error() -> None:
    with pytest.raises(PolicyError) as info:
        compile_policy(RULE + "'" + "args.a ? true : " * 200 + "true'\n", "p.yaml")
    assert info.value.message == "CEL syntax error: the expression nests too deeply"


def test_expressions_within_the_limits_load_and_run() -> None:
    long_sum = "1" + " + 1" * 900  # about 3,600 characters
    when = "(" * 64 + f"{long_sum} > 0" + ")" * 64
    policy = compile_policy(RULE + when + "\n")
    assert evaluate(policy, Action("bot", "t")).decision == "allow"


def test_aliases_that_multiply_are_refused_before_they_are_built() -> None:
    lines = ["policy: x", "l0: &l0 [a, b, c, d, e, f, g, h, i, j]"]
    lines += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 9)]
    with pytest.raises(PolicyError) as info:  # 10^9 values if built out
        compile_policy("\n".join(lines) + "\n", "p.yaml")
    assert info.value.message == "aliases expand the policy past 100,000 values"
    assert info.value.line == 6  # l4, where the total crosses the limit


def test_a_reused_list_loads_as_if_written_out() -> None:
    policy = compile_policy(
        "policy: x\nagents:\n  a: {tools: &tools [lookup, reply]}\n  b: {tools: *tools}\n"
    )
    assert policy.agent_tools == {"a": {"lookup", "reply"}, "b": {"lookup", "reply"}}
