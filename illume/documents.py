"""Documents inserted into a message: files (`!context`), Reddit threads, GitHub issues.

Each function returns the text to insert (docs/documents.md); failures raise
DocumentError with a message in the original's words ("open x: no such
file or directory"), which the buffer parser locates by line.
"""

import errno
import json
import os
import re
import stat

from illume.errors import DocumentError
from illume.names import shown

# A file past this size is almost surely a mistake (a log, a dump, a model):
# refuse it rather than build a request no server will take.
MAX_FILE_BYTES = 64 * 1024 * 1024


def _os_message(op: str, path: str, error: OSError) -> str:
    # Go prints syscall errors in lower case: "open x: no such file or directory".
    reason = os.strerror(error.errno) if error.errno else str(error)
    return f"{op} {shown(path)}: {reason[:1].lower()}{reason[1:]}"


def read_text(path: str) -> str:
    """Return the text of the file at PATH, its invalid UTF-8 bytes kept as surrogate escapes."""
    try:
        # Non-blocking, so that a FIFO cannot hang the open; it is refused below.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise DocumentError(_os_message("open", path, e)) from None
    except ValueError:  # a NUL in the name: Go's open gets EINVAL from the system
        raise DocumentError(_os_message("open", path, OSError(errno.EINVAL, ""))) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise DocumentError(_os_message("read", path, IsADirectoryError(errno.EISDIR, "")))
        if not stat.S_ISREG(info.st_mode):
            # A FIFO, socket or device may block or never end (/dev/zero).
            raise DocumentError(f"{shown(path)}: not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise DocumentError(f"{shown(path)}: file too large ({info.st_size} bytes, the limit is {MAX_FILE_BYTES})")
        with open(fd, "rb", closefd=False) as f:
            data = f.read()
    except OSError as e:
        raise DocumentError(_os_message("read", path, e)) from None
    finally:
        os.close(fd)
    return data.decode("utf-8", "surrogateescape")


def _context_text(path: str) -> str:
    """Return the text of the `!context` file at PATH; raise DocumentError for a binary file.

    The original would send a NUL byte as `\\u0000`; a file that holds one is
    an image, an archive or a build product, which no model can read.
    """
    text = read_text(path)
    if "\0" in text:
        raise DocumentError(f"{shown(path)}: binary file (it holds NUL bytes)")
    return text


# Runs of backticks that start a line (found without splitting a big file into lines).
_LEADING_BACKTICKS = re.compile(r"^`+", re.MULTILINE)


def fenced_parts(name: str, text: str) -> list[str]:
    """Return TEXT under a bold NAME inside a fence that no line of it can close, in pieces.

    TEXT itself is one of the pieces rather than copied.
    """
    longest = max((len(run) for run in _LEADING_BACKTICKS.findall(text)), default=0)
    fence = "`" * (max(longest, 2) + 1)
    # The closing fence must start a line; an empty file leaves it there already.
    newline = "" if not text or text.endswith("\n") else "\n"
    return [f"**`{name}`**\n{fence}\n", text, f"{newline}{fence}\n\n"]


def context_parts(arguments: list[str]) -> tuple[list[str], list[dict]]:
    """Return the text of `!context FILE` or `!context DIR SUFFIX...` in pieces, and the files in it.

    ARGUMENTS are the words after the directive; each file comes back as
    `{"filename": NAME, "text": TEXT}` too, for llama.cpp's `input_extra`.
    The text is in pieces so that a big file is not copied into a second string.
    """
    if not arguments:
        raise DocumentError("!context: wrong number of fields")
    if len(arguments) == 1:
        path = arguments[0]
        text = _context_text(path)
        return fenced_parts(path, text), [{"filename": path, "text": text}]

    directory, suffixes = arguments[0], arguments[1:]
    # The last element of DIR names the files unless DIR ends with a slash.
    cut = len(directory)
    while cut > 0 and directory[cut - 1] not in "/\\":
        cut -= 1
    label = directory[cut:]
    parts = []
    files = []
    for path, relative in _walk(directory):
        if path.endswith(tuple(suffixes)):
            if relative is None:
                name = label  # DIR named a file
            elif label in ("", "."):
                name = relative
            else:
                name = f"{label}/{relative}"
            text = _context_text(path)
            parts.extend(fenced_parts(name, text))
            files.append({"filename": name, "text": text})
    if not parts:
        raise DocumentError(f"!context: no file under {shown(directory)} ends with {' or '.join(suffixes)}")
    return parts, files


def _walk(directory: str):
    """Yield (path, path relative to DIRECTORY) of every file below it, in lexical order.

    A DIRECTORY that is a file yields itself, with None for its relative path.

    Like Go's filepath.Walk: names sorted per directory, symbolic links not
    followed into directories.
    """
    try:
        info = os.lstat(directory)
    except OSError as e:
        raise DocumentError(_os_message("lstat", directory, e)) from None
    except ValueError:  # a NUL in the name
        raise DocumentError(_os_message("lstat", directory, OSError(errno.EINVAL, ""))) from None
    if not stat.S_ISDIR(info.st_mode):
        yield directory, None
        return
    yield from _walk_below(directory, "", 0)


# Folders nested deeper than this under a `!context DIR` are an error, not a
# RecursionError: no source tree comes near it, a crafted one can.
MAX_DEPTH = 100


def _walk_below(directory: str, relative: str, depth: int):
    if depth > MAX_DEPTH:
        raise DocumentError(f"!context: folders nested more than {MAX_DEPTH} deep under {shown(directory[:200])}")
    try:
        names = sorted(os.listdir(directory), key=os.fsencode)  # by bytes, as Go sorts
    except OSError as e:
        raise DocumentError(_os_message("open", directory, e)) from None
    for name in names:
        path = os.path.join(directory, name)
        inner = f"{relative}/{name}" if relative else name
        try:
            mode = os.lstat(path).st_mode
        except OSError as e:
            if e.errno == errno.ENOENT:
                continue  # vanished while we walked
            raise DocumentError(_os_message("lstat", path, e)) from None
        if stat.S_ISDIR(mode):
            yield from _walk_below(path, inner, depth + 1)
        else:
            yield path, inner


def _lines(text: str) -> list[str]:
    """Return TEXT's lines as Go's bufio.Scanner reads them: no final empty line, no trailing CR."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _load_json(path: str):
    # Go's decoder reads each byte that is not UTF-8 as U+FFFD itself.
    text = _ESCAPED_BYTE.sub("\ufffd", read_text(path))
    try:
        return json.loads(text)
    except ValueError:
        raise DocumentError(f"failed to parse JSON: {shown(path)}") from None


_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _field(data, key: str) -> str:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, str) else ""


def _data(thing) -> dict:
    data = thing.get("data") if isinstance(thing, dict) else None
    return data if isinstance(data, dict) else {}


def _children(listing) -> list:
    children = _data(listing).get("children")
    return children if isinstance(children, list) else []


def reddit(path: str, with_comments: bool) -> str:
    """Return the Reddit thread exported as JSON at PATH: the post, and its comments if asked."""
    thread = _load_json(path)
    if not isinstance(thread, list) or not thread or not _children(thread[0]):
        raise DocumentError(f"failed to parse JSON: {shown(path)} (not a Reddit thread export)")
    post = _data(_children(thread[0])[0])
    out = [
        "# Reddit Post\n\n",
        f"{_field(post, 'title')}\n",
        f"by u/{_field(post, 'author')} in r/{_field(post, 'subreddit')}\n",
        f"---\n{_field(post, 'selftext')}\n---\n",
    ]
    if with_comments and len(thread) > 1:
        _comments(out, 1, _children(thread[1]))
        out.append("---\n")
    return "".join(out)


def _quote(depth: int) -> str:
    return ">" * depth + " " if depth > 0 else ""


def _comments(out: list, depth: int, comments: list) -> None:
    for comment in comments:
        data = _data(comment)
        out.append(f"\n{_quote(depth - 1)}u/{_field(data, 'author')}:\n")
        for line in _lines(_field(data, "body")):
            out.append(f"{_quote(depth)}{line}\n")
        replies = data.get("replies")
        if isinstance(replies, dict):
            _comments(out, depth + 1, _children(replies))


def github(paths: list[str]) -> str:
    """Return a GitHub issue (API JSON at PATHS[0]) and its comments (API JSON lists at the rest)."""
    if not paths:
        raise DocumentError("!github requires at least one argument")
    issue = _load_json(paths[0])
    if not isinstance(issue, dict):
        raise DocumentError(f"failed to parse JSON: {shown(paths[0])} (not a GitHub issue)")
    out = [
        "---\n",
        f"{_field(issue, 'html_url')}\n",
        f"{_field(issue, 'title')}\n",
        f"by @{_field(issue.get('user'), 'login')}\n\n",
        f"{_field(issue, 'body')}\n",
    ]
    for path in paths[1:]:
        comments = _load_json(path)
        if not isinstance(comments, list):
            raise DocumentError(f"failed to parse JSON: {shown(path)} (not a list of GitHub comments)")
        for comment in comments:
            if not isinstance(comment, dict):
                continue
            out.append(f"\n@{_field(comment.get('user'), 'login')}:\n")
            out.extend(f"> {line}\n" for line in _lines(_field(comment, "body")))
    out.append("---\n")
    return "".join(out)
