"""The embedded prompt cache: a conversation over a 2,400-token !context, turn by turn, with and without the prompt cache.

Usage: .venv/bin/python bench/prompt_cache.py [REPEATS] [TURNS] [EVERY]

Each repeat (default 1) holds a TURNS-turn conversation (default 10) on
the embedded backend with its prompt cache (a fresh $XDG_CACHE_HOME per
repeat) and one through illume against llama-server with its own prompt
cache on the same SmolLM2 file, interleaved turn by turn. On every EVERY-th
turn (default 3: turns 1, 4, 7, 10) the cached conversation's buffer also
goes through the embedded backend with `!:cache_prompt false`, the slow
side, and on turn 1 with the cache and the other load settings
(`!:flash_attn true`, `!:n_batch 512`). Each turn is one whole `illume` process on the buffer so far, its reply appended and the
next question after it, as a user in an editor would do. Prints per-turn
medians, the ratios set as goals, and the cache's disk use. `... 7 1 1`
times the cold turn alone, seven times. `EMBEDDED='!:flash_attn true\n!:n_batch 512'`
puts those lines in both embedded variants' buffers, to time other load settings.
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


def conversation_settings(context: Path) -> str:
    """Return the conversation's settings lines: greedy, seeded, 24-token replies, over the CONTEXT file."""
    return f"!:temperature 0\n!:seed 1\n!:max_tokens 24\n!context {context}\n"


def run_turn(buffer: str, env: dict) -> tuple[float, str]:
    """Return (seconds, stdout) of one whole `python -m illume` process on BUFFER."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "illume"], input=buffer.encode(), capture_output=True,
                            env=env, cwd=REPO, timeout=600)
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


def main() -> None:
    from conftest import start_llama_server, stop
    from illume.backends.embedded import default_model

    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    turns = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    every = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    model = default_model()
    work = Path(tempfile.mkdtemp(prefix="illume-bench-cache-"))
    context, count = context_file(work, model)
    print(f"context: {count} tokens; {repeats} repeats x {turns} turns; model {model.name}")
    server, url, _ = start_llama_server(context=8192, parallel=1)
    settings = conversation_settings(context)
    # EMBEDDED='!:flash_attn true\n!:n_batch 512' (say): lines both embedded variants start with.
    extra = [line for line in os.environ.get("EMBEDDED", "").split("\\n") if line]
    embedded = "!profile embedded\n" + "".join(line + "\n" for line in extra)
    heads = {"cache": embedded + settings, "server": f"!profile llama.cpp\n!api {url}\n" + settings}
    no_cache = embedded + "!:cache_prompt false\n" + settings
    measured = [t for t in range(turns) if t % every == 0]  # the turns the slow variant runs on
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("ILLUME_")}
    times = {name: [[] for _ in range(turns)] for name in ("cache", "no cache", "server")}
    disk = [[] for _ in range(turns)]
    flash = []  # the first turn with the cache and the other load settings: flash attention, batches of 512
    with_flash = heads["cache"].replace(embedded, "!profile embedded\n!:flash_attn true\n!:n_batch 512\n")
    try:
        for repeat in range(repeats):
            cache_home = work / f"cache-{repeat}"
            env = dict(base_env, XDG_CACHE_HOME=str(cache_home))
            buffers = {name: head + "\n!user\n" + QUESTIONS[0] + "\n" for name, head in heads.items()}
            for turn in range(turns):
                runs = ["cache", "server"] + (["no cache"] if turn in measured else [])
                runs += ["flash"] if turn == 0 else []
                first = (turn + repeat) % len(runs)
                runs = runs[first:] + runs[:first]  # no variant always first
                outputs = {}
                for name in runs:
                    if name == "no cache":  # the very buffer the cache variant gets, without the cache
                        seconds, _ = run_turn(buffers["cache"].replace(heads["cache"], no_cache, 1), env)
                    elif name == "flash":  # the same first buffer with flash attention, its own cache folder
                        flash_env = dict(env, XDG_CACHE_HOME=str(work / f"flash-{repeat}"))
                        seconds, _ = run_turn(buffers["cache"].replace(heads["cache"], with_flash, 1), flash_env)
                        flash.append(seconds)
                        continue
                    else:
                        seconds, outputs[name] = run_turn(buffers[name], env)
                    times[name][turn].append(seconds)
                for name, out in outputs.items():
                    buffers[name] += out + "\n\n!user\n" + QUESTIONS[(turn + 1) % len(QUESTIONS)] + "\n"
                disk[turn].append(disk_use(cache_home / "illume" / "prompts"))
                print(f"  repeat {repeat + 1} turn {turn + 1}: "
                      + ", ".join(f"{name} {times[name][turn][-1]:.2f} s" for name in times if times[name][turn])
                      + (f", flash attention {flash[-1]:.2f} s" if turn == 0 else ""), flush=True)
    finally:
        stop(server)
    print(f"\nper turn, median of {repeats} (min-max), whole illume process, seconds; no cache on turns "
          + ", ".join(str(t + 1) for t in measured))
    print(f"{'turn':>4} {'cache':>18} {'no cache':>18} {'llama-server':>18} {'cache/none':>10} "
          f"{'cache/server':>12} {'disk MB':>8} {'B/token':>8}")
    ratios_none, ratios_server = [], []

    def cell(values):
        return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})" if values else "-"

    for turn in range(turns):
        a = statistics.median(times["cache"][turn])
        c = statistics.median(times["server"][turn])
        b = statistics.median(times["no cache"][turn]) if times["no cache"][turn] else None
        size, tokens = disk[turn][-1]
        if turn > 0:
            ratios_server.append(a / c)
            if b:
                ratios_none.append(a / b)
        print(f"{turn + 1:>4} {cell(times['cache'][turn]):>18} {cell(times['no cache'][turn]):>18} "
              f"{cell(times['server'][turn]):>18} {(f'{a / b:.3f}' if b else '-'):>10} {a / c:>12.2f} "
              f"{size / 1e6:>8.1f} {(size / tokens if tokens else 0):>8.0f}")
    if ratios_none:
        print(f"turns 2-{turns}: cache / no cache, median {statistics.median(ratios_none):.3f}, "
              f"max {max(ratios_none):.3f} (goal <= 0.15)")
    if ratios_server:
        print(f"turns 2-{turns}: cache / llama-server, median {statistics.median(ratios_server):.2f}, "
              f"max {max(ratios_server):.2f} (goal <= 3)")
    cold, without = statistics.median(times["cache"][0]), statistics.median(times["no cache"][0])
    print(f"turn 1 (cold): with the cache {cold:.2f} s, without {without:.2f} s, ratio {cold / without:.3f}")
    print(f"turn 1 with the cache, !:flash_attn true and !:n_batch 512: {statistics.median(flash):.2f} s; "
          f"/ the default settings {statistics.median(flash) / cold:.3f}")


if __name__ == "__main__":
    main()
