"""Where a turn's time goes on the embedded backend: each phase of one whole `illume` process, warm or cold.

Usage: .venv/bin/python bench/turn_phases.py [TURN] [RUNS]

Holds the conversation of bench/prompt_cache.py (a 2,400-token !context,
one question a turn) up to TURN (default 4) with the prompt cache, then
runs turn TURN RUNS times (default 5), each time from a copy of the cache
as the earlier turns left it (TURN 1: an empty one, the cold turn). Each
run is a whole process whose functions for each phase are wrapped to note
the time; prints each phase's median with the min-max spread, and the
whole process's wall time beside their sum.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

# (phase, the mark that ends it), in the order a turn passes them.
PHASES = [
    ("Python and illume's imports", "imported"),
    ("read the buffer, import llama_cpp (numpy, jinja2)", "> open_model"),
    ("load the model", "< open_model"),
    ("render and tokenize the chat", "< tokens"),
    ("find, map and check the entry", "< load"),
    ("restore the state", "< _set_state"),
    ("evaluate the new prompt tokens", "< prepare"),
    ("copy the state into the new entry", "< state_into"),
    ("the reply (entry sealed on a thread meanwhile)", "> wait"),
    ("wait for the entry, finish", "end"),
]


def child(log: str) -> None:
    """Run illume on stdin with its phase functions wrapped; write the marks to LOG as JSON."""
    marks = {}
    start = time.perf_counter()

    def mark(name: str) -> None:
        marks.setdefault(name, time.perf_counter() - start)

    with open("/proc/self/stat") as f:  # the process began before this line: count from its start
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        start -= float(f.read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
    import illume.backends.chat_prompt as chat_prompt
    import illume.backends.embedded as embedded
    import illume.backends.kv_cache as kv_cache
    import illume.cli
    import illume.prompt_cache as prompt_cache

    mark("imported")

    def wrap(owner, name: str) -> None:
        function = getattr(owner, name)

        def wrapped(*args, **kwargs):
            mark(f"> {name}")
            try:
                return function(*args, **kwargs)
            finally:
                mark(f"< {name}")

        setattr(owner, name, wrapped)

    for owner, name in [(embedded, "open_model"), (chat_prompt, "tokens"), (kv_cache.Loaded, "prepare"),
                        (prompt_cache.PromptCache, "load"), (kv_cache, "_set_state"), (kv_cache, "state_into"),
                        (kv_cache.Saving, "wait"), (kv_cache.Saving, "_commit")]:
        wrap(owner, name)
    sys.argv = ["illume"]
    try:
        illume.cli.main()
    finally:
        mark("end")
        with open(log, "w") as f:
            json.dump(marks, f)


def phases(marks: dict) -> dict:
    """Return each phase's seconds from MARKS; a phase whose mark is missing (a cold turn loads no entry) is 0."""
    result, last = {}, 0.0
    for phase, end in PHASES:
        if end in marks:
            result[phase], last = marks[end] - last, marks[end]
        else:
            result[phase] = 0.0
    result["the entry's CRC and rename, on a thread"] = marks.get("< _commit", 0) - marks.get("> _commit", 0)
    return result


def main() -> None:
    from illume.backends.embedded import default_model
    from prompt_cache import QUESTIONS, context_file, conversation_settings, run_turn

    turn = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    work = Path(tempfile.mkdtemp(prefix="illume-bench-phases-"))
    try:
        context, count = context_file(work, default_model())
        env = {k: v for k, v in os.environ.items() if not k.startswith("ILLUME_")}
        env["XDG_CACHE_HOME"] = str(work / "cache")
        buffer = f"!profile embedded\n{conversation_settings(context)}\n!user\n{QUESTIONS[0]}\n"
        for earlier in range(1, turn):
            _, out = run_turn(buffer, env)
            buffer += out + "\n\n!user\n" + QUESTIONS[earlier % len(QUESTIONS)] + "\n"
        (work / "cache").mkdir(exist_ok=True)
        shutil.copytree(work / "cache", work / "as-left")
        results, walls = [], []
        for _ in range(runs):
            shutil.rmtree(work / "cache")
            shutil.copytree(work / "as-left", work / "cache")
            log = work / "marks.json"
            begun = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--child", str(log)], input=buffer.encode(),
                           capture_output=True, env=env, cwd=REPO, check=True)
            walls.append(time.perf_counter() - begun)
            results.append(phases(json.loads(log.read_text())))
    finally:
        shutil.rmtree(work)
    print(f"turn {turn} ({'cold' if turn == 1 else 'warm'}), {count}-token context, median of {runs} (min-max), s")
    for phase in results[0]:
        values = [r[phase] for r in results]
        print(f"  {phase:<50} {statistics.median(values):6.3f} ({min(values):.3f}-{max(values):.3f})")
    sums = [sum(v for k, v in r.items() if not k.endswith("on a thread")) for r in results]
    print(f"  {'sum of the phases':<50} {statistics.median(sums):6.3f} ({min(sums):.3f}-{max(sums):.3f})")
    print(f"  {'whole process, as its parent waits for it':<50} {statistics.median(walls):6.3f} "
          f"({min(walls):.3f}-{max(walls):.3f})")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2])
    else:
        main()
