"""Score illume's infill stopping rules on held-out holes cut from real C, JavaScript and Python files.

No model runs.  From source files found under the folders given, tree-sitter
picks runs of 1-3 whole statements inside function bodies (seeded, so the
same folders give the same holes); each hole is filled with its true middle
followed by a scripted overrun:

    echo    the true middle, then the next lines of the suffix again;
    newdef  the true middle, then a new top-level function;
    clean   the true middle alone: nothing may be cut.

and cut by InfillGuard with all rules on, the language

    given   named by its hint (`c`, `javascript`, `python`);
    guessed no hint: the guard reads the buffer;
    wrong   named as one of the other two languages (each hole twice);
    unknown named as plain text (`notes.txt`): no language rules.

With `--window N` the buffer holds only N lines either side of the hole, as
a fragment of a file would: it may start inside a class or a function, and
the guess has less to go on.

A hole is exact when the kept middle equals the true one (trailing blank
lines aside for echo and newdef, which the rules keep by design; byte for
byte for clean).  Files are split in two halves by a hash of their content:
`--split dev` is what the rules may be tuned on, `--split test` is held out.

    python bench/held_out_stop.py --split test \\
        --c /usr/share --javascript /usr/lib/node_modules --python /usr/lib/python3.11
"""

import argparse
import hashlib
import os
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from illume.stopping import InfillGuard  # noqa: E402

LANGUAGES = ("c", "javascript", "python")
EXTENSIONS = {"c": (".c",), "javascript": (".js",), "python": (".py",)}
KINDS = ("echo", "newdef", "clean")
CONDITIONS = ("given", "guessed", "wrong", "unknown")

# The statement nodes a hole may hold, and the function nodes it must sit in.
FUNCTIONS = {
    "c": {"function_definition"},
    "javascript": {"function_declaration", "function_expression", "function", "arrow_function",
                   "method_definition", "generator_function_declaration", "generator_function"},
    "python": {"function_definition"},
}
BLOCKS = {"c": {"compound_statement"}, "javascript": {"statement_block"}, "python": {"block"}}

NEW_DEFINITION = {
    "c": "\n\nstatic int helper_total(const int *values, int count)\n{\n    int total = 0;\n"
         "    for (int i = 0; i < count; i++)\n        total += values[i];\n    return total;\n}\n",
    "javascript": "\n\nfunction helperTotal(values) {\n  let total = 0;\n  for (const value of values) {\n"
                  "    total += value;\n  }\n  return total;\n}\n",
    "python": "\n\n\ndef helper_total(values):\n    total = 0\n    for value in values:\n"
              "        total += value\n    return total\n",
}
ECHO_LINES = 8


def parser(language):
    import importlib

    import tree_sitter

    grammar = importlib.import_module(f"tree_sitter_{language}")
    return tree_sitter.Parser(tree_sitter.Language(grammar.language()))


def source_files(roots, language, split, max_bytes):
    """Give back [(path, text)] of readable, distinct, not minified files of `language` in `split`."""
    found = []
    for root in roots:
        for folder, dirs, names in os.walk(root):
            dirs.sort()
            for name in sorted(names):
                if name.endswith(EXTENSIONS[language]) and not name.endswith(".min.js"):
                    found.append(os.path.join(folder, name))
    files, seen = [], set()
    for path in sorted(found):
        try:
            if not 1000 <= os.path.getsize(path) <= max_bytes:
                continue
            data = Path(path).read_bytes()
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        digest = hashlib.sha1(data).hexdigest()
        if digest in seen or "\r" in text or max(map(len, text.split("\n"))) > 400:
            continue
        seen.add(digest)
        half = "dev" if int(digest[:8], 16) % 2 == 0 else "test"
        if split in (half, "all"):
            files.append((path, text))
    return files


def candidate_runs(tree, data, language):
    """Give back [(start byte, end byte)] of runs of 1-3 whole statements, whole lines, inside functions."""
    runs = []
    stack = [(tree.root_node, False)]
    while stack:
        node, in_function = stack.pop()
        inside = in_function or node.type in FUNCTIONS[language]
        if inside and node.type in BLOCKS[language]:
            statements = [child for child in node.named_children if child.type != "comment"]
            for i in range(len(statements)):
                for count in (1, 2, 3):
                    if i + count <= len(statements):
                        first, last = statements[i], statements[i + count - 1]
                        line_start = data.rfind(b"\n", 0, first.start_byte) + 1
                        line_end = data.find(b"\n", last.end_byte)
                        line_end = len(data) if line_end < 0 else line_end
                        if data[line_start:first.start_byte].strip() or data[last.end_byte:line_end].strip():
                            continue
                        if first.has_error or last.has_error:
                            continue
                        runs.append((line_start, line_end))
        stack.extend((child, inside) for child in node.children)
    return runs


def holes(files, language, count, seed, per_file=3):
    """Give back [(path, prefix, middle, suffix)], `count` holes drawn with `seed` from `files`."""
    rng = random.Random(f"{seed}:{language}")
    order = list(files)
    rng.shuffle(order)
    parse = parser(language)
    chosen = []
    for path, text in order:
        data = text.encode()
        runs = candidate_runs(parse.parse(data), data, language)
        for start, end in rng.sample(runs, min(per_file, len(runs))):
            middle = data[start:end].decode()
            if middle.strip():
                chosen.append((path, data[:start].decode(), middle, data[end:].decode()))
            if len(chosen) >= count:
                return chosen
    return chosen


def overruns(language, middle, suffix):
    """Give back {kind: model output} for one hole."""
    echo = "\n".join(suffix.split("\n")[: ECHO_LINES + 1])
    return {"echo": middle + echo, "newdef": middle + NEW_DEFINITION[language], "clean": middle}


def hints(language, condition):
    """Give back the hints a condition runs with."""
    if condition == "given":
        return [language]
    if condition == "guessed":
        return [None]
    if condition == "wrong":
        return [other for other in LANGUAGES if other != language]
    return ["notes.txt"]


def main(argv=None):
    parser_ = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for language in LANGUAGES:
        parser_.add_argument(f"--{language}", nargs="+", default=[], metavar="DIR",
                             help=f"folders to take {language} files from")
    parser_.add_argument("--split", choices=("dev", "test", "all"), default="test")
    parser_.add_argument("--holes", type=int, default=200, help="holes per language")
    parser_.add_argument("--seed", default="19")
    parser_.add_argument("--max-bytes", type=int, default=60_000, help="largest file used")
    parser_.add_argument("--window", type=int, default=0, metavar="LINES",
                         help="keep only LINES lines of prefix and of suffix around each hole (0: the whole file)")
    parser_.add_argument("--rules", default=None, help="rule names, as !stop-rules (default: all)")
    parser_.add_argument("--show", type=int, default=0, help="print N misses per language, kind and condition")
    args = parser_.parse_args(argv)
    from illume.stopping import parse_rules

    rules = parse_rules(args.rules) if args.rules else None

    started = time.time()
    exact = Counter()
    total = Counter()
    reasons = defaultdict(Counter)
    shown = Counter()
    sources = {}
    for language in LANGUAGES:
        roots = getattr(args, language)
        if not roots:
            continue
        files = source_files(roots, language, args.split, args.max_bytes)
        drawn = holes(files, language, args.holes, args.seed)
        sources[language] = (len(files), len({path for path, *_ in drawn}), len(drawn))
        for path, prefix, middle, suffix in drawn:
            if args.window:
                prefix = "".join(prefix.splitlines(True)[-args.window:])
                suffix = "\n".join(suffix.split("\n")[: args.window + 1])
            for kind, output in overruns(language, middle, suffix).items():
                for condition in CONDITIONS:
                    for hint in hints(language, condition):
                        guard = InfillGuard(prefix, suffix, rules=rules, language=hint)
                        kept = guard.feed(output) + guard.finish()
                        key = (language, kind, condition)
                        total[key] += 1
                        reasons[key][guard.reason] += 1
                        good = kept == middle if kind == "clean" else kept.rstrip() == middle.rstrip()
                        if good:
                            exact[key] += 1
                        elif shown[key] < args.show:
                            shown[key] += 1
                            print(f"--- {language} {kind} {condition} hint={hint} read as {guard.language} "
                                  f"({guard.reason}) {path}\nprefix ...{prefix[-300:]!r}\nwant {middle!r}\n"
                                  f"kept {kept!r}\nsuffix {suffix[:200]!r}\n", file=sys.stderr)

    window = f"{args.window} lines either side" if args.window else "whole files"
    print(f"split {args.split}, seed {args.seed}, {window}, {time.time() - started:.0f} s")
    for language, (files, used, count) in sources.items():
        print(f"{language}: {count} holes from {used} files ({files} files in the split)")
    print("\n| language | overrun | given | guessed | wrong | unknown |")
    print("|---|---|---:|---:|---:|---:|")
    for language in sources:
        for kind in KINDS:
            cells = []
            for condition in CONDITIONS:
                key = (language, kind, condition)
                cells.append(f"{exact[key] / total[key]:.1%} ({exact[key]}/{total[key]})" if total[key] else "-")
            print(f"| {language} | {kind} | " + " | ".join(cells) + " |")
    print("\nstopped by (given / guessed):")
    for language in sources:
        for kind in KINDS:
            print(f"  {language} {kind}: {dict(reasons[(language, kind, 'given')])} / "
                  f"{dict(reasons[(language, kind, 'guessed')])}")


if __name__ == "__main__":
    main()
