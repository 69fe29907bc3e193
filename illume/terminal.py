"""What a terminal may be sent of a model's or a server's text: no control sequences.

When illume's standard output is a terminal, a reply holding ESC sequences
could retitle the window, write to the clipboard (OSC 52), hide text or
forge a prompt. There every C0 control but tab and line feed, DEL and every
C1 control is shown in caret notation (`^[`, as `cat -v` shows it) instead.
Into a pipe or a file (an editor, `>> FILE`, a batch) the bytes go as they
are, as the original sends them.
"""

import re

# C0 but \t and \n, a CR not followed by \n (it would let text overwrite the line; one that ends a
# piece may be the first half of a CRLF), DEL, C1.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f]|\r(?!\n|\\Z)")


def _caret(match: re.Match) -> str:
    code = ord(match.group())
    if code < 0x20 or code == 0x7F:
        return "^" + chr(code ^ 0x40)
    return "^[" + chr(code - 0x40)  # a C1 control is ESC and a letter, written in one


def shown(text: str) -> str:
    """Return TEXT with its control characters written out in caret notation."""
    return _CONTROL.sub(_caret, text) if _CONTROL.search(text) else text
