"""Heavy imports stay lazy: what a run imports is checked, not how long it takes (bench/ measures that)."""

import os
import subprocess
import sys

import pytest

from conftest import REPO

HEAVY = ("httpx", "httpcore", "jinja2", "llama_cpp")


def imported(args: list[str], stdin: bytes) -> set[str]:
    # Without proxies: a proxy sends even a local request through httpx.
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "illume", *args], input=stdin,
                            capture_output=True, cwd=REPO, timeout=60, env=env)
    names = set()
    for line in result.stderr.decode().splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "illume" in names, result.stderr[-500:]
    return names


@pytest.mark.parametrize("args, stdin", [
    (["--version"], b""),
    ([], b"!debug\n!user\nhi\n"),
    ([], b"!profile fim:codellama\n!debug\n!infill <PRE>{prefix}<SUF>{suffix}<MID>\ndef f():\n!infill\n  pass\n"),
], ids=["version", "debug", "one-line-template"])
def test_no_heavy_imports_without_a_request(args, stdin):
    assert imported(args, stdin).isdisjoint(HEAVY)


def test_jinja_only_when_a_jinja_template_is_rendered():
    names = imported([], b"!profile fim:qwen\n!debug\ndef f():\n!infill\n  pass\n")
    assert "jinja2" in names
    assert "httpx" not in names and "llama_cpp" not in names


def test_a_plain_http_request_imports_no_http_library(server):
    # httpx and httpcore cost about 50 ms: plain http:// goes over the standard library's http.client.
    names = imported([], f"!api {server.url}\n!user\nhi\n".encode())
    assert len(server.requests) == 1
    assert names.isdisjoint(HEAVY)


def test_debug_imports_no_decimal():
    # Only a float such as 1e-05 needs decimal to be written out in Go's form.
    assert "decimal" not in imported([], b"!debug\n!:temperature 0.2\n!user\nhi\n")
