"""Summaries on a long text: tokens sent per turn with `!fit summarize`, with `!fit` dropping, and whole; warm turns.

Usage: .venv/bin/python bench/summaries.py [TURNS] [CONTEXT] [REPEATS]

The text: Newton's Opticks (1730, public domain; tests/data/opticks.txt,
from Project Gutenberg); each proposition is a chapter, cut to some 300 tokens. On the
embedded backend (SmolLM2-135M, an n_ctx of CONTEXT, default 1024), each
of TURNS turns (default 10) pastes the next chapter as a user message and
runs `illume --filter` with `!fit summarize` and `!stats`, one process a
turn as an editor does; the buffer comes back with the summaries illume
wrote and the reply. For each turn the script then counts, with the
model's own tokenizer (`!debug tokens`), the prompt that turn sent with
summaries, the prompt `!fit` alone would send for the same text (the same
chapters and replies, without the summaries), and the whole prompt.
`!stats` gives the prompt tokens the prompt cache spared on each turn.
Last, on the summarised story as the last turn left it (reply and all),
the next turn ("Go on.") and a summary (`--summarize`) are each timed
REPEATS times (default 3) warm (right after the last turn ran again in a
fresh cache folder: its prompt and reply cached, as in use) and with
`!:cache_prompt false`; then `!stats` says what each warm one took from
the cache.
"""

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

SETTINGS = "!:temperature 0\n!:seed 1\n!:max_tokens 16\n!summarize story\nYou continue a treatise on light.\n"


def illume(buffer: str, *args: str, env=None) -> tuple[str, float]:
    """Return what illume prints for BUFFER and the seconds it took."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "illume", *args], input=buffer.encode(), capture_output=True,
                          cwd=REPO, env=env)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"illume failed: {done.stdout.decode()[-2000:]}")
    return done.stdout.decode(), seconds


def total(buffer: str, env) -> int:
    out, _ = illume(buffer + "\n!debug tokens\n", env=env)
    return int(re.search(r"!note total: ([\d,]+) tokens", out).group(1).replace(",", ""))


def without_summaries(text: str) -> str:
    kept, skipping = [], False
    for line in text.split("\n"):
        if re.match(r"!(user|assistant|summary)\b", line):
            skipping = line.startswith("!summary")
        if not skipping:
            kept.append(line)
    return "\n".join(kept)


def main() -> None:
    turns = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    context = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    from realserver import smollm2_path
    from texts import opticks

    env = dict(os.environ, XDG_CACHE_HOME=tempfile.mkdtemp(prefix="bench-summaries-"))
    head = f"!profile embedded\n!:model {smollm2_path()}\n!:n_ctx {context}\n"
    buffer = head + SETTINGS
    rows, sent_buffers = [], []
    for number, chapter in enumerate(opticks(turns), 1):
        before = buffer + f"!user\n{chapter}\n"
        out, seconds = illume("!fit summarize\n!stats\n" + before, "--filter", env=env)
        out = out[len("!fit summarize\n!stats\n"):]
        sent, _, reply = out.rpartition("\n\n!assistant\n\n")
        written = sent.count("\n!summary ") - before.count("\n!summary ")
        cached = re.search(r"(\d+) of (\d+) prompt tokens from the cache", reply)
        plain = without_summaries(sent)
        rows.append((number, total(sent, env), total("!fit\n" + plain, env), total(plain, env), written,
                     f"{cached.group(1)}/{cached.group(2)}" if cached else "-", seconds))
        sent_buffers.append(sent)
        buffer = out + "\n"
        print(*rows[-1], flush=True)

    print(f"\n{turns} turns, n_ctx {context}, SmolLM2-135M on the embedded backend, max_tokens 16")
    print("| turn | with summaries | !fit dropping | whole | summaries written | cached/prompt (!stats) | turn s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for number, summarised, dropped, whole, written, cached, seconds in rows:
        print(f"| {number} | {summarised:,} | {dropped:,} | {whole:,} | {written} | {cached} | {seconds:.1f} |")

    # Warm against cold on the summarised story: the next turn, and a summary written with --summarize, each
    # right after the last turn ran (its prompt and reply in the cache, as in use) and with cache_prompt false.
    turn, answered = sent_buffers[-1], buffer
    after = answered + "!user\nGo on.\n"
    timed: dict[str, list[float]] = {}
    for _ in range(repeats):
        for name, text, args in (("next turn", after, ()), ("--summarize", answered, ("--summarize",))):
            fresh = dict(env, XDG_CACHE_HOME=tempfile.mkdtemp(prefix="bench-summaries-"))
            illume(turn, env=fresh)  # the last turn again: its prompt and reply go into the cache
            timed.setdefault(f"{name}, warm", []).append(illume("!stats\n" + text, *args, env=fresh)[1])
            timed.setdefault(f"{name}, cache_prompt false", []).append(
                illume("!:cache_prompt false\n" + text, *args, env=fresh)[1])
    for name, times in timed.items():
        spread = f"{min(times):.2f}-{max(times):.2f}"
        print(f"{name}: median {statistics.median(times):.2f} s ({spread}, n={repeats})")
    for text, args in ((after, ()), (answered, ("--summarize",))):
        fresh = dict(env, XDG_CACHE_HOME=tempfile.mkdtemp(prefix="bench-summaries-"))
        illume(turn, env=fresh)
        out, _ = illume("!stats\n" + text, *args, env=fresh)
        print(" ".join(args) or "next turn", "warm:", re.findall(r"\d+ of \d+ prompt tokens from the cache", out))


if __name__ == "__main__":
    main()
