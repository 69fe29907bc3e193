"""Profiles: small buffers of directives, found by name (docs/profiles.md).

`!profile NAME` resolves NAME as a built-in `profiles/NAME.profile`, else
(for a bare name) as `NAME.profile` in the user's profile folder,
`$XDG_CONFIG_HOME/illume/profiles`, else as a file path.
"""

import os
from collections.abc import Mapping

from illume.documents import read_text
from illume.resources import builtin_dir, user_dir

DEFAULT = "llama.cpp"


def _is_bare(name: str) -> bool:
    return "/" not in name and "\\" not in name


def resolve(name: str, env: Mapping[str, str]) -> tuple[str, str]:
    """Return (identity, text) of the profile NAME; identity tells two loads of one file apart.

    A bare name is looked up among the built-ins, then in the user's own
    folder, and only then as a file in the current directory: a file that
    a cloned repository holds must not stand in for the user's profile
    (and receive the keys it sends). The original looks in the current
    directory before the user's folder.
    """
    if _is_bare(name) and name not in ("", ".", ".."):
        for folder in (builtin_dir("profiles"), user_dir("profiles", env)):
            path = os.path.join(folder, f"{name}.profile")
            if os.path.isfile(path):
                return path, read_text(path)
    # The original's words when nothing is found: "open NAME: no such file or directory".
    return os.path.abspath(name), read_text(name)


def builtin_names() -> list[str]:
    """Return the names of the built-in profiles."""
    return sorted(n[: -len(".profile")] for n in os.listdir(builtin_dir("profiles")) if n.endswith(".profile"))
