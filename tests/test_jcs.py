"""RFC 8785 (JCS): the encoder against the RFC's own examples, an established implementation
(rfc8785), ECMAScript itself where node is installed, and its own slow path."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import random
import shutil
import struct
import subprocess
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from proctor._canonical import canonical
from proctor._jcs import SAFE_INT, _slow, decode, encode, jcs, number_text

# RFC 8785 Appendix B: IEEE 754 bit patterns and their JCS text (None: not representable).
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("7fffffffffffffff", None),
    ("7ff0000000000000", None),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


def _double(hex_bits: str) -> float:
    return float(struct.unpack(">d", bytes.fromhex(hex_bits))[0])


@pytest.mark.parametrize(("bits", "text"), APPENDIX_B)
def test_numbers_as_appendix_b_writes_them(bits: str, text: str | None) -> None:
    x = _double(bits)
    assert number_text(x) == text
    if text is None:
        assert jcs(x) == b"null"  # JSON has no NaN or infinity: recorded as null
    elif "e" in text or "." in text or abs(x) <= SAFE_INT:
        assert jcs(x) == text.encode()
    else:  # an integer beyond 2**53: a string, which parsers anywhere read back alike
        assert jcs(x) == f'"{text}"'.encode()


def test_rfc_example_of_values() -> None:
    """RFC 8785 §3.2.2: numbers, escapes and literals."""
    given_text = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert jcs(json.loads(given_text)) == expected.encode()


def test_rfc_example_of_sorting() -> None:
    """RFC 8785 §3.2.3: members sorted by UTF-16 code unit, not by code point."""
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    order = ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert list(json.loads(jcs(value))) == order
    assert jcs(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("block", range(0, 0x10000, 0x800))
def test_string_escaping_matches_section_3_2_2_2(block: int) -> None:
    """Every BMP character (but surrogates) as orjson escapes it, against the RFC's rules."""
    chars = [chr(c) for c in range(block, block + 0x800) if not 0xD800 <= c <= 0xDFFF]
    text = "".join(chars)
    assert jcs(text) == rfc8785.dumps(text)
    assert jcs({text: text}) == rfc8785.dumps({text: text})


def test_string_escaping_rules_spelled_out() -> None:
    short = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
    for c in range(0x20):
        expected = short.get(chr(c), f"\\u{c:04x}")
        assert jcs(chr(c)) == f'"{expected}"'.encode()
    assert jcs('"\\') == b'"\\"\\\\"'
    for kept in "/\x7f\u2028\u2029\ufeff\U0001f600<>&'":
        assert jcs(kept) == f'"{kept}"'.encode()


# -- property tests -----------------------------------------------------------------------

FLOATS = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 250.0, 1e-7, 1e-6, 1e-5, 1e16, 1e21, 2.0**53, -(2.0**53), 5e-324, 0.1 + 0.2]
)
INTS = st.integers(-(2**53), 2**53) | st.integers(-(2**70), 2**70)
SCALARS = st.none() | st.booleans() | INTS | FLOATS | st.text()
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=25,
)


def _as_jcs_reads(value: Any) -> Any:
    """What the log means by ``value``: big numbers as the strings it records them as."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if abs(value) <= SAFE_INT else str(value)
    if isinstance(value, float):
        text = number_text(value)
        assert text is not None
        bare_integer = "." not in text and "e" not in text
        return text if bare_integer and abs(value) > SAFE_INT else value
    if isinstance(value, dict):
        return {k: _as_jcs_reads(v) for k, v in value.items()}
    return [_as_jcs_reads(v) for v in value]


@settings(max_examples=600, deadline=None)
@given(VALUES)
def test_bytes_are_jcs_of_what_a_parser_reads_back(value: Any) -> None:
    """The property a verifier relies on: parse the bytes, canonicalise, get them back."""
    out = jcs(value)
    assert rfc8785.dumps(json.loads(out)) == out


@settings(max_examples=600, deadline=None)
@given(VALUES)
def test_agrees_with_an_established_implementation(value: Any) -> None:
    assert jcs(value) == rfc8785.dumps(_as_jcs_reads(value))


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_fast_and_slow_paths_write_the_same_bytes(value: Any) -> None:
    assert jcs(value) == _slow(value, None)
    if isinstance(value, dict) and "_numbers" not in value:
        assert encode(value) == _slow(value, "_numbers")


def _typed(value: Any) -> Any:
    """``value`` with the type of every number kept, for comparisons that mind 1 and 1.0."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, float):
        return ("float", 0.0 if value == 0 else value)  # the sign of zero is not kept
    return (type(value).__name__, value)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(), VALUES, max_size=6))
def test_a_record_reads_back_with_its_number_types(record: dict[str, Any]) -> None:
    record.pop("_numbers", None)
    out = encode(record)
    assert rfc8785.dumps(json.loads(out)) == out
    assert _typed(decode(out)) == _typed(record)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=50))
def test_any_double_reads_back_as_itself(patterns: list[int]) -> None:
    xs = [struct.unpack(">d", p.to_bytes(8, "big"))[0] for p in patterns]
    xs = [x for x in xs if math.isfinite(x)]
    back = decode(encode({"xs": xs}))["xs"]
    assert [struct.pack(">d", x) for x in back] == [struct.pack(">d", x or 0.0) for x in xs]


# -- what JSON lacks ----------------------------------------------------------------------


@dataclasses.dataclass
class Point:
    x: float
    label: str


def test_values_json_lacks_are_recorded_as_the_canonical_form_records_them() -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    value = {
        "when": when,
        "tags": {"b", "a"},
        "pair": (1.0, 2),
        "p": Point(3.0, "x"),
        "raw": b"\x01",
    }
    out = jcs(value)
    assert rfc8785.dumps(json.loads(out)) == out
    assert json.loads(out) == json.loads(canonical(value))
    assert json.loads(out)["pair"] == [1, 2] and b'"x":3' in out


def test_keys_that_are_not_strings_are_written_as_text() -> None:
    assert jcs({1: 2.0, None: "n"}) == b'{"1":2,"null":"n"}'
    with pytest.raises(ValueError, match="written alike"):
        jcs({1: "a", "1": "b"})


def test_non_finite_numbers_are_null_and_negative_zero_is_zero() -> None:
    assert jcs([math.nan, math.inf, -math.inf, -0.0]) == b"[null,null,null,0]"


def test_big_integers_are_strings_and_read_back_as_integers() -> None:
    record = {"id": 2**53, "small": 2**53 - 1, "huge": -(10**30)}
    out = encode(record)
    assert json.loads(out)["id"] == "9007199254740992"
    assert json.loads(out)["small"] == 2**53 - 1
    assert decode(out) == record


def test_numbers_member_is_reserved() -> None:
    with pytest.raises(ValueError, match="reserved"):
        encode({"_numbers": {}})


def test_lone_surrogates_are_refused_as_canonical_refuses_them() -> None:
    with pytest.raises(orjson.JSONEncodeError):
        canonical({"a": "\ud800"})
    with pytest.raises(orjson.JSONEncodeError):
        jcs({"a": "\ud800"})


# -- ECMAScript itself --------------------------------------------------------------------

_NODE_JCS = r"""
const canon = (v) => {
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return "[" + v.map(canon).join(",") + "]";
  const members = Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + canon(v[k]));
  return "{" + members.join(",") + "}";
};
let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  for (const line of input.split("\n")) {
    if (line) process.stdout.write(canon(JSON.parse(line)) + "\n");
  }
});
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_agrees_with_ecmascript() -> None:
    """RFC 8785 is ECMAScript's JSON.stringify with sorted keys: ask an engine directly."""
    rng = random.Random(8785)
    values: list[Any] = []
    for _ in range(20000):
        x = struct.unpack(">d", rng.getrandbits(64).to_bytes(8, "big"))[0]
        if math.isfinite(x) and not (x.is_integer() and abs(x) > SAFE_INT):
            values.append(x)
    values += [rng.random() * 10.0 ** rng.randint(-9, 22) for _ in range(5000)]
    values = [v for v in values if not (v.is_integer() and abs(v) > SAFE_INT)]
    alphabet = 'aZ09~/"\\\n\x00\x1f\x7f é€\u2028\ue000\ufb33\uffff\U0001f600\U00010000'
    for _ in range(2000):
        keys = ["".join(rng.choices(alphabet, k=rng.randint(0, 4))) for _ in range(5)]
        values.append({k: rng.choice([1.5, 250.0, -0.0, "x", None, [1e-7, 3]]) for k in keys})
    lines = "\n".join(orjson.dumps(v).decode() for v in values) + "\n"
    run = subprocess.run(
        ["node", "-e", _NODE_JCS], input=lines, capture_output=True, text=True, check=True
    )
    theirs = run.stdout.split("\n")[:-1]  # not splitlines: U+2028 is no line end here
    assert len(theirs) == len(values)
    for value, expected in zip(values, theirs, strict=True):
        assert jcs(value).decode() == expected, value
