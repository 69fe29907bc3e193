"""The suite's own rules: a missing part fails the run in CI, and no test skips behind conftest's back."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def pytest_run(tmp_path, *args: str, require: bool, path: str | None = None, hide: str | None = None):
    """Run pytest on ARGS in a subprocess; REQUIRE sets ILLUME_REQUIRE_ALL, PATH replaces $PATH, HIDE a module."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ILLUME_")}
    if require:
        env["ILLUME_REQUIRE_ALL"] = "1"
    if path is not None:
        env["PATH"] = path
    if hide:
        shadow = tmp_path / "shadow"
        shadow.mkdir(exist_ok=True)
        (shadow / f"{hide}.py").write_text(f"raise ImportError('{hide} hidden by test_suite.py')\n")
        env["PYTHONPATH"] = f"{shadow}{os.pathsep}{REPO}"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("require", [True, False], ids=["CI", "laptop"])
def test_a_missing_editor_fails_in_ci_and_says_which(tmp_path, require):
    result = pytest_run(tmp_path, "tests/test_vim.py", "-k", "test_help_has_a_tag and not nvim",
                        require=require, path=str(tmp_path))  # no vim on this PATH
    assert "the program vim is missing (apt-get install vim)" in result.stdout, result.stdout[-3000:]
    if require:
        assert result.returncode == 1 and "1 error" in result.stdout, result.stdout[-3000:]  # in its fixture
    else:
        assert result.returncode == 0 and "1 skipped" in result.stdout, result.stdout[-3000:]


def test_a_missing_python_module_fails_in_ci_and_says_which(tmp_path):
    result = pytest_run(tmp_path, "tests/test_embedded.py", "-k", "test_missing_model_file", require=True,
                        hide="llama_cpp")
    assert result.returncode == 1 and "1 error" in result.stdout, result.stdout[-3000:]
    assert "the Python module llama_cpp (llama_cpp hidden by test_suite.py) is missing " \
           "(pip install 'illume[embedded]')" in result.stdout, result.stdout[-3000:]


SKIPS = re.compile(r"pytest\.skip\(|importorskip\(|mark\.skipif|mark\.skip\b|mark\.xfail")


def test_tests_ask_conftest_for_optional_parts():
    # A direct skip would pass silently in CI; conftest.missing fails there instead.
    found = [f"{path.name}:{number}: {line.strip()}"
             for path in sorted(HERE.glob("*.py")) if path.name not in (Path(__file__).name, "conftest.py")
             for number, line in enumerate(path.read_text().splitlines(), 1) if SKIPS.search(line)]
    assert found == [], "use conftest.missing, require_module or require_program:\n" + "\n".join(found)


def test_the_embedded_fit_tests_ask_for_the_model(tmp_path):
    # Without llama-cpp-python they once failed with illume's own SetupError, naming no part to install.
    result = pytest_run(tmp_path, "tests/test_fit.py", "-k", "embedded", require=True, hide="llama_cpp")
    assert result.returncode == 1 and "6 failed" in result.stdout, result.stdout[-3000:]
    # Counted in the failures alone: the short summary repeats the message in full where pytest sees CI.
    failures = result.stdout.partition("short test summary info")[0]
    assert failures.count("the Python module llama_cpp (llama_cpp hidden by test_suite.py) is missing "
                          "(pip install 'illume[embedded]')") == 6, result.stdout[-3000:]
