"""`illume --review`: suggestions grounded in the file, one a line (docs/rewrite.md, "Review").

The scripted server plays the quotes a small model will not make on
demand: invented, misquoted, quoted with other white space, found twice.
The real llama-server checks that whatever a real model says comes out as
lines that parse and point at text in the file.
"""

import json
import re

import pytest

from conftest import closed_url, run_illume
from scripted import Reply, chat_events

DOC = "Their is a problem here.\nWe was   going home.\n\nThe end. The end.\nCafé au lait, s'il vous plait.\n"

# FILE:LINE:COL: "QUOTE" -> "REPLACEMENT"[: MESSAGE]
LINE = re.compile(r'^(?P<file>.+?):(?P<line>[1-9]\d*):(?P<col>[1-9]\d*): (?P<rest>".*)$')


def parse(line: str) -> tuple[str, int, int, str, str, str]:
    """Return (file, line, column, quote, replacement, message) of a printed suggestion, as docs/rewrite.md reads it."""
    match = LINE.match(line)
    assert match, line
    decoder = json.JSONDecoder()
    rest = match["rest"]
    quote, end = decoder.raw_decode(rest)
    assert rest[end : end + 4] == " -> ", line
    replacement, end2 = decoder.raw_decode(rest, end + 4)
    tail = rest[end2:]
    assert tail == "" or tail.startswith(": "), line
    return match["file"], int(match["line"]), int(match["col"]), quote, replacement, tail[2:]


def at(text: str, line: int, col: int) -> int:
    """Return the character offset of LINE:COL (1-based, columns in characters) in TEXT."""
    return sum(len(x) + 1 for x in text.split("\n")[: line - 1]) + col - 1


def profile(tmp_path, url: str, *lines: str) -> str:
    path = tmp_path / "model.profile"
    path.write_text(f"!api {url}\n" + "".join(line + "\n" for line in lines))
    return str(path)


def suggesting(*items: dict) -> Reply:
    """Return a reply that makes the suggestions ITEMS, one JSON object a line, in pieces."""
    text = "".join(json.dumps(item) + "\n" for item in items)
    return Reply(chat_events([text[i : i + 7] for i in range(0, len(text), 7)]))


def s(quote, replacement, message="why"):
    return {"quote": quote, "replacement": replacement, "message": message}


def test_grounded_suggestions_print_where_the_text_is(server, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text(DOC)
    server.respond(suggesting(
        s("Their is", "There is", "wrong word"),
        s("We was going", "We were going", "agreement"),  # the file has three spaces: found all the same
        s("The end.", "The End.", "first"), s("The end.", "The End.", "second"),  # twice: each its own place
        s("s'il vous plait", "s'il vous plaît", "accent\non two lines"),
        s("This sentence is not there.", "x"),  # invented
        s("Their iz", "There is"),  # misquoted
        s("problem", "problem"),  # changes nothing
        s("Their is", "There is", "again"),  # the same change again
    ))
    result = run_illume("", "--review", "be strict", str(doc), "-p", profile(tmp_path, server.url))
    name = str(doc)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == [
        f'{name}:1:1: "Their is" -> "There is": wrong word',
        f'{name}:2:1: "We was   going" -> "We were going": agreement',
        f'{name}:4:1: "The end." -> "The End.": first',
        f'{name}:4:10: "The end." -> "The End.": second',
        f'{name}:5:15: "s\'il vous plait" -> "s\'il vous plaît": accent on two lines',
    ]
    assert result.stderr.decode().splitlines() == [
        f"illume: dropped 2 of 9 suggestions: their text is not in {name}",
        f"illume: dropped 1 of 9 suggestions for {name}: they change nothing",
        f"illume: dropped 1 of 9 suggestions for {name}: they repeat another",
    ]
    for line in result.stdout.decode().splitlines():
        file, number, col, quote, _, _ = parse(line)
        start = at(DOC, number, col)
        assert DOC[start : start + len(quote)] == quote
    sent = server.requests[-1].json()["messages"]
    assert sent[0]["content"].startswith("You review prose")  # the default job, `review`
    assert '{"quote": "...", "replacement": "...", "message": "..."}' in sent[0]["content"]
    assert sent[1]["content"] == "be strict\n\nReview this document, doc.txt:\n\n```\n" + DOC.rstrip("\n") + "\n```"


def test_a_schema_shaped_reply_and_stdin_with_a_file_name(server, tmp_path):
    server.respond(Reply(chat_events(['```json\n{"suggestions": [', json.dumps(s("going home", "going away")),
                                      "]}\n```\n"])))
    result = run_illume(DOC, "--review", "--file-name", "notes/a.txt", "-p", profile(tmp_path, server.url),
                        "-p", "review-code")
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == b'notes/a.txt:2:10: "going home" -> "going away": why\n'
    assert server.requests[-1].json()["messages"][0]["content"].startswith("You review code")


def test_stdin_is_named_stdin(server, tmp_path):
    server.respond(suggesting(s("problem", "trouble")))
    result = run_illume(DOC, "--review", "-p", profile(tmp_path, server.url))
    assert result.stdout == b'<stdin>:1:12: "problem" -> "trouble": why\n'


def test_arguments_that_name_files_are_files_and_double_dash_ends_the_instruction(server, tmp_path, monkeypatch):
    from illume.review import split_arguments

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "terse").write_text("y")
    assert split_arguments(["be", "terse", "a.txt"], None) == ("be", ["terse", "a.txt"])
    assert split_arguments(["be", "terse", "a.txt"], 1) == ("be terse", ["a.txt"])
    assert split_arguments(["make it shorter"], None) == ("make it shorter", [])
    from illume.errors import IllumeError

    with pytest.raises(IllumeError, match="no such file: typo.txt"):
        split_arguments(["typo.txt"], None)
    with pytest.raises(IllumeError, match="no such file: b.txt"):
        split_arguments(["x", "b.txt"], 1)


def test_failure_prints_no_suggestion_and_exits_1(tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text(DOC)
    key = "sk-secret-0123456789abcdef"
    result = run_illume("", "--review", str(doc), "-p", profile(tmp_path, closed_url(), f"!>authorization Bearer {key}"))
    assert (result.returncode, result.stdout) == (1, b"")
    assert result.stderr.startswith(f"illume: {doc}: cannot connect".encode()) and key.encode() not in result.stderr


def test_an_unreadable_file_fails_alone(server, tmp_path):
    good = tmp_path / "good.txt"
    good.write_text(DOC)
    server.respond(suggesting(s("problem", "trouble")))
    result = run_illume("", "--review", "--", str(good), str(tmp_path), "-p", profile(tmp_path, server.url))
    assert result.returncode == 1
    assert b"no such file" in result.stderr or b"cannot read" in result.stderr


def test_a_cut_reply_keeps_the_whole_suggestions_before_the_cut(server, tmp_path):
    text = json.dumps(s("problem", "trouble")) + '\n{"quote": "We was'
    server.respond(Reply([json.dumps({"choices": [{"delta": {"content": text}}]}),
                          json.dumps({"choices": [{"delta": {}, "finish_reason": "length"}]}), "[DONE]"]))
    result = run_illume(DOC, "--review", "-p", profile(tmp_path, server.url))
    assert (result.returncode, result.stdout) == (0, b'<stdin>:1:12: "problem" -> "trouble": why\n')
    assert b"stopped at the token limit" in result.stderr


PRINTED = [
    # (text, offset, quote printed): columns in characters, the quote a JSON string on one line
    ("ab\ncé x", 6, '"x"'),
    ("a\u2028b", 0, '"a\\u2028b"'),
    ("a\nb", 0, '"a\\nb"'),
    ("bad \udcff byte", 4, '"\\udcff"'),
]


@pytest.mark.parametrize("text, offset, printed", PRINTED)
def test_the_printed_line(text, offset, printed):
    from illume.review import Suggestion, line

    end = offset + len(json.loads(printed))
    shown = line("f", text, Suggestion(offset, end, "r", "m\x1b[31m"))
    number = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    assert shown == f'f:{number}:{col}: {printed} -> "r": m[31m'
    assert shown.encode("utf-8")  # no lone surrogate left: the line is UTF-8


GROUND = [
    # (quote, expected span or None)
    ("is a", (6, 10)),
    ("is\na", (6, 10)),  # other white space
    ("  is   a  ", (6, 10)),
    ("is an", None),
    ("   ", None),
]


@pytest.mark.parametrize("quote, span", GROUND)
def test_ground(quote, span):
    from illume.review import ground

    text = "Their is a problem"
    assert ground(text, quote, 0, len(text), set()) == span


@pytest.mark.server
def test_real_server_review_lines_point_at_text_in_the_file(llama_server, tmp_path):
    doc = tmp_path / "doc.txt"
    text = "I has a cat.\nShe go to school.\n\n" + DOC
    doc.write_text(text)
    path = profile(tmp_path, llama_server, "!:temperature 0", "!:seed 42", "!:max_tokens 400", "!:cache_prompt false")
    result = run_illume("", "--review", str(doc), "-p", path, "-p", "review-json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    counted = re.findall(rb"dropped (\d+) of (\d+)", result.stderr)
    offered = int(counted[0][1]) if counted else len(lines)
    assert offered > 0, "the model made no suggestion: the check below would prove nothing"
    for line in lines:
        file, number, col, quote, _, _ = parse(line)
        assert file == str(doc)
        start = at(text, number, col)
        assert text[start : start + len(quote)] == quote
