"""The wheel ships the built-in profiles and FIM templates, and illume finds them when installed from it."""

import os
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(folder)],
                            capture_output=True, timeout=600)
    if result.returncode != 0:
        pytest.fail(f"pip wheel failed: {result.stderr.decode()[-2000:]}")
    (path,) = folder.glob("illume-*.whl")
    return path


def test_wheel_holds_every_profile_and_template(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("profiles", "fim_templates"):
        for name in os.listdir(REPO / folder):
            assert f"illume/{folder}/{name}" in names
    assert "illume/cli.py" in names and "illume/backends/http.py" in names


def test_installed_wheel_finds_its_builtins(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import illume; print(illume.__file__)"], env=env,
                           capture_output=True, cwd=tmp_path, check=True)
    assert where.stdout.decode().startswith(str(target))
    result = subprocess.run([sys.executable, "-m", "illume"], input=b"!profile fim:qwen\n!debug\nx\n!infill\ny\n",
                            env=env, capture_output=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stdout
    assert b'"prompt":"<|fim_prefix|>x\\n<|fim_suffix|>\\ny<|fim_middle|>"' in result.stdout


WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{n}" for n in range(1, 10)), *(f"LPT{n}" for n in range(1, 10))}


def test_every_file_name_is_one_windows_accepts():
    # A single name Windows refuses (`fim:qwen.profile`) stops the whole checkout there.
    skipped = {".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache", ".hypothesis"}
    refused = []
    for folder, folders, files in os.walk(REPO):
        folders[:] = [f for f in folders if f not in skipped and not f.endswith(".egg-info")]
        for name in folders + files:
            if (set(name) & set('<>:"|?*\\') or name.endswith((".", " "))
                    or name.split(".")[0].upper() in WINDOWS_RESERVED):
                refused.append(os.path.relpath(os.path.join(folder, name), REPO))
    assert refused == []
