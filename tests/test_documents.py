"""Inserted documents (docs/documents.md): `!context` files and folders, `!reddit`, `!reddit!`, `!github`."""

import json

import pytest

from illume import buffer, documents
from illume.errors import IllumeError

pytestmark = pytest.mark.usefixtures("in_tmp")  # conftest: each test in an empty folder of its own


def fenced(name: str, text: str) -> str:
    """Return TEXT fenced under NAME, as `!context` puts a file in the prompt."""
    return "".join(documents.fenced_parts(name, text))


def context(arguments: list[str]) -> tuple[str, list[dict]]:
    """Return the text that `!context ARGUMENTS` puts in the prompt, and the files in it."""
    parts, files = documents.context_parts(arguments)
    return "".join(parts), files


def write(path, content: str | bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode())
    return path


def user_text(text: str) -> str:
    """Return the text of the one message that the buffer TEXT makes."""
    parsed = buffer.parse(text, buffer.Sources({}))
    assert len(parsed.messages) == 1
    return parsed.messages[0].content


FENCES = [
    # (file text, as inserted)
    ("hello\n", "**`f`**\n```\nhello\n```\n\n"),
    ("hello", "**`f`**\n```\nhello\n```\n\n"),  # a newline is added before the closing fence
    ("a\n\n", "**`f`**\n```\na\n\n```\n\n"),
    ("", "**`f`**\n```\n```\n\n"),  # an empty file: the closing fence already starts a line
    ("x\r\n", "**`f`**\n```\nx\r\n```\n\n"),
    ("```py\ncode\n```\n", "**`f`**\n````\n```py\ncode\n```\n````\n\n"),
    ("````\n`\n", "**`f`**\n`````\n````\n`\n`````\n\n"),
    ("a ```` b\n", "**`f`**\n```\na ```` b\n```\n\n"),  # only runs that start a line count
    ("  ````\n", "**`f`**\n```\n  ````\n```\n\n"),
    ("``\n", "**`f`**\n```\n``\n```\n\n"),
    ("x\n```", "**`f`**\n````\nx\n```\n````\n\n"),
]


@pytest.mark.parametrize("text, expected", FENCES)
def test_fenced(text, expected):
    assert fenced("f", text) == expected


def test_context_file_in_place(in_tmp):
    write(in_tmp / "notes.md", "hello\n")
    assert user_text("!user\nLook:\n!context notes.md\nThanks\n") == (
        "Look:\n**`notes.md`**\n```\nhello\n```\n\nThanks")


def test_context_file_named_as_written(in_tmp):
    write(in_tmp / "sub/notes.md", "x")
    assert user_text("!user\n!context   ./sub/notes.md  \n") == "**`./sub/notes.md`**\n```\nx\n```"


@pytest.fixture
def proj(in_tmp):
    for name in ["a.py", "b.txt", "sub/c.py", "sub/d.md", "z.py", "sub/deeper/e.py"]:
        write(in_tmp / "proj" / name, name + "\n")
    return in_tmp / "proj"


def block(name: str, text: str) -> str:
    return f"**`{name}`**\n```\n{text}\n```\n\n"


FOLDERS = [
    # (arguments of !context, (name, file) in the order inserted)
    ("proj .py", [("proj/a.py", "a.py"), ("proj/sub/c.py", "sub/c.py"), ("proj/sub/deeper/e.py", "sub/deeper/e.py"),
                  ("proj/z.py", "z.py")]),
    ("proj/ .py", [("a.py", "a.py"), ("sub/c.py", "sub/c.py"), ("sub/deeper/e.py", "sub/deeper/e.py"),
                   ("z.py", "z.py")]),
    ("./proj .py", [("proj/a.py", "a.py"), ("proj/sub/c.py", "sub/c.py"), ("proj/sub/deeper/e.py", "sub/deeper/e.py"),
                    ("proj/z.py", "z.py")]),
    ("proj/sub .md .txt", [("sub/d.md", "sub/d.md")]),
    ("proj .md .txt", [("proj/b.txt", "b.txt"), ("proj/sub/d.md", "sub/d.md")]),
    ("proj .py py", [("proj/a.py", "a.py"), ("proj/sub/c.py", "sub/c.py"), ("proj/sub/deeper/e.py", "sub/deeper/e.py"),
                     ("proj/z.py", "z.py")]),  # a file matching two suffixes comes once
    ("proj sub/c.py", [("proj/sub/c.py", "sub/c.py")]),  # the suffix is matched against the whole path
    ("proj/a.py .py", [("a.py", "a.py")]),  # DIR may name a file
]


@pytest.mark.parametrize("arguments, files", FOLDERS)
def test_context_folder(proj, arguments, files):
    expected = "".join(block(name, path) for name, path in files).strip("\n")
    assert user_text(f"!user\n!context {arguments}\n") == expected


def test_context_returns_the_files_for_input_extra(proj):
    text, files = context(["proj/", ".md"])
    assert (text, files) == (block("sub/d.md", "sub/d.md"), [{"filename": "sub/d.md", "text": "sub/d.md\n"}])


def test_context_keeps_invalid_utf8_as_surrogate_escapes(in_tmp):
    write(in_tmp / "bin.txt", b"caf\xe9\n")
    assert context(["bin.txt"])[0] == "**`bin.txt`**\n```\ncaf\udce9\n```\n\n"


CONTEXT_ERRORS = [
    (["missing.txt"], "open missing.txt: no such file or directory"),
    (["proj"], "read proj: is a directory"),
    (["proj", ".zz"], "!context: no file under proj ends with .zz"),
    (["proj", ".zz", ".yy"], "!context: no file under proj ends with .zz or .yy"),
    (["nowhere", ".py"], "lstat nowhere: no such file or directory"),
    ([], "!context: wrong number of fields"),
]


@pytest.mark.parametrize("arguments, message", CONTEXT_ERRORS)
def test_context_errors(proj, arguments, message):
    with pytest.raises(IllumeError) as caught:
        context(arguments)
    assert str(caught.value) == message


def test_binary_file_is_refused(in_tmp):
    write(in_tmp / "blob", b"a\0b")
    with pytest.raises(IllumeError) as caught:
        context(["blob"])
    assert str(caught.value) == "blob: binary file (it holds NUL bytes)"


def listing(*children) -> dict:
    return {"kind": "Listing", "data": {"children": list(children)}}


def comment(author: str, body: str, *replies) -> dict:
    return {"kind": "t1", "data": {"author": author, "body": body, "replies": listing(*replies) if replies else ""}}


THREAD = [
    listing({"kind": "t3", "data": {"title": "Title", "author": "op", "subreddit": "sub",
                                    "selftext": "Body\nline two", "body": ""}}),
    listing(
        comment("a", "top\n\nsecond\r\n", comment("b", "reply", comment("c", "deep"))),
        comment("d", "another"),
        {"kind": "more", "data": {"children": []}},
    ),
]

POST = "# Reddit Post\n\nTitle\nby u/op in r/sub\n---\nBody\nline two\n---\n"
COMMENTS = ("\nu/a:\n> top\n> \n> second\n"
            "\n> u/b:\n>> reply\n"
            "\n>> u/c:\n>>> deep\n"
            "\nu/d:\n> another\n"
            "\nu/:\n"
            "---\n")

REDDIT = [
    # (directive, thread, inserted text)
    ("!reddit", THREAD, POST + COMMENTS),
    ("!reddit!", THREAD, POST),
    ("!reddit", THREAD[:1], POST),
    ("!reddit", [listing({"data": {"title": "T"}})], "# Reddit Post\n\nT\nby u/ in r/\n---\n\n---\n"),
]


@pytest.mark.parametrize("directive, thread, expected", REDDIT)
def test_reddit(in_tmp, directive, thread, expected):
    write(in_tmp / "thread.json", json.dumps(thread))
    assert documents.reddit("thread.json", directive == "!reddit") == expected
    assert user_text(f"!user\nSummarize:\n{directive} thread.json \n") == ("Summarize:\n" + expected).strip("\n")


@pytest.mark.parametrize("content", ["not json", "[]", "{}", "[1]"])
def test_reddit_not_a_thread(in_tmp, content):
    write(in_tmp / "bad.json", content)
    with pytest.raises(IllumeError) as caught:
        documents.reddit("bad.json", True)
    assert str(caught.value).startswith("failed to parse JSON: bad.json")


ISSUE = {"html_url": "https://github.com/o/r/issues/1", "title": "It breaks", "user": {"login": "alice"},
         "body": "Steps:\r\n1. run"}
COMMENTS_1 = [{"user": {"login": "bob"}, "body": "Me too.\r\n\r\nSame here."}]
COMMENTS_2 = [{"user": {"login": "carol"}, "body": "Fixed"}, {"user": {"login": "dave"}, "body": ""}]
ISSUE_TEXT = "---\nhttps://github.com/o/r/issues/1\nIt breaks\nby @alice\n\nSteps:\r\n1. run\n"

GITHUB = [
    # (files, inserted text)
    ([ISSUE], ISSUE_TEXT + "---\n"),
    ([ISSUE, COMMENTS_1], ISSUE_TEXT + "\n@bob:\n> Me too.\n> \n> Same here.\n---\n"),
    ([ISSUE, COMMENTS_1, COMMENTS_2],
     ISSUE_TEXT + "\n@bob:\n> Me too.\n> \n> Same here.\n\n@carol:\n> Fixed\n\n@dave:\n---\n"),
    ([{"title": "T", "body": None, "user": None}], "---\n\nT\nby @\n\n\n---\n"),
]


@pytest.mark.parametrize("files, expected", GITHUB)
def test_github(in_tmp, files, expected):
    paths = []
    for i, content in enumerate(files):
        write(in_tmp / f"{i}.json", json.dumps(content))
        paths.append(f"{i}.json")
    assert documents.github(paths) == expected
    assert user_text("!user\n!github  " + "  ".join(paths) + "\n") == expected.strip("\n")


@pytest.mark.parametrize("issue, comments, message", [
    ("[]", "[]", "failed to parse JSON: 0.json (not a GitHub issue)"),
    ("nope", "[]", "failed to parse JSON: 0.json"),
    ("{}", "{}", "failed to parse JSON: 1.json (not a list of GitHub comments)"),
])
def test_github_errors(in_tmp, issue, comments, message):
    write(in_tmp / "0.json", issue)
    write(in_tmp / "1.json", comments)
    with pytest.raises(IllumeError) as caught:
        documents.github(["0.json", "1.json"])
    assert str(caught.value) == message
