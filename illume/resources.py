"""Where the files that ship with illume, and the user's own, are found.

Paths are plain strings: pathlib would add to every start.
"""

import os
from collections.abc import Mapping

_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def builtin_dir(name: str) -> str:
    """Return the folder of built-in NAME files (`profiles`, `fim_templates`).

    Inside a wheel they sit in the package; in a source checkout, beside it.
    """
    inside = os.path.join(_PACKAGE, name)
    return inside if os.path.isdir(inside) else os.path.join(os.path.dirname(_PACKAGE), name)


def user_dir(name: str, env: Mapping[str, str]) -> str:
    """Return the user's folder of NAME files: $XDG_CONFIG_HOME/illume/NAME, by default ~/.config/illume/NAME."""
    config = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".config")
    return os.path.join(config, "illume", name)
