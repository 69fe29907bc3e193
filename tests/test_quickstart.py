"""The README's quick start, run as a new user runs it: its first command, in a fresh copy of the repository.

It runs with the system's own `python3` (/usr/bin/python3: on Debian 12 and
Ubuntu 23.04+ an externally managed Python that refuses `pip install`), so
`install.sh` has to make its virtual environment, install illume, the
embedded backend and the model into it, and the command then answers
examples/chat.txt on the real model. pip's cache holds the llama.cpp build
once ./test.sh has run, so this takes about a minute.
"""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import USER_CACHE_HOME, missing

pytestmark = pytest.mark.embedded

REPO = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"


def quick_start_command() -> str:
    """Return the first shell command of the README's Quick start section."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Quick start"):]
    section = section[:section.index("\n## ", 1)]
    return re.search(r"```sh\n(.*?)\n```", section, re.S).group(1)


def tracked_files() -> list[str]:
    result = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, timeout=60)
    if result.returncode != 0:
        missing("git's list of the repository's files (this is not a git checkout)", "run the tests in a git clone")
    return [name for name in result.stdout.decode().split("\0") if name and (REPO / name).is_file()]


def test_readme_quick_start_on_the_system_python():
    if not os.path.exists(SYSTEM_PYTHON):
        missing(f"the system's own {SYSTEM_PYTHON}", "apt-get install python3")
    command = quick_start_command()
    assert command.startswith("./install.sh && .venv/bin/illume examples/chat.txt"), command
    with tempfile.TemporaryDirectory(prefix="illume-quickstart-") as tmp:
        copy = Path(tmp) / "illume"
        for name in tracked_files():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
        # `python3` is the system's own, as on a fresh Debian or Ubuntu.
        bin_dir = Path(tmp) / "bin"
        bin_dir.mkdir()
        (bin_dir / "python3").symlink_to(SYSTEM_PYTHON)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ILLUME_", "PYTHON", "VIRTUAL_ENV", "PIP_"))}
        env["PATH"] = f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
        # pip's own cache, where a user's is: the run's XDG_CACHE_HOME is a test folder, and
        # without the cached wheels pip would compile llama.cpp again (minutes).
        env["PIP_CACHE_DIR"] = str(USER_CACHE_HOME / "pip")
        result = subprocess.run(["bash", "-c", command], cwd=copy, env=env, capture_output=True, timeout=1800)
        out, err = result.stdout.decode(), result.stderr.decode()
        assert result.returncode == 0, f"{out[-2000:]}\n{err[-3000:]}"
        assert out.startswith("\n\n!assistant\n\n") and re.search(r"\w{3}", out), out
        assert "!error" not in out, out
        venv_python = subprocess.run([str(copy / ".venv/bin/python"), "-c", "import sys; print(sys.base_prefix)"],
                                     capture_output=True, text=True, timeout=60).stdout.strip()
        assert venv_python == subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.base_prefix)"],
                                             capture_output=True, text=True, timeout=60).stdout.strip()
        assert "ln -sf" in err and "/.venv/bin/illume" in err, err  # how to put it on the PATH
