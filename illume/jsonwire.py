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
from collections.abc import Iterator

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
    # All of Go's extra escapes are of non-ASCII characters: an ASCII text
    # (most prompts) is spared a scan of its whole length.
    if not literal.isascii() and _go_only_escapes.search(literal):
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
    text = repr(number)
    if "e" in text:  # 1e-05: written out in full, as Go does (decimal is imported only for these)
        from decimal import Decimal

        text = format(Decimal(text), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


# A string longer than this is escaped and encoded a slice at a time, so a
# big buffer never has a second whole copy. Escaping is per character, so a
# slice may end anywhere. A slice lives in about four forms at once (itself,
# escaped, unquoted, UTF-8): a quarter of a million characters keeps that
# near a megabyte while still sending in large writes.
PIECE = 1 << 18


def encode(value) -> str:
    """Return VALUE as compact JSON with Go's key order and number format."""
    return "".join(_pieces(value))


def encode_utf8(value, end: str = "") -> Iterator[bytes]:
    """Yield VALUE's JSON followed by END in UTF-8, in pieces of about PIECE characters.

    A small value comes out as one piece; together the pieces are
    `(encode(value) + end).encode("utf-8")`.
    """
    batch: list[str] = []
    size = 0
    for piece in _pieces(value):
        batch.append(piece)
        size += len(piece)
        if size >= PIECE:
            yield "".join(batch).encode("utf-8")
            batch, size = [], 0
    batch.append(end)
    last = "".join(batch)
    if last:
        yield last.encode("utf-8")


def _pieces(value) -> Iterator[str]:
    """Yield VALUE's compact JSON in pieces, a long string in escaped slices of PIECE characters."""
    if isinstance(value, str):
        if len(value) <= PIECE:
            yield encode_string(value)
        else:
            yield '"'
            for start in range(0, len(value), PIECE):
                yield encode_string(value[start : start + PIECE])[1:-1]
            yield '"'
    elif value is True:
        yield "true"
    elif value is False:
        yield "false"
    elif value is None:
        yield "null"
    elif isinstance(value, (int, float)):
        yield encode_number(value)
    elif isinstance(value, dict):
        # Go sorts map keys by their bytes; UTF-8 byte order is code point order.
        keys = sorted(value) if not isinstance(value, Ordered) else list(value)
        yield "{"
        for i, key in enumerate(keys):
            if i:
                yield ","
            yield encode_string(key)
            yield ":"
            yield from _pieces(value[key])
        yield "}"
    elif isinstance(value, (list, tuple)):
        yield "["
        for i, item in enumerate(value):
            if i:
                yield ","
            yield from _pieces(item)
        yield "]"
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
