"""Review with planted errors, and a rewrite's whole-process time against the same request as a plain chat.

On texts nobody here wrote, shipped with Python itself: the prose of the
Python Language Reference's "Exceptions" section (`pydoc_data.topics`,
under the PSF licence) and the code of the standard library's `bisect.py`.
Errors are planted at known places (PROSE_ERRORS, CODE_ERRORS: each an
original text and the planted one, planted once). `illume --review` runs
on each planted file against a real llama-server on each model given, and
this script reports, per model:

- found: the share of planted errors that a printed suggestion's quote
  covers (its span overlaps the planted text), and fixed: the share whose
  suggestion, applied, gives back the original text there;
- grounded: the share of printed lines whose QUOTE is in the file at
  LINE:COL (illume's promise: 100%), and how many of the model's
  suggestions illume dropped as not in the file.

Then the time of `illume --rewrite INSTRUCTION < text` against `illume <
buffer` for a buffer whose request is byte for byte the rewrite's
(checked with --debug), whole process, ROUNDS rounds interleaved: the
difference is what the rewrite adds (counting tokens, unwrapping).

Dry runs (`--debug`, no reply generated) are timed the same way, the
difference then being the rewrite's own work without the generation's noise.

Usage: python bench/rewrite.py [--model PATH]... [--no-review] [ROUNDS]
"""

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import realserver  # noqa: E402

PROSE_ERRORS = [
    ("the normal flow", "teh normal flow"),
    ("An exception is *raised*", "An exception are *raised*"),
    ("the error occurred", "the error occured"),
    ("error (such as division by zero)", "error (such as divison by zero)"),
    ("can also\nexplicitly raise", "can also\nexplicit raise"),
    ("Exception\nhandlers are specified", "Exception\nhandlers is specified"),
    ("it cannot repair", "it can not repairs"),
    ("the interpreter terminates", "the the interpreter terminates"),
    ("Their contents\n  may change", "There contents\n  may change"),
    ("should not be relied on", "should not be relied"),
]

CODE_ERRORS = [
    ("    if lo < 0:\n        raise ValueError('lo must be non-negative')",
     "    if lo > 0:\n        raise ValueError('lo must be non-negative')"),
    ("            if x < a[mid]:\n                hi = mid", "            if x < a[mid]:\n                lo = mid"),
    ("                lo = mid + 1\n    else:", "                lo = mid - 1\n    else:"),
    ("            mid = (lo + hi) // 2\n            if x < key(a[mid]):",
     "            mid = (lo + hi) / 2\n            if x < key(a[mid]):"),
    ("    return lo\n", "    return hi\n"),
]

_LINE = re.compile(r"(.+?):([1-9][0-9]*):([1-9][0-9]*): (\".*)")


def plant(text: str, errors) -> tuple[str, list[tuple[int, int, str]]]:
    """Return TEXT with ERRORS planted, and (start, end, original) of each planted span in the result."""
    spans = []
    for original, planted in errors:
        assert text.count(original) >= 1, original
        at = text.index(original)
        text = text[:at] + planted + text[at + len(original) :]
        spans = [(s + len(planted) - len(original), e + len(planted) - len(original), o) if s > at else (s, e, o)
                 for s, e, o in spans]
        spans.append((at, at + len(planted), original))
    return text, spans


def parse(line: str):
    match = _LINE.fullmatch(line)
    decoder = json.JSONDecoder()
    rest = match[4]
    quote, end = decoder.raw_decode(rest)
    replacement, _ = decoder.raw_decode(rest, end + 4)
    return int(match[2]), int(match[3]), quote, replacement


def offset(text: str, line: int, col: int) -> int:
    return sum(len(x) + 1 for x in text.split("\n")[: line - 1]) + col - 1


def illume(*args: str, stdin: bytes = b"", cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "illume", *args], input=stdin, capture_output=True, cwd=cwd,
                          timeout=900)


def review_score(name: str, text: str, spans, profiles: list[str], folder: Path) -> dict:
    path = folder / name
    path.write_text(text)
    result = illume("--review", *profiles, "--", str(path))
    lines = result.stdout.decode().splitlines()
    grounded = found = fixed = 0
    hits = set()
    for line in lines:
        number, col, quote, replacement = parse(line)
        start = offset(text, number, col)
        if text[start : start + len(quote)] != quote:
            continue
        grounded += 1
        end = start + len(quote)
        for i, (s, e, original) in enumerate(spans):
            if start < e and s < end:
                hits.add(i)
                patched = text[:start] + replacement + text[end:]
                if original in patched[max(0, s - 40) : e + 40 + len(replacement)]:
                    fixed += 1
    found = len(hits)
    dropped = re.findall(rb"dropped (\d+) of (\d+) suggestions: their text", result.stderr)
    offered = re.findall(rb"dropped \d+ of (\d+)", result.stderr)
    return {"status": result.returncode, "lines": len(lines), "grounded": grounded, "found": found,
            "fixed": min(fixed, found), "planted": len(spans), "not_in_file": int(dropped[0][0]) if dropped else 0,
            "offered": int(offered[0]) if offered else len(lines), "stderr": result.stderr.decode().strip()}


def timing(profile: str, rounds: int, folder: Path) -> dict:
    """Return the whole-process times of a rewrite and of the same request as a chat, ROUNDS each, interleaved.

    PROFILE caps the reply at a few tokens, which a small model always
    reaches: both then generate the same tokens, and the rewrite, cut at
    the limit, gives its input back (exit 1) after the same work.
    """
    text = "Their is a problem.\n"
    instruction = "fix the grammar"
    dry = illume("--rewrite", instruction, "-p", profile, "--debug", stdin=text.encode())
    body = json.loads(dry.stdout.decode().split("\n\n", 3)[2])
    system, user = body["messages"]
    escape = lambda content: "".join(("!" + line if line.startswith("!") else line) + "\n" for line in content.split("\n"))  # noqa: E731
    buffer = f"!profile {profile}\n" + escape(system["content"]) + "!user\n" + escape(user["content"])
    plain = illume("--debug", stdin=buffer.encode())
    assert json.loads(plain.stdout.decode().split("\n\n", 3)[2]) == body, "the chat's request differs"
    times: dict[str, list[float]] = {"rewrite": [], "chat": [], "rewrite --debug": [], "chat --debug": []}
    for _ in range(rounds):
        for kind, args, stdin, status in (
                ("rewrite", ["--rewrite", instruction, "-p", profile], text.encode(), 1),
                ("chat", [], buffer.encode(), 0),
                # Dry runs: no reply generated, so the difference is the rewrite's own work (it counts tokens).
                ("rewrite --debug", ["--rewrite", instruction, "-p", profile, "--debug"], text.encode(), 0),
                ("chat --debug", ["--debug"], buffer.encode(), 0)):
            start = time.perf_counter()
            result = illume(*args, stdin=stdin)
            times[kind].append(time.perf_counter() - start)
            assert result.returncode == status, result.stderr
    return times


def spread(values: list[float]) -> str:
    """Return the median of VALUES (seconds) in ms, with the spread (min-max)."""
    return f"{statistics.median(values) * 1000:.0f} ms ({min(values) * 1000:.0f} to {max(values) * 1000:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", action="append", default=[], help="a GGUF chat model (default: SmolLM2)")
    parser.add_argument("--no-review", action="store_true", help="time the rewrite only")
    parser.add_argument("rounds", nargs="?", type=int, default=7)
    options = parser.parse_args()
    import bisect
    import pydoc_data.topics

    prose, prose_spans = plant(pydoc_data.topics.topics["exceptions"], PROSE_ERRORS)
    source = Path(bisect.__file__).read_text()
    code = source[: source.index("def insort_left")]
    code, code_spans = plant(code, CODE_ERRORS)
    models = [Path(m) for m in options.model] or [realserver.smollm2_path()]
    for model in models:
        process, url, _ = realserver.start_llama_server(context=4096, parallel=1, model=model)
        try:
            with tempfile.TemporaryDirectory() as folder:
                profile = Path(folder) / "model.profile"
                profile.write_text(f"!api {url}\n!:temperature 0\n!:seed 42\n!:max_tokens 1500\n"
                                   "!:cache_prompt false\n")
                print(f"## {model.name}")
                for name, text, spans, jobs in (
                        ("exceptions.txt", prose, prose_spans, ["-p", "review-json"]),
                        ("bisect.py", code, code_spans, ["-p", "review-code", "-p", "review-json"])):
                    if options.no_review:
                        break
                    score = review_score(name, text, spans, ["-p", str(profile), *jobs], Path(folder))
                    print(f"{name}: {json.dumps(score)}")
                capped = Path(folder) / "capped.profile"
                capped.write_text(f"!api {url}\n!:temperature 0\n!:seed 42\n!:max_tokens 24\n!:ignore_eos true\n")
                times = timing(str(capped), options.rounds, Path(folder))
                for kind, values in times.items():
                    print(f"{kind}: {spread(values)}")
                for a, b in (("rewrite", "chat"), ("rewrite --debug", "chat --debug")):
                    each = [x - y for x, y in zip(times[a], times[b])]
                    print(f"{a} minus {b}, round by round: {spread(each)}")
        finally:
            realserver.stop(process)


if __name__ == "__main__":
    main()
