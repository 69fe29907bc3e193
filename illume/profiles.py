"""Profiles: small buffers of directives, found by name (docs/profiles.md).

`!profile NAME` resolves NAME as a built-in `profiles/NAME.profile`, else as
a file path, else (for a bare name) as `NAME.profile` in the user's profile
folder, `$XDG_CONFIG_HOME/illume/profiles`.
"""

import os
from collections.abc import Mapping

from illume.documents import DocumentError, read_text
from illume.resources import builtin_dir, user_dir

DEFAULT = "llama.cpp"


def _is_bare(name: str) -> bool:
    return "/" not in name and "\\" not in name


def resolve(name: str, env: Mapping[str, str]) -> tuple[str, str]:
    """Return (identity, text) of the profile NAME; identity tells two loads of one file apart."""
    if _is_bare(name) and name not in ("", ".", ".."):
        builtin = os.path.join(builtin_dir("profiles"), f"{name}.profile")
        if os.path.isfile(builtin):
            return builtin, read_text(builtin)
    try:
        return os.path.abspath(name), read_text(name)
    except DocumentError as first:
        if not _is_bare(name) or not name:
            raise
        users = os.path.join(user_dir("profiles", env), f"{name}.profile")
        if os.path.isfile(users):
            return users, read_text(users)
        raise first  # the original's words: "open NAME: no such file or directory"


def builtin_names() -> list[str]:
    """Return the names of the built-in profiles."""
    return sorted(n[: -len(".profile")] for n in os.listdir(builtin_dir("profiles")) if n.endswith(".profile"))
