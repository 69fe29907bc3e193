"""Issue 20: a conversation over a 2,400-token !context, turn by turn, with and without the prompt cache.

Usage: .venv/bin/python bench/prompt_cache.py [REPEATS] [TURNS]

Each repeat holds TURNS-turn conversations (default 3 x 10), side by side,
interleaved turn by turn: the embedded backend with its prompt cache (a
fresh $XDG_CACHE_HOME per repeat), the embedded backend with
`!:cache_prompt false`, and illume against llama-server with its own
prompt cache on the same SmolLM2 file. Each turn is one whole `illume`
process on the buffer so far, its reply appended and the next question
after it, as a user in an editor would do. Prints per-turn medians, the
ratios the issue sets goals for, and the cache's disk use after each turn.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

QUESTIONS = [
    "What does this code do, in one sentence?",
    "Which function parses a directive line?",
    "What happens to a line that starts with two exclamation marks?",
    "Name one error the parser can raise.",
    "How are messages of the same role joined?",
    "What does the Sources class provide?",
    "Is there anything about profiles in it?",
    "Which constants name the modes?",
    "Summarise the module in five words.",
    "Thank you. Anything else worth knowing?",
]
CONTEXT_TOKENS = 2400


def context_file(folder: Path, model: Path) -> tuple[Path, int]:
    """Write a !context file of about CONTEXT_TOKENS tokens (illume's own parser source); return it and its count."""
    import llama_cpp

    vocab = llama_cpp.Llama(model_path=str(model), vocab_only=True, verbose=False)
    source = (REPO / "illume" / "buffer.py").read_text() + (REPO / "illume" / "request.py").read_text()
    lines, text = source.split("\n"), ""
    for line in lines:
        if len(vocab.tokenize((text + line + "\n").encode(), add_bos=False)) > CONTEXT_TOKENS:
            break
        text += line + "\n"
    path = folder / "parser.py"
    path.write_text(text)
    return path, len(vocab.tokenize(text.encode(), add_bos=False))


def run_turn(buffer: str, env: dict, code: Path = REPO) -> tuple[float, str]:
    """Return (seconds, stdout) of one whole `python -m illume` process on BUFFER, illume's code from CODE."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "illume"], input=buffer.encode(), capture_output=True,
                            env=env, cwd=code, timeout=600)
    seconds = time.perf_counter() - start
    if result.returncode != 0 or b"!error" in result.stdout:
        sys.exit(f"illume failed: {result.stdout.decode()[-500:]} {result.stderr.decode()[-500:]}")
    return seconds, result.stdout.decode()


def disk_use(folder: Path) -> tuple[int, int]:
    """Return (bytes, tokens) of the cache's entries under FOLDER."""
    from illume import prompt_cache as pc

    total = tokens = 0
    for path in folder.rglob("*" + pc.SUFFIX):
        total += path.stat().st_size
        with open(path, "rb") as f:
            tokens += pc.HEADER.unpack(f.read(pc.HEADER.size))[3]
    return total, tokens


def baseline(work: Path) -> Path:
    """Return a folder holding illume as it was before the prompt cache (BASELINE, default the branch point)."""
    ref = os.environ.get("BASELINE") or subprocess.run(
        ["git", "merge-base", "HEAD", "main"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    folder = work / "baseline"
    folder.mkdir()
    archive = subprocess.run(["git", "archive", ref, "illume", "profiles", "fim_templates"], capture_output=True,
                             check=True, cwd=REPO).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def main() -> None:
    from conftest import start_llama_server, stop

    from illume.backends.embedded import default_model

    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    turns = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    model = default_model()
    work = Path(tempfile.mkdtemp(prefix="illume-bench-cache-"))
    context, count = context_file(work, model)
    print(f"context: {count} tokens; {repeats} repeats x {turns} turns; model {model.name}")
    server, url, _ = start_llama_server(context=8192, parallel=1)
    settings = f"!:temperature 0\n!:seed 1\n!:max_tokens 24\n!context {context}\n"
    variants = {
        "embedded, cache": "!profile embedded\n" + settings,
        "embedded, no cache": "!profile embedded\n!:cache_prompt false\n" + settings,
        "llama-server": f"!profile llama.cpp\n!api {url}\n" + settings,
    }
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("ILLUME_")}
    times = {name: [[] for _ in range(turns)] for name in variants}
    before = baseline(work)
    today = []  # the first turn on the code before the prompt cache
    disk = [[] for _ in range(turns)]
    try:
        for repeat in range(repeats):
            cache_home = work / f"cache-{repeat}"
            env = dict(base_env, XDG_CACHE_HOME=str(cache_home))
            buffers = {name: head + "\n!user\n" + QUESTIONS[0] + "\n" for name, head in variants.items()}
            for turn in range(turns):
                order = list(variants)
                order = order[turn % 3:] + order[:turn % 3]  # no variant always first
                for name in order:
                    seconds, out = run_turn(buffers[name], env)
                    times[name][turn].append(seconds)
                    buffers[name] += out + "\n\n!user\n" + QUESTIONS[(turn + 1) % len(QUESTIONS)] + "\n"
                if turn == 0:
                    today.append(run_turn(buffers["embedded, no cache"].split("\n\n!assistant")[0], env, before)[0])
                disk[turn].append(disk_use(cache_home / "illume" / "prompts"))
                print(f"  repeat {repeat + 1} turn {turn + 1}: "
                      + ", ".join(f"{name} {times[name][turn][-1]:.2f} s" for name in variants), flush=True)
    finally:
        stop(server)
    print("\nper turn, median of", repeats, "(min-max), whole illume process, seconds")
    print(f"{'turn':>4} {'cache':>16} {'no cache':>18} {'llama-server':>16} {'cache/none':>10} "
          f"{'cache/server':>12} {'disk MB':>8} {'B/token':>8}")
    ratios_none, ratios_server = [], []
    for turn in range(turns):
        row = {name: times[name][turn] for name in variants}
        med = {name: statistics.median(v) for name, v in row.items()}
        a, b, c = med["embedded, cache"], med["embedded, no cache"], med["llama-server"]
        size, tokens = disk[turn][-1]
        if turn > 0:
            ratios_none.append(a / b)
            ratios_server.append(a / c)
        spread = {name: f"{med[name]:.2f} ({min(v):.2f}-{max(v):.2f})" for name, v in row.items()}
        print(f"{turn + 1:>4} {spread['embedded, cache']:>16} {spread['embedded, no cache']:>18} "
              f"{spread['llama-server']:>16} {a / b:>10.3f} {a / c:>12.2f} {size / 1e6:>8.1f} "
              f"{(size / tokens if tokens else 0):>8.0f}")
    print(f"turns 2-{turns}: cache / no cache median {statistics.median(ratios_none):.3f} (goal <= 0.15), "
          f"max {max(ratios_none):.3f}")
    print(f"turns 2-{turns}: cache / llama-server median {statistics.median(ratios_server):.2f} (goal <= 3), "
          f"max {max(ratios_server):.2f}")
    cold = statistics.median(times["embedded, cache"][0])
    without = statistics.median(times["embedded, no cache"][0])
    print(f"turn 1 (cold): with the cache {cold:.2f} s, without {without:.2f} s, "
          f"before the cache existed {statistics.median(today):.2f} s ({min(today):.2f}-{max(today):.2f}); "
          f"ratio to before {cold / statistics.median(today):.3f} (goal <= 1)")


if __name__ == "__main__":
    main()
