"""Go-exact JSON: the bytes the original's json.Encoder puts on the wire (encoding/json, encode.go)."""

import json

import pytest

from illume import jsonwire

NUMBERS = [
    # (float64 value, Go's encoding)
    (2000, "2000"),
    (2000.0, "2000"),
    (1e3, "1000"),
    (0.7, "0.7"),
    (0.1 + 0.2, "0.30000000000000004"),
    (-12.5, "-12.5"),
    (0.0, "0"),
    (-0.0, "-0"),
    (1e20, "100000000000000000000"),
    (1e21, "1e+21"),
    (2.5e21, "2.5e+21"),
    (1e100, "1e+100"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (12345678901234567890.0, "12345678901234567000"),
    (1e-6, "0.000001"),
    (0.000001234, "0.000001234"),
    (1e-7, "1e-7"),
    (1.5e-7, "1.5e-7"),
    (-1.5e-7, "-1.5e-7"),
    (1.23456789e-7, "1.23456789e-7"),
    (1e-10, "1e-10"),
    (5e-324, "5e-324"),
]


@pytest.mark.parametrize("number, expected", NUMBERS)
def test_encode_number(number, expected):
    assert jsonwire.encode(number) == expected


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_encode_number_refuses_what_go_refuses(number):
    with pytest.raises(ValueError):
        jsonwire.encode(number)


STRINGS = [
    # (Python text, Go's encoding)
    ("plain", '"plain"'),
    ("", '""'),
    ('a"b\\c', '"a\\"b\\\\c"'),
    ("<&>", '"<&>"'),  # SetEscapeHTML(false)
    ("\n\r\t", '"\\n\\r\\t"'),
    ("\b\f", '"\\b\\f"'),  # Go 1.22 and later
    ("\x00\x01\x1f", '"\\u0000\\u0001\\u001f"'),
    ("\x7f", '"\x7f"'),
    ("\u2028\u2029", '"\\u2028\\u2029"'),
    ("é😀中", '"é😀中"'),
    ("\ufffd", '"\ufffd"'),  # a real U+FFFD stays a character
    ("a\udcffb", '"a\\ufffdb"'),  # an invalid input byte (surrogate escape) becomes the escape
    ("\udcc3\udca9", '"\\ufffd\\ufffd"'),  # one escape per invalid byte
    ("/", '"/"'),
]


@pytest.mark.parametrize("text, expected", STRINGS)
def test_encode_string(text, expected):
    assert jsonwire.encode(text) == expected


VALUES = [
    (None, "null"),
    (True, "true"),
    (False, "false"),
    ([], "[]"),
    ({}, "{}"),
    ([1.0, "a", None, [True]], '[1,"a",null,[true]]'),
    ({"b": 1, "a": 2, "B": 3}, '{"B":3,"a":2,"b":1}'),
    ({"é": 1, "z": 2, "\u00ff": 3}, '{"z":2,"é":1,"ÿ":3}'),
    ({"outer": {"y": [1.5], "x": {}}}, '{"outer":{"x":{},"y":[1.5]}}'),
    (jsonwire.Ordered(role="user", content="hi"), '{"role":"user","content":"hi"}'),
    ([jsonwire.Ordered(role="system", content="a\nb")], '[{"role":"system","content":"a\\nb"}]'),
]


@pytest.mark.parametrize("value, expected", VALUES)
def test_encode_value(value, expected):
    assert jsonwire.encode(value) == expected


@pytest.mark.parametrize("length", [jsonwire.PIECE - 1, jsonwire.PIECE, jsonwire.PIECE + 1, 3 * jsonwire.PIECE + 17])
def test_a_long_string_goes_out_in_pieces_without_losing_a_character(length):
    # Numbered words, quotes, backslashes, newlines and non-ASCII: every character is unique enough to be missed.
    words = (f'{i} "é\\\n' for i in range(length))
    text = "".join(words)[:length]
    body = {"messages": [{"role": "user", "content": text}], "stream": True}
    pieces = list(jsonwire.encode_utf8(body, end="\n"))
    expected = json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode() + b"\n"
    assert b"".join(pieces) == expected
    assert jsonwire.encode(body) + "\n" == expected.decode()
    assert len(pieces) >= length // jsonwire.PIECE  # a big body is never held whole


def test_encode_refuses_other_types():
    with pytest.raises(TypeError):
        jsonwire.encode(object())


PARSED = [
    # (text after `!:KEY `, value as Go's json.Unmarshal into interface{} gives it, re-encoded)
    ("1", "1"),
    ("1e3", "1000"),
    ("1.50", "1.5"),
    ("-0", "-0"),
    ("12345678901234567890", "12345678901234567000"),
    ("true", "true"),
    ("null", "null"),
    ('"a"', '"a"'),
    ('["<|im_end|>"]', '["<|im_end|>"]'),
    ('{"type": "enabled", "budget_tokens": 10000}', '{"budget_tokens":10000,"type":"enabled"}'),
    (' [1, 2] ', "[1,2]"),
    ('"\\u00e9"', '"é"'),
    ('"\\ud83d\\ude00"', '"😀"'),
    ('"\\ud800"', '"\ufffd"'),  # Go: an unpaired surrogate escape decodes to U+FFFD
    ('"\\udc80x"', '"\ufffdx"'),
    ('"a\udcffb"', '"a\ufffdb"'),  # Go: invalid UTF-8 in a string decodes to U+FFFD
    ('{"\\ud800": 1}', '{"\ufffd":1}'),
]


@pytest.mark.parametrize("text, expected", PARSED)
def test_parse_value(text, expected):
    assert jsonwire.encode(jsonwire.parse_value(text)) == expected


def test_parse_value_numbers_are_floats():
    assert type(jsonwire.parse_value("2000")) is float


NOT_JSON = [
    "hello",
    "1e400",  # out of float64 range: Go refuses it
    "-1e400",
    "NaN",
    "Infinity",
    "-Infinity",
    "[1,]",
    "{'a': 1}",
    "1 2",
    "tru",
    '"unterminated',
    '"tab\there"',  # a raw control character in a string
    "",
    "01",
]


@pytest.mark.parametrize("text", NOT_JSON)
def test_parse_value_refuses_what_go_refuses(text):
    with pytest.raises(ValueError):
        jsonwire.parse_value(text)


def test_nesting_as_deep_as_go_reads_without_recursion():
    from illume.jsonwire import MAX_DEPTH, encode, parse_value

    deep = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert encode(parse_value(deep)) == deep
    objects = '{"a":' * MAX_DEPTH + "1" + "}" * MAX_DEPTH
    assert encode(parse_value(objects)) == objects


def test_nesting_deeper_than_go_reads_is_refused():
    from illume.jsonwire import MAX_DEPTH, parse_value

    with pytest.raises(ValueError, match="exceeded max depth"):
        parse_value("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))


@pytest.mark.parametrize("text", ["[1,]", '{"a":1,}', "01", "1.", ".5", "+1", "tru", "nul", "NaN", "[1 2]",
                                  '{"a" 1}', '"a"x', "1e400", "[", "\ufeff1", "1\x1f", "'a'"])
def test_what_go_refuses_to_read(text):
    from illume.jsonwire import parse_value

    with pytest.raises(ValueError):
        parse_value(text)


def test_map_keys_sort_by_their_utf8_bytes():
    from illume.jsonwire import encode

    # "\udcff" is the byte 0xFF that was not UTF-8: after every lead byte, so after the emoji too.
    assert encode({"\udcff": 1, "\U0001F600": 2, "\uffff": 3, "a": 4}) == \
        '{"a":4,"\uffff":3,"\U0001F600":2,"\\ufffd":1}'
