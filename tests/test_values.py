"""Values no decision can hold: nesting past 32 levels, lone surrogates, non-finite numbers.

Embedded, each is a recorded ``deny`` (rule id ``invalid-input``) and ``Denied``; over HTTP
a 422 naming the field; a result or error message holding one is stored in a safe form.
Never a ``TypeError`` or a 500, and the log verifies afterwards. On both databases.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.asgi_client import AppClient
from tests.test_gate import records

from proctor import Denied, InvalidRequest, Option, Proctor, ReviewPending
from proctor._values import MAX_DEPTH, check, problem, storable_json, text
from proctor.audit.verify import verify
from proctor.backends import verdict_to_wire
from proctor.gate import INVALID_INPUT
from proctor.policy import Action
from proctor.server.app import create_app
from proctor.server.auth import create_token

POLICY = """
policy: values-test
defaults: {decision: deny, queue: billing}
queues: {billing: {}, ops: {}}
agents:
  bot: {tools: [refund, act, choose_a, flaky, show]}
sensitive: [args.card]
rules:
  - {id: small, when: 'tool == "refund" && args.amount <= 100.0', decide: allow}
  - {id: act, when: 'tool == "act"', decide: allow}
  - {id: choose, when: 'tool == "choose_a"', decide: allow}
  - {id: flaky, when: 'tool == "flaky"', decide: allow, on_error: review, queue: ops}
  - {id: show, when: 'tool == "show"', decide: review, queue: billing}
"""


def nested(depth: int, leaf: Any = 1) -> Any:
    """``depth`` containers, alternating list and dict, around ``leaf``."""
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


@pytest.fixture
def vpx(px: Proctor) -> Proctor:
    px.policy.apply(POLICY)
    return px


# -- the validator -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"amount": math.inf}, "args.amount: inf is not a finite number"),
        ({"amount": -math.inf}, "args.amount: -inf is not a finite number"),
        ({"amount": math.nan}, "args.amount: nan is not a finite number"),
        (
            {"items": [{"name": "a"}, {}, {}, {"name": "b\ud800"}]},
            "args.items[3].name: a lone surrogate (\\ud800) is not valid text",
        ),
        ({"x": {"\udc80": 1}}, "args.x['\\udc80']: a lone surrogate (\\udc80) is not valid text"),
        (
            {"a b": ["ok", "é\udfff"]},
            "args['a b'][1]: a lone surrogate (\\udfff) is not valid text",
        ),
        ({"m": {1: "one"}}, "args.m: the key 1 (int) is not a string"),
        ({"t": (1, 2, [math.inf])}, "args.t[2][0]: inf is not a finite number"),
        ({"s": {"x", "\ud801"}}, "args.s[?]: a lone surrogate (\\ud801) is not valid text"),
    ],
)
def test_check_names_the_path_and_the_problem(value: Any, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        check(value, "args")
    if "[?]" in message:  # a set has no stable index
        head, tail = message.split("[?]")
        assert str(info.value).startswith(head) and str(info.value).endswith(tail)
    else:
        assert str(info.value) == message


def test_check_limits_depth_and_stops_a_cycle() -> None:
    check({"a": nested(MAX_DEPTH - 1)}, "args")  # the args dict is level one
    with pytest.raises(InvalidRequest, match=r"^args\.a\[0\]\.a.*: nested deeper than 32 levels"):
        check({"a": nested(MAX_DEPTH)}, "args")
    loop: dict[str, Any] = {}
    loop["self"] = loop
    assert problem(loop, "context") == (
        "context" + ".self" * 12 + "...: nested deeper than 32 levels"
    )
    for deep in (300, 100_000):  # past the JSON encoder's limit and the interpreter's
        assert problem({"a": nested(deep)}, "args") is not None


def test_check_accepts_what_json_and_cel_hold() -> None:
    for value in (
        {},
        {"s": "text", "i": -(2**70), "f": 1.5e308, "b": True, "n": None},
        {"unicode": "Zoë 🚀", "ключ": ["ok", {"nested": [1, 2.5, None]}]},
        {"t": (1, "two"), "s": frozenset({1}), "bytes": b"\x00"},
    ):
        check(value, "args")


def test_safe_forms_for_what_has_already_happened() -> None:
    assert text("ascii") == "ascii"
    assert text("a\ud800b\udfff") == "a\ufffdb\ufffd"
    stored = json.loads(storable_json({"r": "x\ud800", "n": [math.inf, math.nan], "\udc80": 1}))
    assert stored == {"r": "x\ufffd", "n": [None, None], "\ufffd": 1}
    assert json.loads(storable_json(nested(300))) == {
        "_omitted": "invalid: result: nested deeper than 32 levels"
    }
    assert json.loads(storable_json({"ok": [1, "two"]})) == {"ok": [1, "two"]}


# -- embedded: a recorded deny, never a TypeError --------------------------------------------


BAD = [
    pytest.param({"amount": nested(300)}, "args.amount", "nested deeper", id="deep"),
    pytest.param({"amount": "\ud800"}, "args.amount", "lone surrogate", id="surrogate"),
    pytest.param({"amount": 5.0, "note": {"\udcff": 1}}, "args.note[", "surrogate", id="key"),
    pytest.param({"amount": math.inf}, "args.amount", "inf is not", id="inf"),
    pytest.param({"amount": -math.inf}, "args.amount", "-inf is not", id="-inf"),
    pytest.param({"amount": math.nan}, "args.amount", "nan is not", id="nan"),
]


@pytest.mark.parametrize(("kwargs", "path", "what"), BAD)
def test_invalid_arguments_are_denied_recorded_and_never_run(
    vpx: Proctor, kwargs: dict[str, Any], path: str, what: str
) -> None:
    @vpx.tool(agent="bot")
    def refund(amount: Any, note: Any = None) -> str:
        raise AssertionError("must not run")

    with pytest.raises(Denied) as info:
        refund(**kwargs)
    assert info.value.rule_ids == (INVALID_INPUT,)
    assert info.value.reason.startswith(path) and what in info.value.reason
    decision = records(vpx, "decision")[-1]
    assert decision["id"] == info.value.decision_id
    assert (decision["decision"], decision["rules"]) == ("deny", [INVALID_INPUT])
    assert decision["action"]["args"] == {"_omitted": f"invalid: {info.value.reason}"}
    assert decision["policy_version"] == vpx.policy.active().version  # type: ignore[union-attr]
    assert verify(vpx.store).ok


def test_minus_infinity_no_longer_passes_an_upper_bound(vpx: Proctor) -> None:
    @vpx.tool(agent="bot")
    def refund(amount: float) -> str:
        return "refunded"

    assert refund(50.0) == "refunded"
    with pytest.raises(Denied) as info:
        refund(-math.inf)  # CEL: -inf <= 100.0 is true
    assert info.value.rule_ids == (INVALID_INPUT,)


@pytest.mark.parametrize(
    "context",
    [
        {"depth": nested(40)},
        {"who": "\ud800"},
        {"\ud800": "key"},
        {"score": math.inf},
        {"score": math.nan},
    ],
    ids=["deep", "surrogate", "key", "inf", "nan"],
)
def test_invalid_context_is_denied_and_stored_as_a_placeholder(
    vpx: Proctor, context: dict[str, Any]
) -> None:
    @vpx.tool(agent="bot")
    def act(card: str) -> str:
        raise AssertionError("must not run")

    with vpx.run(agent="bot", **context), pytest.raises(Denied) as info:
        act("4111")
    assert info.value.rule_ids == (INVALID_INPUT,)
    assert info.value.reason.startswith("context")
    start, decision = records(vpx, "run.start")[-1], records(vpx, "decision")[-1]
    placeholder = {"_omitted": f"invalid: {info.value.reason}"}
    assert start["context"] == decision["action"]["context"] == placeholder
    assert decision["action"]["args"] == {"card": "***"}  # the valid half, masked by policy
    assert verify(vpx.store).ok


def test_gate_decide_and_decide_in_and_refusals_record_invalid_input(vpx: Proctor) -> None:
    gate = vpx.gate
    bad = Action("bot", "act", {"x": [math.nan]}, {"k": "\ud800"})
    verdict = gate.decide(bad, None)
    assert verdict.decision.rule_ids == (INVALID_INPUT,) and verdict.id is not None
    assert verdict.decision.reason == "args.x[0]: nan is not a finite number"
    with vpx.store.write() as tx:
        again = gate.decide_in(tx, bad, None, None)
    assert again.decision.decision == "deny" and again.seq == (verdict.seq or 0) + 1
    refused = gate.record_refusal(bad, None, "held", "run-held")
    assert refused.decision.rule_ids == ("run-held",)
    stored = records(vpx, "decision")[-1]["action"]
    assert stored["args"]["_omitted"].startswith("invalid: args.x[0]")
    assert stored["context"]["_omitted"].startswith("invalid: context.k")
    assert verify(vpx.store).ok


def test_choices_with_invalid_options_are_denied(vpx: Proctor) -> None:
    @vpx.tool(agent="bot")
    def choose_a(n: Any) -> Any:
        return n

    for option, reason in [
        (Option(choose_a, {"n": math.inf}), "options[1].args.n: inf is not a finite number"),
        (Option(choose_a, {"n": 1}, probability=math.nan), "options[1].probability: nan is"),
        (Option(choose_a, {"n": 1}, risks=["\ud800"]), "options[1].risks[0]: a lone"),
        (Option(choose_a, {"n": nested(50)}), "options[1].args.n"),
    ]:
        with pytest.raises(Denied) as info:
            vpx.choose([Option(choose_a, {"n": 0}), option], wait=0)
        assert info.value.rule_ids == (INVALID_INPUT,)
        assert info.value.reason.startswith(reason)
    assert not vpx.reviews.list()
    with vpx.run(agent="bot", note="\udc00"), pytest.raises(Denied) as info:
        vpx.choose([Option(choose_a, {"n": 0})], wait=0)
    assert info.value.reason.startswith("context.note")
    with pytest.raises(ReviewPending):
        vpx.choose([Option(choose_a, {"n": 0})], wait=0)
    assert verify(vpx.store).ok


def test_results_and_errors_with_surrogates_are_stored_safely(vpx: Proctor) -> None:
    @vpx.tool(agent="bot")
    def flaky(name: str) -> str:
        raise ValueError(f"cannot open {name}\udcff")  # as surrogateescape decoding leaves it

    with pytest.raises(ValueError, match="cannot open"):
        flaky("f")
    outcome = records(vpx, "outcome")[-1]
    assert outcome["error"] == "cannot open f\ufffd"
    assert vpx.reviews.get(outcome["review_item"]).detail == "cannot open f\ufffd"

    results = {"plain": "x\ud800", "deep": nested(40), "numbers": [math.inf, 1.5]}

    @vpx.tool(agent="bot", wait=0)
    def show(kind: str) -> Any:
        if kind == "fails":
            raise OSError("bad byte \udc80")
        return results[kind]

    expected = {
        "plain": "x\ufffd",
        "deep": {"_omitted": "invalid: result: nested deeper than 32 levels"},
        "numbers": [None, 1.5],
    }
    for kind in (*results, "fails"):
        with pytest.raises(ReviewPending) as info:
            show(kind)
        item_id = info.value.item_id
        vpx.reviews.approve(item_id, by="ana")
        if kind == "fails":
            with pytest.raises(OSError, match="bad byte"):
                vpx.resume(item_id)
            assert vpx.reviews.get(item_id).result_error == "OSError: bad byte \ufffd"
            continue
        assert vpx.resume(item_id) is results[kind]  # the caller gets the real result
        assert vpx.resume(item_id) == expected[kind]  # later calls: what was stored
    assert verify(vpx.store).ok


def test_a_reviewer_edit_is_held_to_the_same_limits(vpx: Proctor) -> None:
    @vpx.tool(agent="bot", wait=0)
    def show(kind: Any) -> str:
        return "shown"

    with pytest.raises(ReviewPending) as info:
        show("a")
    item_id = info.value.item_id
    for bad in (-math.inf, "\ud800", nested(40)):
        with pytest.raises(InvalidRequest, match=r"^args\.kind"):
            vpx.reviews.edit(item_id, by="ana", args={"kind": bad})
    assert vpx.reviews.get(item_id).status == "pending"


# -- over HTTP: 422 naming the field, never 500 ----------------------------------------------


@pytest.fixture
def api(vpx: Proctor) -> Iterator[tuple[AppClient, dict[str, str]]]:
    _, token = create_token(vpx.store, role="admin", name="root")
    client = AppClient(create_app(vpx, max_body=256 * 1024, sweep=False))
    try:
        yield client, {"Authorization": f"Bearer {token}", "content-type": "application/json"}
    finally:
        client.close()


def encode(body: Any, raw: bool = False) -> bytes:
    """JSON as a client might send it: non-finite numbers as ``Infinity``/``NaN``, lone
    surrogates as ``\\ud800`` escapes, or (``raw``) as the bytes ED A0 80."""
    if raw:
        return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return json.dumps(body).encode()


ACTION = {"agent": "bot", "tool": "act"}
VERDICT = {
    "decision": {"decision": "allow", "rule_ids": ["act"], "reason": "ok", "policy_version": None},
    "id": "d" * 32,
    "seq": 1,
}
RUN = {"id": "r" * 32, "trace_id": "t" * 32, "agent": "bot"}
BODIES: list[tuple[str, str, Any, str]] = [
    ("actions", "args", {**ACTION, "args": {"a": "\ud800"}}, "args.a: a lone surrogate"),
    ("actions", "args", {**ACTION, "args": {"\ud800": 1}}, "args['\\ud800']: a lone"),
    ("actions", "context", {**ACTION, "context": {"c": [math.inf]}}, "context.c[0]: inf"),
    ("actions", "args", {**ACTION, "args": {"a": nested(200)}}, "args.a[0].a"),
    ("actions", "params", {**ACTION, "params": {"p": math.nan}}, "params.p: nan"),
    ("actions", "reads", {**ACTION, "reads": ["orders\udc00"]}, "reads[0]: a lone"),
    (
        "actions",
        "run.context",
        {**ACTION, "run": {**RUN, "context": {"x": -math.inf}}},
        "context.x: -inf",
    ),
    (
        "actions",
        "run.history",
        {**ACTION, "run": {**RUN, "history": [{"tool": "\ud800"}]}},
        "history[0].tool: a lone",
    ),
    (
        "outcomes",
        "result",
        {"verdict": VERDICT, "action": ACTION, "duration": 0.1, "result": ["\ud800"]},
        "result[0]: a lone",
    ),
    (
        "outcomes",
        "result",
        {"verdict": VERDICT, "action": ACTION, "duration": 0.1, "result": math.inf},
        "result: inf",
    ),
    (
        "outcomes",
        "action.args",
        {"verdict": VERDICT, "action": {**ACTION, "args": {"a": math.nan}}, "duration": 0.1},
        "args.a: nan",
    ),
    (
        "outcomes",
        "verdict.decision.risk",
        {
            "verdict": {**VERDICT, "decision": {**VERDICT["decision"], "risk": math.inf}},
            "action": ACTION,
            "duration": 0.1,
        },
        "risk: inf",
    ),
    (
        "refusals",
        "action.context",
        {"action": {**ACTION, "context": {"k": "\udfff"}}, "reason": "held", "rule_id": "x"},
        "context.k: a lone",
    ),
    (
        "choices",
        "options.0.args",
        {"agent": "bot", "options": [{"tool": "choose_a", "args": {"n": -math.inf}}]},
        "args.n: -inf",
    ),
    (
        "choices",
        "options.0.risks",
        {"agent": "bot", "options": [{"tool": "choose_a", "risks": ["\ud800"]}]},
        "risks[0]: a lone",
    ),
    (
        "choices",
        "context",
        {"agent": "bot", "options": [{"tool": "choose_a"}], "context": {"d": nested(33)}},
        "context.d",
    ),
]


@pytest.mark.parametrize(("path", "field", "body", "message"), BODIES)
@pytest.mark.parametrize("raw", [False, True], ids=["escaped", "raw-bytes"])
def test_server_refuses_invalid_values_with_422_naming_the_field(
    api: tuple[AppClient, dict[str, str]],
    vpx: Proctor,
    path: str,
    field: str,
    body: Any,
    message: str,
    raw: bool,
) -> None:
    client, headers = api
    response = client.post(f"/api/v1/{path}", content=encode(body, raw), headers=headers)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["field"] == f"body.{field}"
    assert message in answer["message"]
    assert not records(vpx, "decision") and not records(vpx, "outcome")


def test_server_numbers_too_large_for_a_double_are_infinite(
    api: tuple[AppClient, dict[str, str]],
) -> None:
    client, headers = api
    body = b'{"agent": "bot", "tool": "refund", "args": {"amount": -1e999}}'
    response = client.post("/api/v1/actions", content=body, headers=headers)
    assert response.status_code == 422
    assert "args.amount: -inf is not a finite number" in response.json()["message"]
    ok = client.post(
        "/api/v1/actions", content=encode({**ACTION, "args": {"a": 1}}), headers=headers
    )
    assert ok.status_code == 200 and ok.json()["decision"]["decision"] == "allow"


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"agent": "bot", "tool": "act", "args": {"a": ' + b"[" * 100_000,
        b'{"agent": "bot", "tool": "act", "args": {"a": ' + b"[" * 5_000 + b"]" * 5_000 + b"}}",
    ],
    ids=["bare", "in-args", "closed"],
)
def test_server_refuses_bodies_nested_past_the_parser(
    api: tuple[AppClient, dict[str, str]], vpx: Proctor, body: bytes
) -> None:
    client, headers = api
    response = client.post("/api/v1/actions", content=body, headers=headers)
    assert 400 <= response.status_code < 500
    response.json()  # an answer, not a crash
    assert not records(vpx, "decision")


# -- properties ------------------------------------------------------------------------------


def bad(value: Any, depth: int = 0) -> bool:
    """The reference: does ``value`` hold what ``_values`` must refuse?"""
    if isinstance(value, dict | list):
        if depth >= MAX_DEPTH:
            return True
        keys = list(value) if isinstance(value, dict) else []
        items = value.values() if isinstance(value, dict) else value
        return any(surrogate(k) for k in keys) or any(bad(v, depth + 1) for v in items)
    if isinstance(value, float):
        return not math.isfinite(value)
    return isinstance(value, str) and surrogate(value)


def surrogate(s: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in s)


TEXT = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | TEXT
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
DEEP = st.builds(nested, st.integers(20, 60), VALUES)
ANY = VALUES | DEEP
MAPPINGS = st.dictionaries(TEXT, ANY, max_size=3)
PROPERTY = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def test_property_embedded_gate_returns_a_verdict_or_denies(vpx: Proctor) -> None:
    @vpx.tool(agent="bot")
    def act(**kwargs: Any) -> str:
        return "ran"

    @PROPERTY
    @given(args=MAPPINGS, context=MAPPINGS)
    def check_one(args: dict[str, Any], context: dict[str, Any]) -> None:
        context.pop("agent", None)  # px.run's own parameter
        invalid = bad(args) or bad(context)
        denied: tuple[str, ...] | None = None
        with vpx.run(agent="bot", **context):
            try:
                assert act(**args) == "ran"
            except Denied as exc:
                denied = exc.rule_ids
        assert denied == ((INVALID_INPUT,) if invalid else None)
        seen.append(invalid)

    seen: list[bool] = []
    check_one()
    assert any(seen) and not all(seen)  # both kinds were tried
    assert verify(vpx.store).ok


def test_property_server_answers_200_or_4xx(
    api: tuple[AppClient, dict[str, str]], vpx: Proctor
) -> None:
    client, headers = api
    # An outcome must name a decision recorded for the agent's call of that tool.
    recorded = verdict_to_wire(vpx.gate.decide(Action("bot", "act"), None))

    @PROPERTY
    @given(
        args=MAPPINGS,
        context=MAPPINGS,
        result=ANY,
        kind=st.sampled_from(["actions", "outcomes", "choices"]),
        raw=st.booleans(),
    )
    def check_one(
        args: dict[str, Any], context: dict[str, Any], result: Any, kind: str, raw: bool
    ) -> None:
        action = {**ACTION, "args": args, "context": context}
        body: dict[str, Any]
        if kind == "actions":
            body, invalid = action, bad(args) or bad(context)
        elif kind == "outcomes":
            body = {"verdict": recorded, "action": action, "duration": 0.1, "result": result}
            invalid = bad(args) or bad(context) or bad(result)
        else:
            option = {"tool": "choose_a", "args": args}
            body = {"agent": "bot", "options": [option], "context": context}
            invalid = bad(args) or bad(context)
        response = client.post(f"/api/v1/{kind}", content=encode(body, raw), headers=headers)
        assert response.status_code == (422 if invalid else 200), response.text
        seen.append(invalid)
        if response.status_code == 200 and kind == "actions":
            assert response.json()["decision"]["rule_ids"] != [INVALID_INPUT]

    seen: list[bool] = []
    check_one()
    assert any(seen) and not all(seen)
    assert verify(vpx.store).ok
