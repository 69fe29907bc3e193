"""install.sh when it cannot make the virtual environment: it says why, and removes only what it made.

A folder given as ILLUME_VENV may hold the user's own files; a failed
attempt leaves them be. `python3` here is a wrapper that runs the real one
but fails as a broken system Python would: `-m venv` leaves a half-made
environment behind and exits 1.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

# Python as a system may have it, but whose venv fails halfway: it writes part of an environment, then exits 1.
BROKEN_VENV = """#!/bin/sh
case "$*" in
  *"-m venv"*)
    for last; do :; done
    mkdir -p "$last/bin" && echo 'home = /nowhere' > "$last/pyvenv.cfg"
    echo "Error: [Errno 28] No space left on device: '$last/bin/python3'" >&2
    exit 1 ;;
  *ensurepip*) [ -n "$NO_ENSUREPIP" ] && exit 1 ;;
  *"-m pip"*) [ -n "$NO_ENSUREPIP" ] && exit 1 ;;
esac
exec {python} "$@"
"""


def run_install(tmp_path: Path, venv: Path, no_ensurepip: bool = False):
    """Return install.sh's run with the broken Python, making its environment in VENV."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python3"
    python.write_text(BROKEN_VENV.format(python=sys.executable))
    python.chmod(0o755)
    # As root, install.sh would apt-get python3.X-venv: here a stand-in that fails, and says it ran.
    apt = bin_dir / "apt-get"
    apt.write_text(f"#!/bin/sh\ntouch {tmp_path}/apt-get-ran\nexit 1\n")
    apt.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ILLUME_", "VIRTUAL_ENV", "PIP_"))}
    env.update(PATH=f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}", PYTHON=str(python), ILLUME_VENV=str(venv))
    if no_ensurepip:
        env["NO_ENSUREPIP"] = "1"
    return subprocess.run(["bash", str(REPO / "install.sh")], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("no_ensurepip", [False, True], ids=["venv fails", "no ensurepip"])
def test_a_failed_environment_leaves_the_users_folder_and_its_files(tmp_path, no_ensurepip):
    venv = tmp_path / "mine"
    venv.mkdir()
    (venv / "notes.txt").write_text("the user's own\n")
    (venv / ".hidden").write_text("also\n")
    result = run_install(tmp_path, venv, no_ensurepip)
    assert result.returncode != 0, result.stderr
    assert (venv / "notes.txt").read_text() == "the user's own\n"
    assert (venv / ".hidden").read_text() == "also\n"
    # What the failed attempt made there is gone, and only that.
    assert sorted(os.listdir(venv)) == [".hidden", "notes.txt"]
    if no_ensurepip:
        assert "cannot make a virtual environment with pip (its ensurepip module is missing)" in result.stderr
    else:
        assert f"-m venv {venv} failed: Error: [Errno 28] No space left on device" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_failed_environment_it_made_itself_is_removed(tmp_path):
    venv = tmp_path / "new"
    result = run_install(tmp_path, venv)
    assert result.returncode != 0, result.stderr
    assert not venv.exists()
    assert "No space left on device" in result.stderr


def test_a_file_given_as_the_environment_is_left_alone(tmp_path):
    venv = tmp_path / "a-file"
    venv.write_text("not a folder\n")
    result = run_install(tmp_path, venv)
    assert result.returncode != 0, result.stderr
    assert venv.read_text() == "not a folder\n"
    assert "failed" in result.stderr
