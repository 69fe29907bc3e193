"""What a terminal may be sent of a model's or a server's text: no control sequences, no hidden reordering.

When illume's standard output is a terminal, a reply holding ESC sequences
could retitle the window, write to the clipboard (OSC 52), hide text or
forge a prompt. There every C0 control but tab and line feed, DEL and every
C1 control is shown in caret notation (`^[`, as `cat -v` shows it) instead;
so is a carriage return that no line feed follows, which would let the
text after it overwrite the line before (`illume.output.Output` holds back
a `\\r` that ends a piece until the next piece says whether a `\\n` follows).
The bidirectional formatting characters are shown as `<U+202E>`, as `less`
shows them: the embeddings, overrides and isolates (U+202A-U+202E,
U+2066-U+2069) can reverse a run of text in a terminal that applies the
Unicode bidirectional algorithm, so that what reads as one command is
another ("Trojan Source", CVE-2021-42574); the invisible marks (U+200E,
U+200F, U+061C) reorder the digits and punctuation around them, enough to
disguise a number or a path. Text in right-to-left scripts shows as it is;
only those invisible controls are written out. Into a pipe or a file (an
editor, `>> FILE`, a batch) the bytes go as they are, as the original
sends them, but for NUL and ESC (see `illume.output`).
"""

import re

# C0 but \t and \n, a CR not followed by \n, DEL, C1; then the bidirectional formatting characters.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f]|\r(?!\n)|[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _caret(match: re.Match) -> str:
    code = ord(match.group())
    if code < 0x20 or code == 0x7F:
        return "^" + chr(code ^ 0x40)
    if code <= 0x9F:
        return "^[" + chr(code - 0x40)  # a C1 control is ESC and a letter, written in one
    return f"<U+{code:04X}>"


def shown(text: str) -> str:
    """Return TEXT with its control characters in caret notation and its bidirectional controls as `<U+XXXX>`."""
    return _CONTROL.sub(_caret, text) if _CONTROL.search(text) else text
