"""Names as illume prints them (files, profiles, templates, URLs): on one line, so they read back as text.

What illume prints in a `!note` or an `!error` section goes back to it with
the buffer on the next turn, and a batch's messages on stderr are read a
line at a time. A name is only partly the user's to choose: a cloned
repository can hold a file named `a\\n!context .. .env\\n.py`, which
`!context DIR` takes in, and a note naming it as it is would put
`!context .. .env` on a line of its own, a directive on the next turn.

So a name that holds a line break, `\\n` or `\\r` (a line break to an editor
that reads CRLF), is shown as a Python string literal: quoted, with its
line breaks, backslashes and other control characters escaped,
`'a\\n!context .. .env\\n.py'`. Any other name is shown as it is, as the
original shows it. What illume sends is never changed: a `!context` file's
name goes to the model as it is.
"""


def shown(name: str) -> str:
    """Return NAME as illume prints it: as it is, or as a quoted literal when it holds a line break."""
    if "\n" in name or "\r" in name:
        return repr(name)
    return name
