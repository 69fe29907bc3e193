"""Score illume's infill stopping rules on HumanEval infilling with scripted overruns.

Each task's true middle is followed by a known overrun, so the figures are
exact and repeatable (no model is run):

1. echo     the true middle, then the suffix echoed, then more code;
2. newdef   the true middle, then a new unrelated top-level function;
3. whole    the true middle alone (nothing may be cut);
4. restline the true middle, then the rest of its line echoed (single-line
            set only; the hole is moved inside the line, see FIM_STOP.md).

For each set and kind it reports the share of tasks whose cut middle equals
the true middle (trailing whitespace aside) and the share whose program
(prompt + kept middle + suffix + test + check(entry_point)) passes, run in
forked children of two worker processes with a time limit.

    python bench/fim_stop.py                      # everything, as in FIM_STOP.md
    python bench/fim_stop.py --limit 100 --no-run # a quick look
    python bench/fim_stop.py --data DIR           # DIR holds the two .jsonl.gz sets
"""

import argparse
import gzip
import json
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from illume.stopping import InfillGuard, parse_rules  # noqa: E402

# The two .jsonl.gz files of HumanEval infilling (github.com/openai/human-eval-infilling,
# its data/ folder): --data DIR, else $HUMANEVAL_INFILLING.
DATA = Path(os.environ.get("HUMANEVAL_INFILLING", "humaneval-infilling"))
SETS = {
    "single": "HumanEval-SingleLineInfilling.jsonl.gz",
    "multi": "HumanEval-MultiLineInfilling.jsonl.gz",
}
KINDS = ("echo", "newdef", "whole", "restline")

# Code a model might go on to invent after the hole.
MORE_CODE = (
    "\n\n\ndef helper(values):\n"
    "    total = 0\n"
    "    for value in values:\n"
    "        total += value\n"
    "    return total\n"
)
NEW_FUNCTION = (
    "\n\n\ndef norm3(v):\n"
    "    import math\n"
    "    return math.sqrt(sum(x * x for x in v))\n"
)


def load(name, data=None):
    path = Path(data or DATA) / SETS[name]
    if not path.is_file():
        sys.exit(f"fim_stop.py: {path} not found: name the HumanEval infilling folder with --data DIR")
    with gzip.open(path, "rt") as lines:
        return [json.loads(line) for line in lines]


def illume_hole(task):
    """Give back (prefix, true middle, suffix) as illume sends them for a task.

    The task's prompt ends with a newline and its canonical solution is whole
    lines ending with one.  illume sends the text above `!infill` plus "\\n"
    as the prefix (the prompt, as is), "\\n" + the text below as the suffix
    ("" when nothing is below), and expects the middle without its last
    newline, so prefix + middle + suffix is the original program.
    """
    middle = task["canonical_solution"]
    assert task["prompt"].endswith("\n") and middle.endswith("\n")
    suffix = "\n" + task["suffix"] if task["suffix"] else ""
    return task["prompt"], middle[:-1], suffix


def split_line(line, seed):
    """Give back (head, middle, rest) of one line: a hole inside it, on token boundaries."""
    indent = line[: len(line) - len(line.lstrip())]
    body = line[len(indent):]
    bounds = [m.start() for m in re.finditer(r"(?<=\w)(?=\W)|(?<=\W)(?=\w)|(?<=[^\w\s])(?=[^\w\s])", body)]
    bounds = [b for b in bounds if 0 < b < len(body)]
    if not bounds:
        bounds = [max(1, len(body) // 2)]
    rng = random.Random(seed)
    if len(bounds) >= 2:
        a, b = sorted(rng.sample(bounds, 2))
    else:
        a, b = 0, bounds[0]
    return indent + body[:a], body[a:b], body[b:]


def cases(name, task):
    """Give back [(kind, prefix, suffix, true middle, model output)] for one task."""
    prefix, middle, suffix = illume_hole(task)
    out = [
        ("echo", prefix, suffix, middle, middle + suffix + MORE_CODE),
        ("newdef", prefix, suffix, middle, middle + NEW_FUNCTION),
        ("whole", prefix, suffix, middle, middle),
    ]
    if name == "single":
        head, inner, rest = split_line(middle, task["task_id"])
        line_prefix = prefix + head
        line_suffix = rest + suffix
        out.append(("restline", line_prefix, line_suffix, inner, inner + rest + "\n" + task["suffix"]))
    return out


WORKER = r"""
import json, os, signal, sys
limit = float(sys.argv[1])
results = []
for program in json.load(sys.stdin):
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0); os.dup2(devnull, 1); os.dup2(devnull, 2)
        signal.setitimer(signal.ITIMER_REAL, limit)  # SIGALRM's default action ends the child
        try:
            exec(compile(program, "<task>", "exec"), {"__name__": "__main__"})
        except BaseException:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    results.append(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)
json.dump(results, sys.stdout)
"""


def run_programs(programs, jobs, limit, batch=100):
    """Give back {program: passed} for each program, run in forked children."""
    unique = list(dict.fromkeys(programs))
    batches = [unique[i : i + batch] for i in range(0, len(unique), batch)]

    def run(chunk):
        done = subprocess.run(
            [sys.executable, "-c", WORKER, str(limit)],
            input=json.dumps(chunk),
            capture_output=True,
            text=True,
            timeout=limit * len(chunk) + 60,
        )
        return chunk, json.loads(done.stdout)

    passed = {}
    with ThreadPoolExecutor(jobs) as pool:
        for chunk, results in pool.map(run, batches):
            passed.update(zip(chunk, results))
    return passed


def program(task, prefix, kept, suffix):
    return f"{prefix}{kept}{suffix}\n\n{task['test']}\ncheck({task['entry_point']})\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default="single,multi")
    parser.add_argument("--data", metavar="DIR", help="folder of the HumanEval infilling sets ($HUMANEVAL_INFILLING)")
    parser.add_argument("--rules", default="all", help="directive argument, e.g. all, echo,scope")
    parser.add_argument("--limit", type=int, help="first N tasks of each set")
    parser.add_argument("--sample", type=int, help="N tasks of each set, drawn with a fixed seed")
    parser.add_argument("--no-run", action="store_true", help="skip running the tests")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per program")
    parser.add_argument("--show", type=int, default=0, help="print N failures per set and kind")
    args = parser.parse_args(argv)
    rules = parse_rules(args.rules)

    rows = []
    started = time.time()
    for name in args.sets.split(","):
        tasks = load(name, args.data)
        if args.sample:
            tasks = random.Random(0).sample(tasks, min(args.sample, len(tasks)))
        if args.limit:
            tasks = tasks[: args.limit]
        exact = Counter()
        total = Counter()
        reasons = defaultdict(Counter)
        shown = Counter()
        runs = []  # (kind, program)
        for task in tasks:
            for kind, prefix, suffix, middle, output in cases(name, task):
                guard = InfillGuard(prefix, suffix, rules=rules, language="python")
                kept = guard.feed(output) + guard.finish()
                total[kind] += 1
                reasons[kind][guard.reason] += 1
                if kept.rstrip() == middle.rstrip():
                    exact[kind] += 1
                elif shown[kind] < args.show:
                    shown[kind] += 1
                    print(f"--- {name} {kind} {task['task_id']} ({guard.reason})\n"
                          f"want {middle!r}\nkept {kept!r}\nsuffix {suffix[:120]!r}\n", file=sys.stderr)
                runs.append((kind, program(task, prefix, kept, suffix)))
        truth = [program(t, *illume_hole(t)) for t in tasks]
        passed = {} if args.no_run else run_programs(truth + [p for _, p in runs], args.jobs, args.timeout)
        passes = Counter(kind for kind, p in runs if passed.get(p))
        truth_passes = sum(bool(passed.get(p)) for p in truth)
        for kind in KINDS:
            if total[kind]:
                rows.append((name, kind, total[kind], exact[kind], passes[kind], truth_passes, len(tasks),
                             dict(reasons[kind])))

    print(f"rules: {', '.join(sorted(rules)) or 'off'}; tree-sitter: {tree_sitter_state()}; "
          f"{time.time() - started:.0f} s\n")
    print("| set | overrun | tasks | exact | passes tests | true middle passes |")
    print("|---|---|---:|---:|---:|---:|")
    for name, kind, n, ex, ps, truth, ntasks, _ in rows:
        tests = "not run" if args.no_run else f"{ps / n:.2%} ({ps})"
        base = "not run" if args.no_run else f"{truth / ntasks:.2%} ({truth})"
        print(f"| {name} | {kind} | {n} | {ex / n:.2%} ({ex}) | {tests} | {base} |")
    print("\nstopped by: " + "; ".join(f"{name} {kind}: {reasons}" for name, kind, *_, reasons in rows))


def tree_sitter_state():
    from illume import syntax

    return "yes" if syntax.available("python") else "no"


if __name__ == "__main__":
    main()
