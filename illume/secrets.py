"""Credentials: which names and values are secret, and how they are hidden in whatever is shown.

A secret is never changed where it is sent; it is hidden in `!debug`, in
`!error` and `!note` sections, in batch messages. What counts as secret:

- the value of a header or JSON key whose name says so (`authorization`,
  `cookie`, `x-goog-api-key`, `ocp-apim-subscription-key`, any name with a
  word such as key, token, secret, password: `secret_name`);
- a header value that came from a `$VAR` (illume.headers);
- in a URL: the user info (`http://user:PASSWORD@host/`), a query value
  under a secret name (`?key=...`), and a path segment or query value that
  looks like a generated key (`looks_generated`), or that follows a
  segment named like one (`/token/VALUE`).
"""

import re
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

# Authorization schemes (the IANA registry and common extras): the word stays
# visible, the credential after it does not. Any other first word is part of
# the secret (`correct horse battery staple` is one passphrase).
SCHEMES = frozenset({"basic", "bearer", "digest", "token", "negotiate", "ntlm", "hoba", "mutual", "oauth",
                     "vapid", "apikey", "key", "ssws", "dpop", "privatetoken", "scram-sha-1", "scram-sha-256",
                     "aws4-hmac-sha256", "googlelogin", "sharedkey", "sharedaccesssignature"})

# Words that make a header, query or JSON name a credential's: `x-api-key`,
# `access_token`, `X-Auth-Token`, `apiKey`, `client_secret`, `cookie`. Whole
# words only, so that `max_tokens` or `n_keep` are not secrets.
_SECRET_WORDS = frozenset({"key", "apikey", "token", "secret", "password", "passwd", "passphrase", "pwd", "pass",
                           "auth", "authorization", "authentication", "cookie", "credential", "credentials",
                           "signature", "sig", "session", "sessionid", "jwt", "bearer", "accesstoken",
                           "privatekey", "clientsecret"})
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def secret_name(name: str) -> bool:
    """Return whether NAME (a header, query parameter or JSON key) names a credential."""
    words = _WORD_SPLIT.split(_CAMEL.sub("-", name).lower())
    return any(word in _SECRET_WORDS for word in words) or "".join(words) in _SECRET_WORDS


def credential(value: str) -> tuple[str, str]:
    """Return (auth scheme, credential) of VALUE: ("Bearer", "sk-...") or ("", the whole value)."""
    scheme, space, rest = value.partition(" ")
    if space and scheme.lower() in SCHEMES:
        return scheme, rest
    return "", value


def mask(value: str) -> str:
    """Return VALUE with its credential hidden: a known auth scheme word stays, the secret does not."""
    scheme, secret = credential(value)
    if scheme:
        return f"{scheme} {mask(secret)}" if secret.strip() else value  # `Bearer ` (an unset $VAR): nothing to hide
    if not value:
        return value
    # The last four characters tell keys apart without giving one away.
    return "***" + value[-4:] if len(value) >= 16 else "***"


def scrub(message: str, secrets) -> str:
    """Return MESSAGE with each of SECRETS masked; the longest first, so that no part of one is left.

    A secret cut short right before an ellipsis (`sk-proj-12…`, a body cut
    by someone who did not scrub it first) is masked too.
    """
    ordered = sorted(set(secrets), key=len, reverse=True)
    if "…" in message and ordered:
        message = _mask_cut_ends(message, ordered)  # first: a shorter secret could mask part of a cut one
    for secret in ordered:
        if secret in message:
            message = message.replace(secret, mask(secret))
    return message


def _mask_cut_ends(message: str, secrets: list[str]) -> str:
    """Return MESSAGE with the beginning of a secret (4 characters or more) right before an ellipsis masked."""
    longest = len(secrets[0])
    pieces, start = [], 0
    at = message.find("…")
    while at >= 0:
        before = message[max(start, at - longest) : at]
        for secret in secrets:
            length = next((n for n in range(min(len(secret) - 1, len(before)), 3, -1)
                           if before.endswith(secret[:n])), 0)
            if length:
                pieces.append(message[start : at - length] + "***")
                start = at
                break
        at = message.find("…", at + 1)
    pieces.append(message[start:])
    return "".join(pieces)


def cut(message: str, limit: int, secrets=()) -> str:
    """Return MESSAGE scrubbed of SECRETS, then cut to LIMIT characters (a secret cut in two would show)."""
    message = scrub(message, secrets)
    return message if len(message) <= limit else message[:limit] + "…"


# --- URLs ---------------------------------------------------------------------

_GENERATED_CHARS = re.compile(r"[A-Za-z0-9_\-.~+/=:]{20,}")


def _kind(c: str) -> int:
    return 0 if c.isdigit() else 1 if c.islower() else 2


def looks_generated(text: str) -> bool:
    """Return whether TEXT looks like a generated key rather than a word or a model's name.

    Keys switch between digits, lower and upper case all the time
    (`AIzaSyD3x...`, `sk-proj-4fQ9...`, 40 hex digits); names do so
    rarely (`Mixtral-8x7B-Instruct-v0.1`, `Qwen2.5-Coder-32B-Instruct`).
    """
    if not _GENERATED_CHARS.fullmatch(text):
        return False
    alnum = [c for c in text if c.isascii() and c.isalnum()]
    if len(alnum) < 20 or not any(c.isdigit() for c in alnum) or not any(c.isalpha() for c in alnum):
        return False
    switches = sum(_kind(a) != _kind(b) for a, b in zip(alnum, alnum[1:]))
    return switches >= 0.35 * (len(alnum) - 1)


def _secret_pair(name: str, value: str) -> bool:
    """Return whether the query pair NAME=VALUE (as written) carries a key: by its name or by its look."""
    return bool(value) and (secret_name(unquote_plus(name)) or looks_generated(unquote_plus(value)))


def _secret_segment(before: str, segment: str) -> bool:
    """Return whether the path SEGMENT (after BEFORE, as written) is a key: by its look or the segment naming it."""
    return bool(segment) and (looks_generated(unquote(segment)) or bool(before) and secret_name(unquote(before)))


def _hide_userinfo(url: str) -> str:
    """Return URL, which does not parse, with at least nothing between // and @ showing."""
    return re.sub(r"//[^/@]*@", "//***@", url)


def _query_secrets(query: str) -> list[str]:
    found = []
    for pair in re.split("[&;]", query):
        name, equals, value = pair.partition("=")
        if equals and _secret_pair(name, value):
            found += [value, unquote_plus(value)]
    return found


def _path_secrets(path: str) -> list[str]:
    found = []
    segments = path.split("/")
    for before, segment in zip([""] + segments, segments):
        if _secret_segment(before, segment):
            found += [segment, unquote(segment)]
    return found


def url_secrets(url: str) -> list[str]:
    """Return the secrets in URL, as written and as sent: user info (and the Basic header made of it), keys."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = []
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if colon:
            import base64  # off the dry run's path: only a URL with a password needs it

            found += [password, unquote(password)]
            # httpx turns the user info into `Authorization: Basic base64(user:password)`.
            pair = f"{unquote(user)}:{unquote(password)}".encode("utf-8", "surrogateescape")
            found.append(base64.b64encode(pair).decode())
        elif looks_generated(unquote(user)):
            found += [user, unquote(user)]  # a token given as the user name (`https://ghp_...@host/`)
    found += _path_secrets(parts.path) + _query_secrets(parts.query)
    return [s for s in found if s]


def shown_url(url: str) -> str:
    """Return URL as it may be shown: its password, keys in its query and key-like path segments masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _hide_userinfo(url)
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        if colon:
            netloc = f"{user}:***@{host}"
        elif looks_generated(unquote(user)):
            netloc = f"***@{host}"
    segments = parts.path.split("/")
    shown = []
    for before, segment in zip([""] + segments, segments):
        shown.append(mask(segment) if _secret_segment(before, segment) else segment)
    pairs = []
    for pair in re.split("([&;])", parts.query) if parts.query else []:
        name, equals, value = pair.partition("=")
        if equals and _secret_pair(name, value):
            pair = f"{name}={mask(value)}"
        pairs.append(pair)
    try:
        masked = urlunsplit((parts.scheme, netloc, "/".join(shown), "".join(pairs), parts.fragment))
        if masked == urlunsplit(parts):
            return url  # nothing to hide: shown as written (urlunsplit would lower-case the scheme, drop a bare `?`)
        return url[: len(parts.scheme)] + masked[len(parts.scheme):]
    except ValueError:
        return _hide_userinfo(url)


def body_secrets(body: dict) -> list[str]:
    """Return the string values of BODY's keys named like credentials (`!:api_key ...`)."""
    return [value for key, value in body.items() if isinstance(value, str) and len(value) >= 4 and secret_name(key)]
