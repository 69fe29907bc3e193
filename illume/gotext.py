"""Go's idea of white space, for trimming and splitting buffer text as the original does.

The original trims directive arguments with Go's `strings.TrimSpace` and
splits `!context`/`!github` arguments with `strings.Fields`; both use
`unicode.IsSpace`. Python's `str.strip()` and `str.split()` also count the
separators U+001C-U+001F as space, so `!:k 1\\x1f` would be the number 1
rather than the string the original sends. Everything here uses Go's set.
"""

import re

# unicode.IsSpace, exactly (Go 1.x): ASCII \t \n \v \f \r and space, U+0085,
# U+00A0, and the other White_Space characters. Not U+001C-U+001F.
SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
        "\u2028\u2029\u202f\u205f\u3000"

_RUNS = re.compile(f"[{SPACE}]+")


def trim_space(text: str) -> str:
    """Return TEXT without leading and trailing white space (Go's strings.TrimSpace)."""
    return text.strip(SPACE)


def fields(text: str) -> list[str]:
    """Return the words of TEXT split around runs of white space (Go's strings.Fields)."""
    return [word for word in _RUNS.split(text) if word]
