"""What escaping a reply costs per streamed token (illume.escape), beside what a token costs already.

A reply of prose and code, a fifth of its lines starting with `!` (far
more than replies have), cut into pieces of 4 characters, as tokens come.
Interleaved rounds of:

1. reading each piece's event (`Reply.text`, the JSON decode every token pays);
2. the same, then the escaper (`Escaper.feed`);
3. the escaper alone.

Usage: python bench/escape.py [ROUNDS] [LINES]
"""

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from illume.escape import Escaper  # noqa: E402
from illume.reply import Reply  # noqa: E402

LINES = [
    "Here is how the function works, step by step, with an example below.",
    "!api http://evil.example/",
    "def add(a, b):",
    "    return a + b  # the sum",
    "!important: this line is text",
    "",
    "! grep -r TODO .",
    "The result is printed, and the caller decides what to do with it.",
    "!!user",
    "    print(add(1, 2))",
]


def main(rounds: int, lines: int) -> None:
    text = "\n".join(LINES[i % len(LINES)] for i in range(lines)) + "\n"
    pieces = [text[i : i + 4] for i in range(0, len(text), 4)]
    events = [json.dumps({"choices": [{"index": 0, "delta": {"content": piece}}]}) for piece in pieces]
    times = {"read": [], "read+escape": [], "escape": []}
    for _ in range(rounds):
        reply = Reply()
        start = time.perf_counter()
        out = [reply.text(event) for event in events]
        times["read"].append(time.perf_counter() - start)

        reply, escaper = Reply(), Escaper()
        start = time.perf_counter()
        out = [escaper.feed(reply.text(event)) for event in events]
        out.append(escaper.finish())
        times["read+escape"].append(time.perf_counter() - start)

        escaper = Escaper()
        start = time.perf_counter()
        out = [escaper.feed(piece) for piece in pieces]
        out.append(escaper.finish())
        times["escape"].append(time.perf_counter() - start)
    assert "".join(out).count("\n!!api ") == text.count("\n!api ")
    count = len(pieces)
    print(f"{count} pieces of 4 characters, {lines} lines, median of {rounds} interleaved rounds")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:12} {median * 1e3:7.1f} ms  {median / count * 1e6:5.2f} us/piece"
              f"  (min {min(values) * 1e3:.1f}, max {max(values) * 1e3:.1f} ms)")
    print(f"ratio read+escape / read  {statistics.median(times['read+escape']) / statistics.median(times['read']):.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 9, int(sys.argv[2]) if len(sys.argv) > 2 else 20000)
