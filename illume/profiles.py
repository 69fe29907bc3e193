"""Profiles: small buffers of directives, found by name (docs/profiles.md).

`!profile NAME` resolves NAME as a built-in profile, else (for a bare
name) as `NAME.profile` in the user's profile folder,
`$XDG_CONFIG_HOME/illume/profiles`, else as a file path.

Built-in profiles live in `profiles/`, one file each. A name holds a `:`
(`fim:qwen`), which Windows refuses in a file name, so the file is stored
under the name with its first `:` made a `-` (`fim-qwen.profile`); only the
typed name finds it (`!profile fim-qwen` is no built-in).
"""

import os
from collections.abc import Mapping

from illume.documents import read_text
from illume.resources import builtin_dir, user_dir

DEFAULT = "llama.cpp"
_NAMESPACES = ("fim",)  # the `NAMESPACE:` prefixes of built-in names


def _is_bare(name: str) -> bool:
    """Return whether NAME is a profile name, not a path (nor the current or parent folder)."""
    return "/" not in name and "\\" not in name and name not in ("", ".", "..")


def _stored(name: str) -> str:
    """Return the file name (without `.profile`) a built-in profile NAME is stored under."""
    return name.replace(":", "-", 1)


def _typed(stored: str) -> str:
    """Return the profile name users type for the built-in file STORED (without `.profile`)."""
    namespace, dash, rest = stored.partition("-")
    return f"{namespace}:{rest}" if dash and namespace in _NAMESPACES else stored


def builtin_file(name: str) -> str | None:
    """Return the path of the built-in profile NAME, or None when there is none."""
    if not _is_bare(name) or _typed(_stored(name)) != name:
        return None
    path = os.path.join(builtin_dir("profiles"), f"{_stored(name)}.profile")
    return path if os.path.isfile(path) else None


def resolve(name: str, env: Mapping[str, str]) -> tuple[str, str]:
    """Return (identity, text) of the profile NAME; identity tells two loads of one file apart.

    A bare name is looked up among the built-ins, then in the user's own
    folder, and only then as a file in the current directory: a file that
    a cloned repository holds must not stand in for the user's profile
    (and receive the keys it sends). The original looks in the current
    directory before the user's folder.
    """
    builtin = builtin_file(name)
    if builtin is not None:
        return builtin, read_text(builtin)
    if _is_bare(name):
        users = os.path.join(user_dir("profiles", env), f"{name}.profile")
        if os.path.isfile(users):
            return users, read_text(users)
    # The original's words when nothing is found: "open NAME: no such file or directory".
    return os.path.abspath(name), read_text(name)

