"""Where the files that ship with illume, and the user's own, are found."""

import os
from collections.abc import Mapping
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def builtin_dir(name: str) -> Path:
    """Return the folder of built-in NAME files (`profiles`, `fim_templates`).

    Inside a wheel they sit in the package; in a source checkout, beside it.
    """
    inside = _PACKAGE / name
    return inside if inside.is_dir() else _PACKAGE.parent / name


def user_dir(name: str, env: Mapping[str, str]) -> Path:
    """Return the user's folder of NAME files: $XDG_CONFIG_HOME/illume/NAME, by default ~/.config/illume/NAME."""
    config = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".config")
    return Path(config) / "illume" / name
