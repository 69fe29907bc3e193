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
from json.decoder import scanstring

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
    """Yield VALUE's compact JSON in pieces, a long string in escaped slices of PIECE characters.

    Nested values are walked with a stack of their own, not by recursion:
    an `!:KEY` value may nest as deep as Go's decoder allows (MAX_DEPTH).
    """
    frames: list[list] = []  # per open object or array: its closing bracket, its entries, whether one was written
    while True:
        if isinstance(value, dict) and value:
            # Go sorts map keys by their bytes: UTF-8 order, with a byte that is not UTF-8 where its value puts it.
            keys = list(value) if isinstance(value, Ordered) else sorted(value, key=_key_bytes)
            yield "{"
            frames.append(["}", zip(keys, map(value.__getitem__, keys)), False])
        elif isinstance(value, (list, tuple)) and value:
            yield "["
            frames.append(["]", ((None, item) for item in value), False])
        else:
            yield from _scalar(value)
        # On to the next value: close the containers that are done.
        while frames:
            frame = frames[-1]
            entry = next(frame[1], None)
            if entry is None:
                frames.pop()
                yield frame[0]
                continue
            key, value = entry
            separator = "," if frame[2] else ""
            frame[2] = True
            yield separator if key is None else f"{separator}{encode_string(key)}:"
            break
        else:
            return


def _key_bytes(key: str) -> bytes:
    try:
        return key.encode("utf-8", "surrogateescape")  # a byte that was not UTF-8 sorts as that byte
    except UnicodeEncodeError:
        return key.encode("utf-8", "surrogatepass")


def _scalar(value) -> Iterator[str]:
    """Yield the JSON of VALUE, which holds no other value (an empty object or array at most)."""
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
        yield "{}"
    elif isinstance(value, (list, tuple)):
        yield "[]"
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


class Ordered(dict):
    """An object whose keys keep their order on the wire, like a Go struct (`{"role", "content"}`)."""


# Go's decoder refuses JSON nested deeper than this (encoding/json, maxNestingDepth).
MAX_DEPTH = 10000

_JSON_SPACE = " \t\n\r"
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_LITERALS = {"t": ("true", True), "f": ("false", False), "n": ("null", None)}
_surrogate = re.compile("[\ud800-\udfff]")


class _Text:
    """A JSON text being read: the position, and the errors in Go's terms."""

    def __init__(self, text: str):
        self.text = text
        self.at = 0

    def skip(self) -> None:
        text, at = self.text, self.at
        while at < len(text) and text[at] in _JSON_SPACE:
            at += 1
        self.at = at

    def take(self, char: str) -> bool:
        """Skip space; consume CHAR if it comes next and say whether it did."""
        self.skip()
        if self.text.startswith(char, self.at):
            self.at += 1
            return True
        return False

    def string(self) -> str:
        if not self.take('"'):
            raise ValueError(f"expected a string at {self.at}")
        value, self.at = scanstring(self.text, self.at, True)
        # A lone surrogate escape ("\ud800") is U+FFFD for Go's decoder.
        return _surrogate.sub("\ufffd", value) if _surrogate.search(value) else value

    def scalar(self):
        self.skip()
        text, at = self.text, self.at
        char = text[at : at + 1]
        if char == '"':
            return self.string()
        if char in _LITERALS:
            word, value = _LITERALS[char]
            if text.startswith(word, at):
                self.at = at + len(word)
                return value
        else:
            match = _NUMBER.match(text, at)
            if match:
                self.at = match.end()
                return _go_float(match.group())
        raise ValueError(f"invalid character at {at}")


def parse_value(text: str):
    """Return TEXT parsed as JSON the way Go reads it into an interface{}.

    Raises ValueError when Go's decoder would refuse it (the caller then
    sends the text as a string). Numbers become floats, as in Go; bytes
    that were not UTF-8 (surrogate escapes) and lone surrogate escapes
    become U+FFFD. Nesting is followed with a stack, not recursion, up to
    Go's own limit of MAX_DEPTH.
    """
    if _surrogate.search(text):
        text = _surrogate.sub("\ufffd", text)  # outside a string it is a syntax error either way
    reader = _Text(text)
    open_values: list = []  # the objects and arrays being filled, outermost first
    keys: list[str] = []  # the key each open object is waiting to fill
    while True:
        reader.skip()
        opener = text[reader.at : reader.at + 1]
        if opener in ("{", "["):
            if len(open_values) >= MAX_DEPTH:
                raise ValueError("exceeded max depth")
            reader.at += 1
            if reader.take("}" if opener == "{" else "]"):
                value = {} if opener == "{" else []
            else:
                open_values.append({} if opener == "{" else [])
                if opener == "{":
                    keys.append(_key(reader))
                continue
        else:
            value = reader.scalar()
        # VALUE is whole: put it in its container, and close the containers that end here.
        while open_values:
            container = open_values[-1]
            if isinstance(container, list):
                container.append(value)
                closer = "]"
            else:
                container[keys.pop()] = value
                closer = "}"
            if reader.take(","):
                if closer == "}":
                    keys.append(_key(reader))
                break
            if not reader.take(closer):
                raise ValueError(f"expected ',' or '{closer}' at {reader.at}")
            value = open_values.pop()
        else:
            reader.skip()
            if reader.at != len(text):
                raise ValueError(f"extra data at {reader.at}")
            return value


def _key(reader: _Text) -> str:
    key = reader.string()
    if not reader.take(":"):
        raise ValueError(f"expected ':' at {reader.at}")
    return key


def _go_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError("number out of range")  # Go refuses it; the value stays a string
    return number
