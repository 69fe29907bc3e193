"""Opt-in infill extras: `!:n_indent auto`, `!:input_extra auto`, and repository-level templates."""

import json

import pytest

from illume import buffer as buf
from illume.request import build, hole_indent


def request_for(text: str, env=None):
    env = env or {}
    return build(buf.parse(text, buf.Sources(env)), env)


@pytest.fixture
def util(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "util.py").write_text("def helper():\n    return 2\n")
    return "util.py"


@pytest.mark.parametrize("prefix, suffix, indent", [
    ("def norm(v):", "    return r", 4),
    ("def f():\n    x = 1", "", 4),
    ("int main() {", "\n\n\t\treturn 0;\n}", 2),
    ("x = 1", "print(x)", 0),
    ("", "", 0),
])
def test_hole_indent(prefix, suffix, indent):
    assert hole_indent(prefix, suffix) == indent


def test_n_indent_auto_is_computed():
    request = request_for("!:n_indent auto\ndef norm(v):\n!infill\n    return r\n")
    assert request.body["n_indent"] == 4


def test_input_extra_auto_moves_context_files_out_of_the_prefix(util):
    request = request_for(f"!:input_extra auto\n!context {util}\ndef f():\n!infill\n    return r\n")
    assert request.url.endswith("/infill")
    assert request.body["input_prefix"] == "def f():\n"
    assert request.body["input_extra"] == [{"filename": "util.py", "text": "def helper():\n    return 2\n"}]
    assert b'"input_extra":[{"filename":"util.py","text":' in b"".join(request.body_pieces())


def test_without_auto_the_body_is_the_originals(util):
    request = request_for(f"!context {util}\ndef f():\n!infill\n    return r\n")
    assert "input_extra" not in request.body and "n_indent" not in request.body
    assert request.body["input_prefix"].startswith("**`util.py`**\n```\ndef helper():")


def test_repository_template_gets_the_files(util):
    request = request_for(f"!profile fim:qwen-repo\n!context {util}\ndef f():\n!infill\n    return r\n")
    assert request.url.endswith("/completions")
    assert "input_extra" not in request.body
    assert request.body["prompt"] == (
        "<|repo_name|>repo\n<|file_sep|>util.py\ndef helper():\n    return 2\n\n<|file_sep|>"
        "<|fim_prefix|>def f():\n<|fim_suffix|>\n    return r<|fim_middle|>")
    json.loads(b"".join(request.body_pieces()))
