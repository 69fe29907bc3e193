"""Headers: Go's os.ExpandEnv, case-insensitive names, masking of secrets."""

import pytest

from illume.headers import Headers, expand, mask

ENV = {"TOKEN": "secret", "A": "x", "A_B1c": "long", "EMPTY": "", "1": "one", "*": "star", "A B": "spaced"}

EXPANSIONS = [
    # (value, expanded as Go's os.ExpandEnv does, a variable was used)
    ("plain", "plain", False),
    ("Bearer $TOKEN", "Bearer secret", True),
    ("Bearer ${TOKEN}", "Bearer secret", True),
    ("$TOKEN$TOKEN", "secretsecret", True),
    ("${A}B", "xB", True),
    ("$AB", "", True),  # the name runs on: AB is unset
    ("$A_B1c-", "long-", True),
    ("$UNSET", "", True),
    ("a${UNSET}b", "ab", True),
    ("$EMPTY", "", True),
    ("a$", "a$", False),  # a final $ is kept
    ("$ x", "$ x", False),  # $ before no name is kept
    ("$é", "$é", False),
    ("a-$1b", "a-oneb", True),  # one-character special names
    ("${*}", "star", True),
    ("$*", "star", True),
    ("${A B}", "spaced", True),
    ("x${}y", "xy", False),  # bad syntax: "${}" is eaten
    ("x${abc", "xabc", False),  # bad syntax: "${" is eaten
    ("$$", "", True),  # $ is a special name, unset here
]


@pytest.mark.parametrize("value, expected, used", EXPANSIONS)
def test_expand(value, expected, used):
    assert expand(value, ENV) == (expected, used)


MASKS = [
    ("Bearer sk-abcdefghijklmnop1234", "Bearer ***1234"),
    ("sk-ant-0123456789abcdef", "***cdef"),
    ("0123456789abcdef", "***cdef"),  # 16 characters: the last four show
    ("0123456789abcde", "***"),  # shorter: nothing shows
    ("short", "***"),
    ("Bearer abc", "Bearer ***"),
    ("Basic dXNlcjpwYXNzd29yZA==", "Basic ***ZA=="),
    ("Bearer ", "Bearer "),  # an unset token: nothing to hide
    ("", ""),
    # Only a real auth scheme word stays visible: any other first word is part of the secret.
    ("correct horse battery staple", "***aple"),
    ("horse battery", "***"),
    ("token abcdefghijklmnopqrstuvwxyz", "token ***wxyz"),
]


@pytest.mark.parametrize("value, expected", MASKS)
def test_mask(value, expected):
    assert mask(value) == expected


def test_default_headers():
    assert Headers.default().items() == [("content-type", "application/json")]


def test_names_are_case_insensitive_and_keep_first_place():
    headers = Headers.default()
    headers.set("x-one", "1")
    headers.set("authorization", "Bearer a")
    headers.set("X-One", "2")
    headers.set("Content-Type", "text/plain")
    assert headers.items() == [("Content-Type", "text/plain"), ("X-One", "2"), ("authorization", "Bearer a")]
    assert headers.get("CONTENT-TYPE") == "text/plain"
    assert headers.get("missing", "none") == "none"


def test_delete_ignores_case_and_missing_names():
    headers = Headers.default()
    headers.set("X-Key", "v")
    headers.delete("x-KEY")
    headers.delete("never-set")
    assert headers.items() == [("content-type", "application/json")]


SHOWN = [
    # (name, value, value came from the environment, shown as)
    ("authorization", "Bearer sk-abcdefghijklmnop1234", False, "Bearer ***1234"),
    ("Authorization", "Bearer sk-abcdefghijklmnop1234", False, "Bearer ***1234"),
    ("x-api-key", "sk-ant-0123456789abcdef", False, "***cdef"),
    ("api-key", "k", False, "***"),
    ("proxy-authorization", "Basic dXNlcjpwYXNzd29yZA==", False, "Basic ***ZA=="),
    ("x-custom", "from-env-0123456789", True, "***6789"),  # anything from $VAR is a secret
    ("x-use-cache", "false", False, "false"),
    ("anthropic-version", "2023-06-01", False, "2023-06-01"),
]


@pytest.mark.parametrize("name, value, from_env, shown", SHOWN)
def test_shown_masks_secrets_only(name, value, from_env, shown):
    headers = Headers()
    headers.set(name, value, from_env)
    assert headers.shown() == [(name, shown)]
    assert headers.items() == [(name, value)]  # sent in full


def test_public_items_and_secrets():
    headers = Headers.default()
    headers.set("authorization", "Bearer sk-abcdefghijklmnop1234")
    headers.set("x-api-key", "abc")  # too short to scrub from messages
    headers.set("x-token", "envvalue", from_env=True)
    headers.set("x-plain", "visible")
    assert headers.public_items() == [("content-type", "application/json"), ("x-plain", "visible")]
    assert headers.secrets() == ["sk-abcdefghijklmnop1234", "envvalue"]
