"""Go's white space (unicode.IsSpace), as the original trims and splits buffer text."""

import sys

from illume.gotext import fields, trim_space

# Every code point unicode.IsSpace accepts, printed by a Go program (go1.19):
# for r := rune(0); r < 0x110000; r++ { if unicode.IsSpace(r) { ... } }
GO_SPACE = [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
            0x2028, 0x2029, 0x202F, 0x205F, 0x3000]


def test_exactly_gos_white_space_is_trimmed():
    trimmed = [c for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF and trim_space(chr(c)) == ""]
    assert trimmed == GO_SPACE


def test_python_space_that_go_keeps():
    assert trim_space("\x1c 1\x1f \x1d") == "\x1c 1\x1f \x1d"
    assert "\x1f".isspace()  # what str.strip() would have taken


def test_fields_split_on_runs_of_go_space_only():
    assert fields("!context \u3000a\x1cb\t\n c\xa0\u2028") == ["!context", "a\x1cb", "c"]
    assert fields(" \t ") == []


def test_bytes_that_are_not_utf8_are_not_space():
    assert trim_space("\udc85x\udca0") == "\udc85x\udca0"
