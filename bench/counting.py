"""What counting tokens costs: a 20-message buffer against a real local llama-server.

    .venv/bin/python bench/counting.py [RUNS]

Starts llama-server on SmolLM2 (one slot, 4,096 tokens), then, interleaved
in each run:
  count     illume.counting.measure: GET /props, POST /apply-template,
            POST /tokenize (what `!fit` and `!debug tokens` add before a reply)
  request   the chat request itself, streamed to its end (max_tokens 16,
            temperature 0, the prompt cached by the server after the first run)
  request 1 the same with max_tokens 1: about the least a request costs
  cli       the CLI answering the buffer, and the same buffer with `!fit`
Prints medians, the spread (min-max) and the ratios count/request and
cli !fit/cli.
"""

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def buffer(url: str) -> str:
    turns = "".join(f"!user\nQuestion {i}: what is special about the number {i}? Say it in a sentence.\n"
                    f"!assistant\nThe number {i} is special in its own way, as every number is.\n" for i in range(10))
    return f"!api {url}v1\n!:temperature 0\n!:max_tokens 16\nBe brief.\n{turns[: turns.rindex('!assistant')]}"


def main(runs: int) -> None:
    from conftest import start_llama_server, stop
    from illume import buffer as buf
    from illume import counting
    from illume import request as req
    from illume.backends import counter_for
    from illume.backends.http import HTTPBackend
    from illume.reply import Reply

    process, url, _ = start_llama_server(context=4096, parallel=1)
    try:
        env = {"HOME": "/nonexistent"}
        text = buffer(url)
        parsed = buf.parse(text, buf.Sources(env))
        request = req.build(parsed, env)
        assert len(request.body["messages"]) == 20, len(request.body["messages"])
        cli_env = {k: v for k, v in os.environ.items() if not k.startswith("ILLUME_")}
        one_token = req.Request(request.url, dict(request.body, max_tokens=1), request.headers, request.mode)
        times = {"count": [], "request": [], "request 1": [], "cli": [], "cli !fit": []}
        tokens_counted = None
        for run in range(runs + 1):  # the first run warms the server's cache and is not counted
            started = time.perf_counter()
            counter = counter_for(request, env, 60)
            count = counting.measure(counter, parsed, request)
            counter.close()
            counted = time.perf_counter() - started
            tokens_counted = count.total

            started = time.perf_counter()
            for _ in HTTPBackend(timeout=300).stream(request, Reply()):
                pass
            requested = time.perf_counter() - started

            started = time.perf_counter()
            for _ in HTTPBackend(timeout=300).stream(one_token, Reply()):
                pass
            requested_one = time.perf_counter() - started

            cli = {}
            for name, prefix in (("cli", ""), ("cli !fit", "!fit\n")):
                started = time.perf_counter()
                result = subprocess.run([sys.executable, "-m", "illume"], input=(prefix + text).encode(),
                                        capture_output=True, env=cli_env)
                cli[name] = time.perf_counter() - started
                assert result.returncode == 0, result.stdout
            if run:
                times["count"].append(counted)
                times["request"].append(requested)
                times["request 1"].append(requested_one)
                times["cli"].append(cli["cli"])
                times["cli !fit"].append(cli["cli !fit"])
    finally:
        stop(process)

    print(f"20 messages, {tokens_counted} prompt tokens; median of {runs} interleaved runs (min-max)")
    for name, values in times.items():
        print(f"  {name:10} {statistics.median(values) * 1000:8.1f} ms  "
              f"({min(values) * 1000:.1f}-{max(values) * 1000:.1f})")
    ratio = [c / r for c, r in zip(times["count"], times["request"])]
    ratio_one = [c / r for c, r in zip(times["count"], times["request 1"])]
    cli_ratio = [f / c for f, c in zip(times["cli !fit"], times["cli"])]
    print(f"ratios (median of the per-run ratios)\n  count / request        {statistics.median(ratio):.3f}"
          f"\n  count / request 1      {statistics.median(ratio_one):.3f}"
          f"\n  cli !fit / cli         {statistics.median(cli_ratio):.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
