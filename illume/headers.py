"""HTTP headers set by `!>NAME VALUE`: environment expansion, storage, masking.

Names are case-insensitive: a later `!>Authorization` replaces an earlier
`!>authorization` in place. Values that hold credentials are masked whenever
they are shown (`!debug`, errors), never when they are sent.
"""

from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from illume.secrets import credential, mask, secret_name

__all__ = ["Headers", "expand", "mask", "proxy_secrets"]

_SPECIAL = set("*#$@!?-0123456789")
_NAME_CHARS = set("_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _shell_name(s: str) -> tuple[str, int]:
    """Return the variable name at the start of S (after a `$`) and how many characters it spans."""
    if s[0] == "{":
        if len(s) > 2 and s[1] in _SPECIAL and s[2] == "}":
            return s[1], 3
        end = s.find("}", 1)
        if end == 1:
            return "", 2  # "${}" is bad syntax and is eaten
        if end < 0:
            return "", 1  # "${" without a close is eaten
        return s[1:end], end + 1
    if s[0] in _SPECIAL:
        return s[0], 1
    i = 0
    while i < len(s) and s[i] in _NAME_CHARS:
        i += 1
    return s[:i], i


def expand(value: str, env: Mapping[str, str]) -> tuple[str, bool]:
    """Return VALUE with `$VAR` and `${VAR}` replaced from ENV, and whether any variable was used.

    This follows Go's os.ExpandEnv, which the original uses: unset variables
    expand to nothing and a `$` that starts no name is kept.
    """
    out: list[str] = []
    used = False
    start = 0
    j = 0
    while j < len(value):
        if value[j] == "$" and j + 1 < len(value):
            out.append(value[start:j])
            name, width = _shell_name(value[j + 1 :])
            if name == "" and width > 0:
                pass  # invalid syntax: the characters are eaten
            elif name == "":
                out.append("$")
            else:
                out.append(env.get(name, ""))
                used = True
            j += width
            start = j + 1
        j += 1
    if not out:
        return value, used
    out.append(value[start:])
    return "".join(out), used


class Headers:
    """The request headers in the order they were first set, looked up without regard to case."""

    def __init__(self):
        self._entries: dict[str, tuple[str, str, bool]] = {}  # lower name -> (name, value, secret)

    @classmethod
    def default(cls) -> "Headers":
        """Return the headers every request starts with."""
        headers = cls()
        headers.set("content-type", "application/json")
        return headers

    def set(self, name: str, value: str, from_env: bool = False) -> None:
        key = name.lower()
        # A credential by its name (authorization, cookie, x-goog-api-key, *-token...) or by where it came from.
        secret = from_env or secret_name(key)
        self._entries[key] = (name, value, secret)

    def delete(self, name: str) -> None:
        self._entries.pop(name.lower(), None)

    def get(self, name: str, default=None):
        entry = self._entries.get(name.lower())
        return entry[1] if entry else default

    def items(self) -> list[tuple[str, str]]:
        """Return (name, value) pairs as they are sent."""
        return [(name, value) for name, value, _ in self._entries.values()]

    def shown(self) -> list[tuple[str, str]]:
        """Return (name, value) pairs as they may be shown to a person: secrets masked."""
        return [(name, mask(value) if secret else value) for name, value, secret in self._entries.values()]

    def public_items(self) -> list[tuple[str, str]]:
        """Return the (name, value) pairs that hold no credential, for another host."""
        return [(name, value) for name, value, secret in self._entries.values() if not secret]

    def secrets(self) -> list[str]:
        """Return the secret values, so that messages can be scrubbed of them."""
        found = [credential(value)[1] for _, value, secret in self._entries.values() if secret]
        return [s for s in found if len(s) >= 4]


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


def proxy_secrets(env: Mapping[str, str]) -> list[str]:
    """Return the credentials in the proxy URLs of ENV, as given and as httpx sends them (Basic, base64).

    A proxy that refuses them may echo them back in its error page.
    """
    values = [v for name in _PROXY_VARIABLES for v in (env.get(name), env.get(name.upper())) if v and "@" in v]
    if not values:
        return []  # the common case, without importing base64
    import base64

    found = []
    for value in values:
        try:
            parts = urlsplit(value)
        except ValueError:
            continue
        if parts.password:
            userinfo = f"{unquote(parts.username or '')}:{unquote(parts.password)}"
            found += [parts.password, unquote(parts.password), base64.b64encode(userinfo.encode()).decode()]
    return [s for s in found if len(s) >= 4]
