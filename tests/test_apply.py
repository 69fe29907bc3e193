"""`illume --apply`: exactly the quoted text changes, each file whole or not at all (docs/rewrite.md, "Apply")."""

import json
import os
import stat

import pytest

from conftest import run_illume
from scripted import Reply, chat_events

DOC = "Their is a problem here.\r\nWe was going home.\n\nThe end. The end.\nCafé \xff\n"  # a CRLF; \xff: a byte not UTF-8


def doc(tmp_path, name="doc.txt"):
    path = tmp_path / name
    path.write_bytes(DOC.replace("\xff\n", "").encode() + b"\xff\n")
    return path


def suggestion(file, line, col, quote, replacement, message="why"):
    return f"{file}:{line}:{col}: {json.dumps(quote)} -> {json.dumps(replacement)}: {message}\n"


def apply(tmp_path, lines: str, *extra: str, stdin: bool = False):
    path = tmp_path / "kept.txt"
    path.write_text(lines)
    if stdin:
        return run_illume(lines, "--apply", *extra, cwd=tmp_path)
    return run_illume("", "--apply", str(path), *extra, cwd=tmp_path)


@pytest.fixture(autouse=True)
def _cwd_run(monkeypatch):
    """run_illume with a working folder: --apply reads names relative to it."""
    import subprocess
    import sys

    import conftest

    def run(buffer, *args, cwd=None, env=None, timeout=120):
        data = buffer.encode() if isinstance(buffer, str) else buffer
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("ILLUME_")}
        full_env["PYTHONPATH"] = conftest.REPO
        return subprocess.run([sys.executable, "-m", "illume", *args], input=data, capture_output=True,
                              env=full_env, timeout=timeout, cwd=cwd or conftest.REPO)

    globals()["run_illume"] = run
    yield


def test_exactly_the_quoted_text_changes(tmp_path):
    path = doc(tmp_path)
    path.chmod(0o640)
    before = path.read_bytes()
    lines = (suggestion("doc.txt", 1, 1, "Their is", "There is") + "\n# a comment\n"
             + suggestion("doc.txt", 4, 10, "The end.", "Fin.")
             + suggestion("doc.txt", 2, 4, "was going", "were going"))
    result = apply(tmp_path, lines)
    assert (result.returncode, result.stdout) == (0, b""), result.stderr
    assert result.stderr == b"illume: doc.txt: applied 3 suggestions\n"
    assert path.read_bytes() == (before.replace(b"Their is", b"There is").replace(b"was going", b"were going")
                                 .replace(b"The end. The end.", b"The end. Fin."))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_a_file_changed_since_the_review_is_refused_whole(tmp_path):
    path = doc(tmp_path)
    before = path.read_bytes()
    other = doc(tmp_path, "other.txt")
    lines = (suggestion("doc.txt", 1, 1, "Their is", "There is") + suggestion("doc.txt", 4, 1, "The start.", "x")
             + suggestion("other.txt", 1, 1, "Their", "There"))
    result = apply(tmp_path, lines)
    assert result.returncode == 1
    assert path.read_bytes() == before  # the good suggestion for doc.txt was not applied either
    assert other.read_bytes().startswith(b"There is")
    assert result.stderr.decode().splitlines() == [
        'illume: doc.txt: it changed since the review: 4:1 no longer holds "The start."; the file was left as it was',
        "illume: other.txt: applied 1 suggestion",
    ]


@pytest.mark.parametrize("lines, words", [
    (suggestion("doc.txt", 1, 1, "Their is", "A") + suggestion("doc.txt", 1, 7, "is a", "B"), "overlap"),
    (suggestion("doc.txt", 9, 1, "Their", "A"), "no longer holds"),
    (suggestion("doc.txt", 1, 99, "Their", "A"), "no longer holds"),
    (suggestion("/etc/passwd", 1, 1, "root", "x"), "outside the current folder"),
    (suggestion("../doc.txt", 1, 1, "Their", "x"), "outside the current folder"),
    (suggestion("<stdin>", 1, 1, "Their", "x"), "standard input"),
    (suggestion("missing.txt", 1, 1, "Their", "x"), "cannot read it"),
], ids=["overlap", "no-such-line", "no-such-column", "absolute", "dot-dot", "stdin", "missing"])
def test_refusals_leave_the_file_alone(tmp_path, lines, words):
    path = doc(tmp_path)
    before = path.read_bytes()
    result = apply(tmp_path, lines)
    assert result.returncode == 1 and words in result.stderr.decode(), result.stderr
    assert path.read_bytes() == before


def test_a_link_out_of_the_folder_is_refused_unless_named(tmp_path):
    outside = doc(tmp_path, "outside.txt")
    here = tmp_path / "here"
    here.mkdir()
    (here / "link.txt").symlink_to(outside)
    lines = suggestion("link.txt", 1, 1, "Their", "There")
    (here / "kept.txt").write_text(lines)
    result = run_illume("", "--apply", "kept.txt", cwd=here)
    assert result.returncode == 1 and b"outside the current folder" in result.stderr
    result = run_illume("", "--apply", "kept.txt", "link.txt", cwd=here)
    assert result.returncode == 0, result.stderr
    assert outside.read_bytes().startswith(b"There is") and (here / "link.txt").is_symlink()


def test_only_the_files_named_after_the_suggestions_change(tmp_path):
    one, two = doc(tmp_path, "one.txt"), doc(tmp_path, "two.txt")
    lines = suggestion("one.txt", 1, 1, "Their", "There") + suggestion("two.txt", 1, 1, "Their", "There")
    result = apply(tmp_path, lines, "two.txt")
    assert result.returncode == 1 and b"one.txt: not among the files named" in result.stderr
    assert one.read_bytes().startswith(b"Their") and two.read_bytes().startswith(b"There")


@pytest.mark.parametrize("bad", ["doc.txt:1:1: Their -> There", 'doc.txt:1: "Their" -> "There"',
                                 'doc.txt:1:1: "Their" "There"', 'doc.txt:1:1: "Their" -> "There" and more',
                                 'doc.txt:0:1: "Their" -> "There"', 'doc.txt:1:1: "" -> "x"'])
def test_a_line_that_is_no_suggestion_refuses_them_all(tmp_path, bad):
    path = doc(tmp_path)
    before = path.read_bytes()
    result = apply(tmp_path, suggestion("doc.txt", 1, 1, "Their", "There") + bad + "\n")
    assert result.returncode == 1 and b"line 2 is not a suggestion" in result.stderr, result.stderr
    assert path.read_bytes() == before


def test_from_standard_input_and_non_utf8_bytes_round_trip(tmp_path):
    path = doc(tmp_path)
    result = apply(tmp_path, suggestion("doc.txt", 5, 6, "\udcff", "!"), stdin=True)
    assert result.returncode == 0, result.stderr
    assert path.read_bytes().endswith("Café !\n".encode())


def test_review_then_apply(server, tmp_path):
    """What --review prints, --apply applies: the pair agrees on lines, columns and quotes."""
    path = doc(tmp_path)
    before = path.read_bytes()
    items = [{"quote": "The end.", "replacement": "Fin.", "message": "a"},
             {"quote": "The end.", "replacement": "Fin.", "message": "b"},
             {"quote": "Café", "replacement": "Coffee", "message": "c"},
             {"quote": "was going home", "replacement": "went home", "message": "d"}]
    server.respond(Reply(chat_events(["".join(json.dumps(i) + "\n" for i in items)])))
    profile = tmp_path / "m.profile"
    profile.write_text(f"!api {server.url}\n")
    reviewed = run_illume("", "--review", "doc.txt", "-p", str(profile), cwd=tmp_path)
    assert reviewed.returncode == 0, reviewed.stderr
    assert len(reviewed.stdout.splitlines()) == 4
    result = run_illume(reviewed.stdout, "--apply", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert path.read_bytes() == (before.replace(b"The end. The end.", b"Fin. Fin.").replace("Café".encode(), b"Coffee")
                                 .replace(b"was going home", b"went home"))
