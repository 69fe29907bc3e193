"""Mutation audit: plant small bugs one at a time and report the ones no test catches.

Each mutant replaces one exact snippet of one file (it must occur once) in a
copy of the working tree, then runs only the tests that cover that place;
a mutant is caught when they fail. The unmutated copy runs the same tests
first, so a failure is the bug's doing. The places are the ones a user
would notice: the buffer parser, the SSE decoder, the JSON encoder, secret
masking, batch writes, `!stats`, the embedded backend's notes, where the
Vim plugin puts a reply, and what keeps a reply from acting through an
editor.

    .venv/bin/python bench/mutation.py            # all mutants, a table at the end
    .venv/bin/python bench/mutation.py -k sse     # the mutants whose name holds "sse"
    .venv/bin/python bench/mutation.py --list

Needs what the covered tests need (ILLUME_REQUIRE_ALL=1 is set: a missing
part fails loudly rather than letting a mutant pass as skipped).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent


class Mutant(NamedTuple):
    name: str
    path: str  # relative to the repository
    old: str  # the snippet, found exactly once
    new: str
    tests: tuple[str, ...]  # pytest arguments: the tests that cover the place


MUTANTS = [
    # --- the buffer parser ---
    Mutant("parser: `!!text` keeps one `!`", "illume/buffer.py",
           "            self.text(line[1:])", "            self.text(line[2:])",
           ("tests/test_buffer.py",)),
    Mutant("parser: a one-part message loses its spaces at the ends", "illume/buffer.py",
           "        return parts[start].strip(\"\\r\\n\")", "        return parts[start].strip()",
           ("tests/test_buffer.py", "tests/test_wire.py")),
    # --- the SSE decoder ---
    Mutant("sse: every space after `data:` removed, not one", "illume/sse.py",
           "        if value.startswith(b\" \"):\n            value = value[1:]",
           "        value = value.lstrip(b\" \")",
           ("tests/test_sse.py",)),
    Mutant("sse: a CR that ends a read is a whole line end, and the LF after it an empty line", "illume/sse.py",
           "            self._after_cr = ends_in_cr", "            self._after_cr = False",
           ("tests/test_sse.py",)),
    Mutant("sse: `data:` lines without a space are never split into events", "illume/sse.py",
           "        if self._data and self._starts_event(value):\n            events.append(self._dispatch())\n",
           "",
           ("tests/test_sse.py", "tests/test_faults.py", "-k", "blank or space or data_lines")),
    # --- the JSON encoder ---
    Mutant("json: U+2028 and U+2029 left unescaped", "illume/jsonwire.py",
           '_go_only_escapes = re.compile("[\\u2028\\u2029\\udc80-\\udcff]")',
           '_go_only_escapes = re.compile("[\\udc80-\\udcff]")',
           ("tests/test_jsonwire.py", "tests/test_wire.py")),
    Mutant("json: exponent form from 1e20 instead of 1e21", "illume/jsonwire.py",
           "size >= 1e21", "size >= 1e20",
           ("tests/test_jsonwire.py",)),
    Mutant("json: a long string loses its last character per piece", "illume/jsonwire.py",
           "yield encode_string(value[start : start + PIECE])[1:-1]",
           "yield encode_string(value[start : start + PIECE - 1])[1:-1]",
           ("tests/test_jsonwire.py",)),
    # --- masking secrets ---
    Mutant("masking: short secrets show their last four characters", "illume/secrets.py",
           "len(value) >= 16 else", "len(value) >= 6 else",
           ("tests/test_headers.py", "tests/test_secrets_and_network.py")),
    Mutant("masking: the proxy credential as sent (base64) not masked", "illume/headers.py",
           "found += [parts.password, unquote(parts.password), base64.b64encode(userinfo.encode()).decode()]",
           "found += [parts.password, unquote(parts.password)]",
           ("tests/test_secrets_and_network.py", "-k", "proxy")),
    # --- batch writes ---
    Mutant("batch: the reply written in place, not to a temporary renamed over the file", "illume/batch.py",
           "        os.replace(temporary, path)",
           "        with open(path, \"wb\") as f:\n            f.write(data)\n        os.unlink(temporary)",
           ("tests/test_batch.py", "-m", "not server and not embedded")),
    # --- !stats ---
    Mutant("stats: the rate upside down (seconds per token)", "illume/stats.py",
           "rate = events / seconds_streaming", "rate = seconds_streaming / events",
           ("tests/test_faults.py", "-k", "stats")),
    # --- the embedded backend's notes ---
    Mutant("embedded: the token-limit note dropped", "illume/backends/embedded.py",
           'if choice.get("finish_reason") == "length":', 'if choice.get("finish_reason") == "max_tokens":',
           ("tests/test_embedded.py", "-k", "limit or stats or completion")),
    # --- where the Vim plugin puts the reply ---
    Mutant("vim: a piece goes before the text already on its line", "vim/autoload/illume.vim",
           "call setbufline(a:reply.buf, l:lnum, l:line . l:parts[0])",
           "call setbufline(a:reply.buf, l:lnum, l:parts[0] . l:line)",
           ("tests/test_vim.py", "-k", "test_chat_streams_the_reply_at_the_end and vim and not nvim")),
    # --- a reply never acts through an editor ---
    Mutant("editors: a NUL printed as it came", "illume/output.py",
           'text.replace("\\x00", "^@")', 'text.replace("\\x00", "\\x00")',
           ("tests/test_security.py", "-k", "nul_in_a_reply and vim and not nvim")),
    Mutant("editors: the text after a lone CR not judged as a line", "illume/escape.py",
           'if char == "\\r" and not self._open:', "if False:",
           ("tests/test_escape.py", "-k", "test_a_line")),
    Mutant("editors: `Local Variables:` left whole", "illume/modelines.py",
           "or self.tail.lower() == _LOCAL_VARIABLES)", "or False)",
           ("tests/test_security.py", "-k", "decodes_the_chat and utf")),
    Mutant("editors: Vim sends a stored NUL as a line break", "vim/autoload/illume/job.vim",
           "call ch_sendraw(a:channel, 0z00)", 'call ch_sendraw(a:channel, "\\n")',
           ("tests/test_security.py", "-k", "saved_chat and vim and not nvim")),
    Mutant("editors: Emacs sends a buffer decoded as UTF-7", "emacs/illume.el",
           "(coding-system-get coding :ascii-compatible-p)", "t",
           ("tests/test_emacs.py", "-k", "utf-7")),
]


def tracked_files() -> list[str]:
    """Return the working tree's files that git tracks or would track (untracked, not ignored)."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    return [line for line in out.splitlines() if (REPO / line).is_file()]


def copy_tree(target: Path) -> None:
    for name in tracked_files():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target / name)


def run_tests(tree: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, float, str]:
    """Return (pytest's exit status, seconds, the end of its output) for TESTS run in TREE."""
    env = {**os.environ, "PYTHONPATH": str(tree), "ILLUME_REQUIRE_ALL": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.monotonic()
    try:
        result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                                cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, time.monotonic() - started, "timed out"
    return result.returncode, time.monotonic() - started, (result.stdout + result.stderr)[-1500:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only the mutants whose name holds this text")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=900, help="seconds for one test run")
    args = parser.parse_args()
    mutants = [m for m in MUTANTS if args.k.lower() in m.name.lower()]
    if args.list:
        for mutant in mutants:
            print(f"{mutant.name}  ({mutant.path}; {' '.join(mutant.tests)})")
        return 0

    rows, survivors, broken = [], 0, 0
    baseline: dict = {}  # tests -> their run on the unmutated copy
    with tempfile.TemporaryDirectory(prefix="illume-mutation-") as folder:
        tree = Path(folder)
        copy_tree(tree)
        for mutant in mutants:
            path = tree / mutant.path
            original = path.read_text()
            count = original.count(mutant.old)
            if count != 1:
                print(f"!! {mutant.name}: the snippet occurs {count} times in {mutant.path}", flush=True)
                rows.append((mutant, "snippet not found once", 0.0))
                broken += 1
                continue
            if mutant.tests not in baseline:
                baseline[mutant.tests] = run_tests(tree, mutant.tests, args.timeout)
            status, _, tail = baseline[mutant.tests]
            if status != 0:
                print(f"!! {mutant.name}: the tests fail without the bug:\n{tail}", flush=True)
                rows.append((mutant, "tests fail unmutated", 0.0))
                broken += 1
                continue
            path.write_text(original.replace(mutant.old, mutant.new))
            try:
                status, seconds, tail = run_tests(tree, mutant.tests, args.timeout)
            finally:
                path.write_text(original)
            verdict = "caught" if status != 0 else "SURVIVED"
            survivors += status == 0
            rows.append((mutant, verdict, seconds))
            print(f"{verdict:8} {seconds:6.1f} s  {mutant.name}", flush=True)

    print("\n| mutant | file | tests | result |\n| --- | --- | --- | --- |")
    for mutant, verdict, seconds in rows:
        print(f"| {mutant.name} | `{mutant.path}` | `{' '.join(mutant.tests)}` | {verdict} |")
    print(f"\n{len(rows)} mutants: {len(rows) - survivors - broken} caught, {survivors} survived"
          + (f", {broken} not run" if broken else ""))
    return 1 if survivors or broken else 0


if __name__ == "__main__":
    sys.exit(main())
