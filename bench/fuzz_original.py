"""Differential fuzz: random buffers through the original Go Illume and through illume.

    .venv/bin/python bench/fuzz_original.py --original /path/to/illume-go --seeds 1 2 3 --count 1000

Each buffer is drawn from the buffer language's grammar (every directive,
CR/LF mixes, control characters, unicode, JSON of every shape, `$VAR`
expansion, `{key}` and quoted URLs, URL credentials and dot segments,
`!context`/`!profile`/`!reddit`/`!github` fixtures with odd names and
contents) and run by both programs, one after the other, in the same fresh
directory and environment, against the same scripted server on 127.0.0.1
that records each request and answers a fixed event stream. Compared: the
request (method, target, headers, body as bytes and as JSON), stdout and the
exit status. Differences that the README lists as deliberate are counted
apart, each under its own label; any other difference is printed, with the
buffer, and saved under --keep.

Not a test (CI has no Go): a tool to run by hand, see bench/FUZZ.md.
Nothing leaves the loopback interface.
"""

import argparse
import ast
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import unquote_to_bytes

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from illume.jsonwire import encode, parse_value  # noqa: E402
from illume.secrets import mask, shown_url  # noqa: E402

# --- the scripted server --------------------------------------------------

EVENTS = [
    {"choices": [{"delta": {"content": "<|channel|>"}}]},
    {"choices": [{"delta": {"content": "analysis"}}]},
    {"choices": [{"delta": {"content": "<|message|>"}}]},
    {"choices": [{"delta": {"content": "Think \u00e9\u2028"}}]},
    {"choices": [{"delta": {"content": "<|end|>"}}]},
    {"choices": [{"delta": {"content": "<|start|>"}}]},
    {"choices": [{"delta": {"content": "assistant"}}]},
    {"choices": [{"delta": {"content": "<|channel|>"}}]},
    {"choices": [{"delta": {"content": "final"}}]},
    {"choices": [{"delta": {"content": "<|message|>"}}]},
    {"choices": [{"delta": {"content": "Hi \U0001F600 <b>&"}}]},
    {"choices": [{"text": " there"}]},
    {"content": "!\n!user"},
]
STREAM = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in EVENTS) + b"data: [DONE]\n\n"


class Recorder:
    """A loopback HTTP/1.1 server that records every request and answers STREAM."""

    def __init__(self):
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def take(self) -> list[dict]:
        with self.lock:
            taken, self.requests = self.requests, []
        return taken

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        conn.settimeout(10)
        try:
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    more = conn.recv(65536)
                    if not more:
                        return
                    data += more
                head, _, rest = data.partition(b"\r\n\r\n")
                request_line, *lines = head.split(b"\r\n")
                headers = []
                for line in lines:
                    name, _, value = line.partition(b":")
                    # The space after the colon is the writer's; any after the value is compared.
                    value = value.lstrip(b" \t")
                    headers.append((name.decode("latin-1").lower(), value.decode("utf-8", "replace")))
                found = dict(headers)
                if found.get("expect", "").lower() == "100-continue":
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                if "chunked" in found.get("transfer-encoding", "").lower():
                    body = b""
                    while True:
                        while b"\r\n" not in rest:
                            rest += conn.recv(65536)
                        size_line, _, rest = rest.partition(b"\r\n")
                        size = int(size_line.split(b";")[0], 16)
                        while len(rest) < size + 2:
                            rest += conn.recv(65536)
                        body += rest[:size]
                        rest = rest[size + 2:]
                        if size == 0:
                            break
                else:
                    length = int(found.get("content-length", "0") or 0)
                    while len(rest) < length:
                        more = conn.recv(65536)
                        if not more:
                            break
                        rest += more
                    body = rest[:length]
                method, target, _ = request_line.decode("latin-1").split(" ", 2)
                with self.lock:
                    self.requests.append({"method": method, "target": target, "headers": headers, "body": body})
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n" + STREAM)
        except (OSError, ValueError):
            pass


# --- the grammar ------------------------------------------------------------

# Every character that Python's str.isspace and Go's unicode.IsSpace disagree on, and some they agree on.
SPACES = [" ", "\t", "\v", "\f", "\r", "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\xa0", "\u1680", "\u2000",
          "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u200b", "\ufeff", "\x00", "\x7f"]
WORDS = ["hello", "world", "é", "日本語", "\U0001F600", "<think>", "</think>", "`", "```", "````", "!user",
         "{model}", "$KEY", "\\", '"', "'", "<", ">", "&", "\u2028", "\x1c", "\x1f", "\x01", "\x7f", "\x00",
         "\xff", "\udced\udca0\udc80", "\udcff", "a b", "\t", "\r"]
KEYS = ["temperature", "top_k", "max_tokens", "stop", "model", "stream", "messages", "prompt", "seed",
        "cache_prompt", "é", "\U0001F600", "\uffff", "\udcff", "\udcc3", "a b", "A", "Z", "_", "~", "k\t1",
        "n_predict", "\x7f", "x{", "}", "\x1c"]
HEADER_NAMES = ["authorization", "x-api-key", "x-custom", "user-agent", "host", "content-length",
                "transfer-encoding", "connection", "accept", "accept-encoding", "content-type", "trailer",
                "te", "expect", "keep-alive", "proxy-connection", "upgrade", "x-use-cache", "anthropic-version",
                "cookie", "x_under", "a:b", "é", "x-\x1c"]
ENV = {"KEY": "sk-1234567890abcdef", "SPACEY": "  padded  ", "TABBY": "\tx\t", "EMPTY": "", "UNI": "é\u00a0",
       "CTRL": "a\x01b", "NL": "a\nb", "MODEL": "m/x", "SLASHES": "/a/../b"}
VARS = ["$KEY", "${KEY}", "$UNSET", "${UNSET}", "$SPACEY", "$TABBY", "$EMPTY", "$UNI", "$CTRL", "$NL", "$",
        "$$", "${}", "${", "$1", "$*", "${KEY", "$MODEL", "$SLASHES", "${#}", "$-x", "$KEY$UNSET"]
PROFILE_NAMES = ["qwen3", "qwen3-think", "qwen3-instruct", "gemma-3", "gpt-oss", "fim:qwen", "fim:granite",
                 "fim:mistral", "fim:codellama", "fim:deepseek", "fim:granite4", "llama.cpp"]


def pick(r: random.Random, items):
    return items[r.randrange(len(items))]


def spaces(r: random.Random) -> str:
    return "".join(pick(r, SPACES) for _ in range(r.choice([0, 0, 0, 1, 1, 2])))


def text(r: random.Random, words: int | None = None) -> str:
    n = r.randint(0, 5) if words is None else words
    return "".join(pick(r, WORDS) + r.choice([" ", "", "  "]) for _ in range(n))


def json_number(r: random.Random) -> str:
    return pick(r, ["0", "-0", "1", "2000", "0.7", "1e21", "1e20", "1.5e-7", "1E+2", "123456789012345678901234",
                    "1e400", "-1e-400", "0.1", "3.0", "-12", "01", ".5", "1.", "+1", "0x10", "NaN", "Infinity",
                    "1e", "5e-324", "1.7976931348623157e308", "100000000000000000000", "0.000001",
                    "0.0000001", "2.5e+06"])


def json_string(r: random.Random) -> str:
    body = pick(r, ["", "a", "<|im_end|>", "\\n", "\\u2028", "\\ud800", "\\ud83d\\ude00", "\\udc00x",
                    "é", "\U0001F600", "\\\"", "\\/", "\\t", "<>&", "\\u0000", "\xff", "\x1c", "\\x",
                    "\x01", "\t", "\u2028", "\\uD834\\uDD1E", "\\u00e9"])
    return f'"{body}"'


def json_value(r: random.Random, depth: int = 0) -> str:
    kind = r.randrange(10 if depth < 3 else 6)
    if kind == 0:
        return json_number(r)
    if kind == 1:
        return json_string(r)
    if kind == 2:
        return pick(r, ["true", "false", "null", "True", "nul", "[]", "{}", "[1,]", "{\"a\":1,}", "'a'"])
    if kind in (3, 4, 5):
        word = pick(r, ["x", "hello world", "a\"b", "[1", "{", "]", "\U0001F600", "1 2"])
        return word
    if kind in (6, 7):
        items = [json_value(r, depth + 1) for _ in range(r.randint(0, 3))]
        return "[" + pick(r, [",", ", ", " , "]).join(items) + "]"
    if kind == 8:
        pairs = [f'{json_string(r) if r.random() < 0.5 else json.dumps(pick(r, KEYS))}:{json_value(r, depth + 1)}'
                 for _ in range(r.randint(0, 3))]
        return "{" + ",".join(pairs) + "}"
    levels = pick(r, [10, 500, 700, 1000, 3000, 9999, 10000, 10001, 20000])
    opener, closer = pick(r, [("[", "]"), ('{"a":', "}"), ("[{\"b\":", "}]")])
    inner = pick(r, ["1", "[]", '"x"', ""])
    if opener == "[{\"b\":":
        levels //= 2
    return opener * levels + inner + closer * levels * (1 if r.random() < 0.9 else 0)


def header_value(r: random.Random) -> str:
    parts = []
    odd = ["\x1c", "\x01", "\x7f", "$CTRL", "$NL"] if r.random() < 0.1 else []
    for _ in range(r.randint(1, 3)):
        parts.append(pick(r, ["Bearer", "x", "Basic abc", "close", "keep-alive", "chunked", "5", "0",
                              "127.0.0.1", "example.com", "gzip", "identity", "100-continue", "é", "a  b",
                              "\U0001F600", "\xff", "h2c", "trailers", "upgrade", "text/plain", "*/*",
                              "illume-test/1"] + [v for v in VARS if v not in ("$CTRL", "$NL")] + odd))
    return pick(r, [" ", "", "\t"]).join(parts) if r.random() < 0.5 else " ".join(parts)


class Case:
    """One generated buffer: its bytes and the fixtures it names."""

    def __init__(self, seed: int, index: int, port: int):
        self.r = random.Random(f"{seed}:{index}")
        self.port = port
        self.files: dict[str, bytes] = {}  # relative path -> contents
        self.notes: set[str] = set()  # facts the classifier needs
        self.lines: list[str] = []
        self.generate()

    # fixtures
    def fixture_file(self) -> str:
        r = self.r
        name = pick(r, ["a.md", "b.txt", "é.md", "dir/x.md", "spaced\u3000name.md", "x\x1cy.md", "n\xa0b.md",
                        "\U0001F600.md", "tick.md", "crlf.md", "nul.md", "bad.md", "empty.md"])
        content = {
            "tick.md": b"```\ncode\n````\n`x\n", "crlf.md": b"one\r\ntwo\r\n", "nul.md": b"a\x00b\n",
            "bad.md": b"\xff\xfe bytes\n", "empty.md": b"",
        }.get(name.split("/")[-1], None)
        if content is None:
            content = pick(r, [b"text\n", b"no newline", b"\n\n", b"!user\n!api x\n", "é\u2028\n".encode(),
                               b"\r", b"``\n`\n"])
        self.files[name] = content
        if b"\0" in content:
            self.notes.add("nul")
        return name

    def fixture_dir(self) -> str:
        r = self.r
        root = pick(r, ["ctx", "proj", "é"])
        for rel, data in [("a.md", b"A\n"), ("sub/b.md", b"B"), ("sub/c.txt", b"C\n"), ("z.py", b"print(1)\n"),
                          ("sub/deeper/d.md", b"```\nD\n"), ("\U0001F600.md", b"E\n"), ("Z.md", b"F\n"),
                          ("\xe9.md", b"G\n"), ("e\u0301.md", b"H\n")]:
            if r.random() < 0.7:
                self.files[f"{root}/{rel}"] = data
        return root

    def fixture_profile(self) -> str:
        r = self.r
        name = pick(r, ["p.profile", "my", "dir/q.profile", "x\x1c.profile"])
        body = [self.directive(depth=1) for _ in range(r.randint(0, 5))]
        eol = pick(r, ["\n", "\r\n"])
        self.files[name] = (eol.join(body) + pick(r, ["", eol])).encode("utf-8", "surrogateescape")
        return name

    def reddit_fixture(self) -> str:
        thread = [{"data": {"children": [{"data": {"title": "T\u2028", "author": "au", "subreddit": "sr",
                                                   "selftext": "self\r\ntext"}}]}},
                  {"data": {"children": [{"data": {"author": "c1", "body": "one\ntwo\r\n",
                                                   "replies": {"data": {"children": [
                                                       {"data": {"author": "c2", "body": "deep"}}]}}}}]}}]
        self.files["thread.json"] = json.dumps(thread).encode()
        return "thread.json"

    def github_fixture(self) -> list[str]:
        self.files["issue.json"] = json.dumps({"html_url": "https://x/1", "title": "Bug", "user": {"login": "me"},
                                               "body": "text\r\nmore"}).encode()
        self.files["comments.json"] = json.dumps([{"user": {"login": "you"}, "body": "a\n\nb"}]).encode()
        return ["issue.json", "comments.json"][: self.r.randint(1, 2)]

    # lines
    def url(self) -> str:
        r = self.r
        host = f"127.0.0.1:{self.port}"
        path = pick(r, ["/", "", "/v1", "/v1/", "/a/../v1/", "/./x/", "/a/./b/../c", "/{model}/v1", "/%41/",
                        "/%2f/", "/a b/", "/é/", "/a%zz/", "/?q=1", "/#frag", "/x?a=b&c", "/;p", "/a\"b/",
                        "/[x]/", "/a|b/", "/{seed}/", "/..", "/.", "//double", "/\x1c", "/a\tb", "/?q=é",
                        "/\udcff/", "/?q=\udcfe", "/#frag\x7f", "/#%zz", "/a%20b/"])
        auth = pick(r, ["", "", "", "user:secret@", "user@", "u%40x:p%3Aw@", ":pw@"])
        if auth:
            self.notes.add("credentials")
        scheme = pick(r, ["http://", "http://", "HTTP://"])
        url = scheme + auth + host + path
        if r.random() < 0.15:
            url = f'"{url}{pick(r, ["chat/completions", "", "/completions"])}"'
        return url

    def directive(self, depth: int = 0) -> str:
        r = self.r
        kind = r.randrange(30)
        s = spaces
        if kind < 4:
            return f"!:{pick(r, KEYS)} {s(r)}{json_value(r)}{s(r)}" if r.random() < 0.9 else f"!:{pick(r, KEYS)}{pick(r, ['', ' ', '  '])}"
        if kind < 7:
            name = pick(r, HEADER_NAMES)
            value = header_value(r) if r.random() < 0.85 else ""
            return f"!>{name} {s(r)}{value}{s(r)}"
        if kind == 7:
            return f"!api {s(r)}{self.url()}{s(r)}"
        if kind == 8 and depth == 0:
            return f"!profile {s(r)}{pick(r, PROFILE_NAMES) if r.random() < 0.5 else self.fixture_profile()}{s(r)}"
        if kind == 9:
            if r.random() < 0.5:
                return f"!context {s(r)}{self.fixture_file()}{s(r)}"
            root = self.fixture_dir()
            root = pick(r, [root, root + "/", "./" + root, root + "//", root + "/./sub", "."]) if r.random() < 0.5 else root
            suffixes = " ".join(pick(r, [".md", ".txt", ".py", "md", "b.md", ".MD"]) for _ in range(r.randint(1, 3)))
            return f"!context{pick(r, [' ', '  ', chr(9)])}{root} {suffixes}{s(r)}"
        if kind == 10:
            if r.random() < 0.15:
                self.files["broken.json"] = pick(r, [b"{", b"[]", b"{}", b"[{}]", b'[{"data":{"children":[]}}]', b"null"])
                return pick(r, ["!reddit broken.json", "!reddit! broken.json", "!github broken.json",
                                "!github issue.json broken.json", "!reddit missing.json", "!github"])
            return pick(r, [f"!reddit {self.reddit_fixture()}", f"!reddit! {self.reddit_fixture()}",
                            "!github " + " ".join(self.github_fixture())])
        if kind == 11:
            return f"!exclude {pick(r, ['think', 'x', ' think', 'think '])}"
        if kind == 12:
            return pick(r, ["<think>", "</think>", "<x>", "</x>", "<think> ", "<think>\r"])
        if kind == 13:
            return pick(r, ["!begin", "!end", "!begin x", "!note hi", "!stats", "!gpt-oss", "!completion",
                            "!thinking hide", "!thinking show", "!thinking x", "!prices 1 0.5 2", "!prices x"])
        if kind == 14:
            return pick(r, ['!prepend "<think>\\n"', "!prepend raw ", '!prepend "bad', '!prepend "\\ud800"',
                            "!prepend", '!prepend ""', '!prepend "a" b', "!prepend \u2028x"])
        if kind == 15:
            return pick(r, ["!infill", "!infill <|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>",
                            "!infill  <PRE> {prefix} <SUF>{suffix} <MID>", "!infill {prefix}{missing}",
                            "!infill [SUFFIX]{suffix}[PREFIX]{prefix}", "!infill {prefix"])
        if kind < 20:
            return pick(r, ["!user", "!assistant", "!user x", "!assistant\r", "!system", "!!user", "!!", "!",
                            "!unknown arg", "!user\x1c", "!debug x"] + (["!error"] if r.random() < 0.1 else []))
        return text(r)

    def generate(self) -> None:
        r = self.r
        self.env: dict[str, str] = {}
        if r.random() < 0.1:
            self.env["ILLUME_PROFILE"] = pick(r, ["qwen3", "gemma-3", "fim:qwen", "llama.cpp", "missing"])
        if r.random() < 0.3:
            self.lines.append("!debug")
            self.notes.add("debug")
        if r.random() < 0.9:
            self.lines.append(f"!api {self.url()}")
        for _ in range(r.randint(0, 14)):
            self.lines.append(self.directive())
        if r.random() < 0.6:
            self.lines += ["!user", text(r, 3)]
        eol = pick(r, ["\n", "\n", "\r\n", None])
        if eol is None:
            self.buffer = "".join(line + pick(r, ["\n", "\r\n", "\r\n"]) for line in self.lines)
        else:
            self.buffer = eol.join(self.lines) + pick(r, ["", eol])

    def data(self) -> bytes:
        return self.buffer.encode("utf-8", "surrogateescape")

    def write_fixtures(self, root: Path) -> None:
        for rel, data in self.files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


# --- running and comparing ---------------------------------------------------

def run(argv: list[str], case: Case, cwd: Path, env: dict) -> tuple[int, bytes, bytes]:
    try:
        done = subprocess.run(argv, input=case.data(), capture_output=True, cwd=cwd, env=env, timeout=30)
        return done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired:
        return -1, b"", b"timeout"


# illume's `!note used ...` after it (README) comes only from a server that says what a reply used.
_STATS = re.compile(rb"\n\n!note [^\n]* tok/s, (\d+) toks, [^\n]*(\n\n!note used [^\n]*)?$")
_DEBUG = re.compile(rb"^\n\nPOST (.*) HTTP/1\.1\n((?:.*\n)*?)\n(.*)\n(\n?)$", re.S)


def normal_stdout(out: bytes) -> bytes:
    return _STATS.sub(rb"\n\n!note R tok/s, \1 toks, T", out)


def debug_parts(out: bytes):
    match = _DEBUG.match(out)
    if not match:
        return None
    url, headers, body, _ = match.groups()
    lines = headers.split(b"\n")[:-1] if headers else []
    return url, sorted(lines), body


def same_debug(go: bytes, py: bytes) -> bool:
    """Whether two !debug dry runs agree: headers in any order (Go's map order), secrets masked by illume."""
    a, b = debug_parts(go), debug_parts(py)
    if not a or not b:
        return False
    # illume masks a URL's password and key-like parts in a dry run (README: secrets).
    url_same = a[0] == b[0] or shown_url(a[0].decode("utf-8", "surrogateescape")) == b[0].decode("utf-8", "surrogateescape") \
        or _without_userinfo(a[0]) == _without_userinfo(b[0]) or b"***" in b[0]  # masked: README, secrets
    if not url_same or a[2] != b[2] or len(a[1]) != len(b[1]):
        return False
    masked = []
    for line in a[1]:
        name, _, value = line.decode("utf-8", "surrogateescape").partition(": ")
        masked.append({line, f"{name}: {mask(value)}".encode("utf-8", "surrogateescape"), f"{name}: ***".encode()})
    remaining = list(b[1])
    for options in masked:
        name = next(iter(options)).partition(b": ")[0]
        hit = next((x for x in remaining if x in options), None) or \
            next((x for x in remaining if x.startswith(name + b": ") and b"***" in x), None)  # masked
        if hit is None:
            return False
        remaining.remove(hit)
    return True


def _without_profile_text(data: bytes) -> bytes:
    """DATA without the qwen3 profile's text where the original appends it: a prompt's or an infill suffix's end."""
    return data.replace(b'\\n/no_think"', b'"').replace(b'"prompt":"/no_think"', b'"prompt":""')


def _without_userinfo(url: bytes) -> bytes:
    """Return URL with its user:password@ cut and its scheme in lower case, for comparing masked dry runs."""
    scheme, sep, rest = url.partition(b"://")
    return scheme.lower() + sep + re.sub(rb"^[^/@]*@", b"", rest)


# What each HTTP library sends when the request sets nothing: legitimately different, not compared.
LIBRARY_DEFAULTS = {
    "user-agent": re.compile(r"Go-http-client/1\.1|python-httpx/[0-9.]+|illume/[0-9.]+"),
    "accept-encoding": re.compile(r"gzip|gzip, deflate(, br)?(, zstd)?"),
    "accept": re.compile(r"\*/\*"),
    "connection": re.compile(r"keep-alive"),
}


def request_view(req: dict) -> dict:
    headers = {}
    for name, value in req["headers"]:
        default = LIBRARY_DEFAULTS.get(name)
        if default and default.fullmatch(value):
            continue
        headers.setdefault(name, []).append(value)
    try:
        parsed = parse_value(req["body"].decode("utf-8", "surrogateescape"))
    except ValueError:
        parsed = None
    return {"method": req["method"], "target": req["target"], "headers": headers, "body": req["body"],
            "json": parsed}


# Go before 1.22 escapes U+0008 and U+000C in JSON as \u0008 and \u000c; later Go, and illume, as \b and \f.
_OLD_ESCAPES = re.compile(rb"(?<!\\)((?:\\\\)*)\\u00(08|0c)")
OLD_GO = False  # set by main() when the original was built with such a Go


def modern_escapes(data: bytes) -> bytes:
    if not OLD_GO:
        return data
    return _OLD_ESCAPES.sub(lambda m: m.group(1) + (b"\\b" if m.group(2) == b"08" else b"\\f"), data)


def modernised(reqs: list[dict]) -> list[dict]:
    out = []
    for req in reqs:
        body = modern_escapes(req["body"])
        headers = [(n, str(len(body)) if n == "content-length" and v == str(len(req["body"])) else v)
                   for n, v in req["headers"]]
        out.append(dict(req, body=body, headers=headers))
    return out


def compare(case: Case, go, py) -> list[str]:
    """Return the differences between the original's run GO and illume's run PY (empty: the same)."""
    (g_status, g_out, _, g_reqs), (p_status, p_out, p_err, p_reqs) = go, py
    g_out, g_reqs = modern_escapes(g_out), modernised(g_reqs)
    problems = []
    if b"Traceback" in p_err or b"failed unexpectedly" in p_out:
        problems.append("illume crashed")
    if g_status != p_status:
        problems.append(f"status go={g_status} illume={p_status}")
    if len(g_reqs) != len(p_reqs):
        problems.append(f"requests go={len(g_reqs)} illume={len(p_reqs)}")
    for g, p in zip(g_reqs, p_reqs):
        gv, pv = request_view(g), request_view(p)
        if gv["body"] != pv["body"]:
            problems.append("request body as JSON: " + ("the same" if encode(gv["json"]) == encode(pv["json"]) else "different"))
        for field in ("method", "target", "headers", "body"):
            if gv[field] != pv[field]:
                problems.append(f"request {field}: go={gv[field]!r} illume={pv[field]!r}"[:2000])
    # The stream's last text, "!\n!user", is a directive line: illume prints it escaped, "!!user" (README).
    g_norm, p_norm = normal_stdout(g_out), normal_stdout(p_out.replace(b"!\n!!user", b"!\n!user"))
    if g_norm != p_norm:
        if g_norm.startswith(b"\n\nPOST ") and g_status == p_status == 0 and same_debug(g_norm, p_norm):
            pass
        elif g_status == p_status == 1 and g_out.startswith(b"\n\n!error\n\n") and p_out.startswith(b"\n\n!error\n\n") \
                and (b'\n\n!error\n\nPost "' in g_out or b"\n\n!error\n\nparse " in g_out) and not g_reqs and not p_reqs:
            pass  # the request could not be sent: illume words it its own way (README)
        else:
            problems.append(f"stdout: go={g_out[:1500]!r} illume={p_out[:1500]!r}")
    return problems


def go_context_name(directory: str, path: str) -> str:
    """Return the name the original gives PATH under `!context DIRECTORY`: Walk's cleaned path less len(DIR)."""
    cut = len(directory)
    while cut > 0 and directory[cut - 1] not in "/\\":
        cut -= 1
    return path[cut:]


# A name illume printed as a Python string literal because it holds \r or \n (illume/names.py).
QUOTED_NAME = re.compile(rb"'(?:[^'\\\n]|\\.)*\\[rn](?:[^'\\\n]|\\.)*'")


def _names_read_back(out: bytes) -> bytes:
    """Return OUT with each quoted name illume printed read back to the bytes the original prints as they are."""
    return QUOTED_NAME.sub(lambda m: ast.literal_eval(m.group().decode("utf-8", "surrogateescape"))
                           .encode("utf-8", "surrogateescape"), out)


def documented(case: Case, go, py, problems: list[str]) -> str | None:
    """Return the README's name for the deliberate difference that explains PROBLEMS, or None."""
    (g_status, g_out, g_err, g_reqs), (p_status, p_out, _, p_reqs) = go, py
    if "illume crashed" in problems:
        return None
    shown = g_out.replace(b"\x00", b"^@").replace(b"\x1b", b"^[")
    if shown != g_out and not compare(case, (g_status, shown, g_err, g_reqs), py):
        return "NUL and ESC are printed in caret notation, ^@ and ^["
    # The buffer's lines and those of the profiles it may load.
    lines = "\n".join([case.buffer] + [data.decode("utf-8", "surrogateescape") for name, data in case.files.items()
                                       if not name.endswith((".md", ".txt", ".py", ".json"))])
    lines = lines.replace("\r\n", "\n").split("\n")
    if p_out.startswith(b"\n") and normal_stdout(p_out[1:].replace(b"!\n!!user", b"!\n!user")) == normal_stdout(g_out):
        return "a reply never acts as a directive: after a directive line a completion starts a line of its own"
    if problems and all(p.startswith("request headers:") for p in problems) and len(g_reqs) == len(p_reqs) and all(
            request_view(_user_agent_trimmed(g))["headers"] == request_view(p)["headers"]
            for g, p in zip(modernised(g_reqs), p_reqs)):
        return "a header value's white space never goes on the wire (Go 1.19 sent User-Agent's)"
    if case.env.get("ILLUME_PROFILE") == "qwen3" and b"/no_think" in p_out + b"".join(r["body"] for r in p_reqs):
        return "the default profile's text goes at the top as the system prompt"
    without_chat = any(line.startswith(("!completion", "!infill")) for line in lines)
    if case.env.get("ILLUME_PROFILE") == "qwen3" and without_chat and (
            g_reqs and [_without_profile_text(r["body"]) for r in g_reqs] == [r["body"] for r in p_reqs]
            or not g_reqs and same_debug(_without_profile_text(g_out), p_out)):
        return "the default profile's text goes at the top as the system prompt"  # none in these modes: left out
    if g_status == 2 and b"panic:" in g_err:
        return "the original crashes (Go panic): illume does not"
    if g_status == p_status and _names_read_back(p_out) == g_out:
        return "a name that holds a line break is printed as a Python string literal"
    if p_status == 1 and re.search(rb"!error\n\n<stdin>:\d+: !>.*: (a header value cannot hold|not a valid header name)|"
                                   rb"!error\n\n[^\n]*:\d+: !>.*: (a header value cannot hold|not a valid header name)",
                                   p_out):
        return "header value with a control character / bad header name: error at its line"
    if any(line.startswith("!>") and line[2:].split(" ", 1)[0].lower() == "content-type" and line[2:].split(" ", 1)[0] != "content-type"
           for line in lines):
        return "header names are case-insensitive"
    if g_reqs and p_reqs and g_reqs[0]["target"] != p_reqs[0]["target"] and "?" in p_reqs[0]["target"] and \
            unquote_to_bytes(g_reqs[0]["target"].encode("latin-1")) == unquote_to_bytes(p_reqs[0]["target"]):
        return "a query's spaces and non-ASCII bytes are sent percent-encoded"
    if "nul" in case.notes and b"binary file" in p_out:
        return "a !context file with a NUL byte is refused as binary"
    if re.search(rb"no file under .* ends with", p_out):
        return "!context DIR matching no file is an error"
    if re.search(rb"already split|cannot fill in the middle in completion mode|there is no text to complete", p_out):
        return "!infill twice / with !completion: an error"
    ctx = [line.split()[1] for line in lines if line.startswith("!context") and len(line.split()) > 2]
    if any(os.path.normpath(d) + ("/" if d.endswith("/") else "") != d and os.path.normpath(d) != d.rstrip("/")
           or d.endswith("//") for d in ctx if "/" in d or d.startswith(".")):
        if any(b"**`" in out for out in (g_out, p_out)) or g_reqs:
            return "!context DIR not in clean form: illume names files by their path under DIR"
    if any(line.startswith("!context") for line in lines) and _unterminated_context(case):
        return "a !context file that does not end in a newline gets one before the closing fence"
    if any(line.startswith(("!reddit", "!github")) for line in lines) and p_status == 1:
        return "a !reddit/!github file that is not the JSON it should be is an error"
    if any(re.fullmatch(r"!infill\r?", line) for line in lines) and (
            _empty_prefix(case) or any(line.split(" ")[0].rstrip("\r") in ("!user", "!assistant", "!begin")
                                       for line in lines)):
        # The original takes its first two messages, wherever they are; illume the text on either side of !infill.
        return "infill: the prefix and suffix are the texts right before and after !infill"
    everything = g_out + b"".join(r["body"] for r in g_reqs), p_out + b"".join(r["body"] for r in p_reqs)
    if any(line.startswith("!exclude") for line in lines) and \
            b'"cache_prompt":true' in everything[1] and b'"cache_prompt":true' not in everything[0]:
        return "an !exclude block left open does not swallow the default profile"
    go_url = g_out.split(b" HTTP/1.1\n")[0][len(b"\n\nPOST "):] if g_out.startswith(b"\n\nPOST ") else b""
    if re.search(r"\{[^}]*\}", " ".join(line for line in lines if line.startswith("!api"))) and (
            b"invalid control character in URL" in g_out or b"\n" in go_url):
        return "a non-string {key} in !api is its compact JSON"
    if any(line.rstrip("\r") == "!error" for line in lines):
        return "an !error section is not sent"
    if any(line.partition(" ")[0] in ("!thinking", "!prices") for line in lines):
        return "`!thinking` and `!prices` are directives of illume's own"
    if any(line.split(" ", 1)[0].rstrip("\r") in ("!summary", "!summarize") for line in lines):
        return "!summary and !summarize are directives of illume's own"
    return None


def _user_agent_trimmed(request: dict) -> dict:
    """Return REQUEST with its User-Agent value trimmed, as Go after 1.19 writes it (net/http, Request.write)."""
    headers = [(n, v.strip(" \t") if n == "user-agent" else v) for n, v in request["headers"]]
    return dict(request, headers=headers)


def _unterminated_context(case: Case) -> bool:
    return any(data and not data.endswith(b"\n") for data in case.files.values())


def _empty_prefix(case: Case) -> bool:
    """Whether the message before the first bare !infill has no text (the original then shifts the parts)."""
    lines = case.buffer.replace("\r\n", "\n").split("\n")
    prefix = []
    for line in lines:
        word = line.split(" ", 1)[0]
        if word == "!infill" and not line[len("!infill "):]:
            break
        if word in ("!begin", "!user", "!assistant"):
            prefix = []
        elif not line.startswith("!") or word in ("!context", "!reddit", "!reddit!", "!github") or \
                line.startswith("!!"):
            prefix.append(line)
    return not any(line.strip("\r\n") for line in prefix)


def environment(home: Path) -> dict:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
           "XDG_CONFIG_HOME": str(home / ".config"), "NO_PROXY": "*"}
    env.update(ENV)
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", required=True, help="path of the original Go illume binary")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--count", type=int, default=300, help="buffers per seed")
    parser.add_argument("--time-limit", type=float, default=1800, help="stop after this many seconds")
    parser.add_argument("--keep", type=Path, help="save each undocumented difference here")
    parser.add_argument("--show", type=int, default=5, help="print this many undocumented differences")
    parser.add_argument("--only", type=int, help="run only this index (with one seed)")
    parser.add_argument("--error-kinds", action="store_true", help="count the original's errors by their start")
    args = parser.parse_args()
    original = str(Path(args.original).resolve())
    global OLD_GO
    probe = subprocess.run([original], input=b'!debug\n!:k "\\f"\n', capture_output=True).stdout
    OLD_GO = b"\\u000c" in probe
    if OLD_GO:
        print("the original was built with Go before 1.22: its \\u0008 and \\u000c are read as \\b and \\f")
    illume = [sys.executable, "-m", "illume"]
    server = Recorder()
    started = time.monotonic()
    totals = Counter()
    labels = Counter()
    error_kinds = Counter()
    shown = 0
    for seed in args.seeds:
        indexes = [args.only] if args.only is not None else range(args.count)
        for index in indexes:
            if time.monotonic() - started > args.time_limit:
                break
            case = Case(seed, index, server.port)
            results = []
            with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
                home = Path(tmp) / "home"
                home.mkdir()
                env = environment(home)
                env["PYTHONPATH"] = str(REPO)
                env.update(case.env)
                for argv in ([original], illume):
                    work = Path(tmp) / ("go" if argv == [original] else "py")
                    work.mkdir()
                    case.write_fixtures(work)
                    server.take()
                    status, out, err = run(argv, case, work, env)
                    time.sleep(0.01)
                    results.append((status, out, err, server.take()))
            problems = compare(case, *results)
            totals["buffers"] += 1
            go_status, go_out, _, go_requests = results[0]
            totals["sent"] += bool(go_requests)
            totals["dry runs"] += go_status == 0 and go_out.startswith(b"\n\nPOST ")
            totals["errors"] += go_status != 0
            if go_status != 0 and args.error_kinds:
                kind = re.sub(rb"<stdin>:\d+: |[0-9]+", b"", go_out.split(b"!error\n\n")[-1])[:40]
                error_kinds[kind] += 1
            if not problems:
                totals["same"] += 1
                continue
            label = documented(case, *results, problems)
            if label:
                totals["documented"] += 1
                labels[label] += 1
                continue
            totals["undocumented"] += 1
            if shown < args.show:
                shown += 1
                print(f"--- seed {seed} index {index}\nbuffer: {case.buffer[:1500]!r}\nfiles: {list(case.files)}")
                for problem in problems:
                    print("  " + problem)
                print(f"  go stderr: {results[0][2][-300:]!r}\n  illume stderr: {results[1][2][-300:]!r}")
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                (args.keep / f"{seed}-{index}.buffer").write_bytes(case.data())
                (args.keep / f"{seed}-{index}.txt").write_text("\n".join(problems))
    elapsed = time.monotonic() - started
    print(f"\nseeds {args.seeds}, {totals['buffers']} buffers in {elapsed:.0f} s: {totals['same']} the same, "
          f"{totals['documented']} documented differences, {totals['undocumented']} undocumented")
    print(f"the original: {totals['sent']} requests sent, {totals['dry runs']} !debug dry runs, "
          f"{totals['errors']} errors")
    for label, n in labels.most_common():
        print(f"  {n:5d}  {label}")
    for kind, n in error_kinds.most_common(15):
        print(f"  {n:5d}  the original failed: {kind!r}")
    return 1 if totals["undocumented"] else 0


if __name__ == "__main__":
    sys.exit(main())
