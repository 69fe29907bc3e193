"""JSON exactly as the original Illume puts it on the wire.

The original is a Go program: its request body is a Go map, so object keys
come out sorted, numbers are float64 printed in Go's shortest form (`2000`,
`0.7`, `1e+21`), `<`, `>` and `&` are left alone, U+2028/U+2029 are
escaped, and bytes that are not valid UTF-8 become the escape `\\ufffd`.
Users' `!debug` output and servers' prompt caches depend on those bytes, so
this module reproduces them (Go's `encoding/json`, `encode.go`).

Invalid input bytes reach us as lone surrogates (the buffer is decoded with
`surrogateescape`), which is how they are told apart from a real U+FFFD.
"""

import json
import math
import re
from decimal import Decimal

_escape_string = json.encoder.encode_basestring  # ensure_ascii=False flavour
_go_only_escapes = re.compile("[\u2028\u2029\udc80-\udcff]")


def _go_escape(match: re.Match) -> str:
    char = match.group()
    if char in "\u2028\u2029":
        return "\\u%04x" % ord(char)
    return "\\ufffd"


def encode_string(text: str) -> str:
    """Return TEXT as a JSON string literal, escaped as Go escapes it."""
    literal = _escape_string(text)
    if _go_only_escapes.search(literal):
        literal = _go_only_escapes.sub(_go_escape, literal)
    return literal


def encode_number(number: float) -> str:
    """Return NUMBER in Go's float64 JSON form: shortest digits, exponent only at the extremes."""
    if isinstance(number, int):
        return str(number)
    if math.isnan(number) or math.isinf(number):
        raise ValueError(f"unsupported value: {number}")
    size = abs(number)
    if size != 0 and (size < 1e-6 or size >= 1e21):
        text = repr(number)  # Python's shortest repr is exponent form here too
        mantissa, exponent = text.split("e")
        sign = exponent[0]
        digits = exponent[1:].lstrip("0") or "0"
        if len(digits) < 2 and sign == "+":
            digits = digits.rjust(2, "0")  # Go writes e+21 but e-7
        return f"{mantissa}e{sign}{digits}"
    text = format(Decimal(repr(number)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def encode(value) -> str:
    """Return VALUE as compact JSON with Go's key order and number format."""
    parts: list[str] = []
    _encode_into(value, parts)
    return "".join(parts)


def _encode_into(value, parts: list) -> None:
    if isinstance(value, str):
        parts.append(encode_string(value))
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif value is None:
        parts.append("null")
    elif isinstance(value, (int, float)):
        parts.append(encode_number(value))
    elif isinstance(value, dict):
        # Go sorts map keys by their bytes; UTF-8 byte order is code point order.
        keys = sorted(value) if not isinstance(value, Ordered) else list(value)
        parts.append("{")
        for i, key in enumerate(keys):
            if i:
                parts.append(",")
            parts.append(encode_string(key))
            parts.append(":")
            _encode_into(value[key], parts)
        parts.append("}")
    elif isinstance(value, (list, tuple)):
        parts.append("[")
        for i, item in enumerate(value):
            if i:
                parts.append(",")
            _encode_into(item, parts)
        parts.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


class Ordered(dict):
    """An object whose keys keep their order on the wire, like a Go struct (`{"role", "content"}`)."""


def _reject_constant(name: str):
    raise ValueError(f"not JSON: {name}")


def _go_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError("number out of range")  # Go refuses it; the value stays a string
    return number


def parse_value(text: str):
    """Return TEXT parsed as JSON the way Go reads it into an interface{}.

    Raises ValueError when Go's decoder would refuse it (the caller then
    sends the text as a string). Numbers become floats, as in Go.
    """
    value = json.loads(
        text,
        parse_int=_go_float,
        parse_float=_go_float,
        parse_constant=_reject_constant,
    )
    return _valid_strings(value)


_surrogate = re.compile("[\ud800-\udfff]")


def _valid_strings(value):
    """Return VALUE with lone surrogates in its strings replaced by U+FFFD.

    Go's decoder turns an unpaired `\\ud800` escape and invalid UTF-8 bytes
    (our surrogate escapes) into U+FFFD, which it then sends as the real
    character; Python would keep the surrogate and fail to encode it.
    """
    if isinstance(value, str):
        return _surrogate.sub("\ufffd", value)
    if isinstance(value, list):
        return [_valid_strings(item) for item in value]
    if isinstance(value, dict):
        return {_valid_strings(key): _valid_strings(item) for key, item in value.items()}
    return value
