"""Peak memory: illume's peak RSS on a 10 MB buffer with a large `!context`,
sent to a local server, against the buffer's size.

Usage: python bench/memory.py [MEGABYTES]
"""

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from localserver import LocalServer, sse_body  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def peak_rss(command, stdin: bytes) -> int:
    """Return the peak RSS in bytes of COMMAND (run alone, so the children's maximum is its own)."""
    code = ("import resource, subprocess, sys; "
            "subprocess.run(sys.argv[1:], input=sys.stdin.buffer.read(), stdout=subprocess.DEVNULL, check=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    result = subprocess.run([sys.executable, "-c", code, *command], input=stdin, capture_output=True, check=True,
                            cwd=REPO)
    return int(result.stdout) * 1024


def main(megabytes: int) -> None:
    server = LocalServer(sse_body(10))
    with tempfile.TemporaryDirectory() as folder:
        big = Path(folder) / "big.txt"
        line = "The quick brown fox jumps over the lazy dog; 0123456789.\n"
        big.write_text(line * (megabytes * 1024 * 1024 // 2 // len(line)))
        text = line * (megabytes * 1024 * 1024 // 2 // len(line))
        buffer = f"!api {server.url}\n!context {big}\n{text}\n!user\nSummarise.\n".encode()
        context = big.stat().st_size
        size = len(buffer) + context
        bare = peak_rss([sys.executable, "-c", "pass"], b"")
        illume = peak_rss([sys.executable, "-m", "illume"], buffer)
    print(f"buffer {len(buffer) / 1e6:.1f} MB + !context file {context / 1e6:.1f} MB = {size / 1e6:.1f} MB")
    print(f"  bare interpreter peak RSS  {bare / 1e6:6.1f} MB")
    print(f"  illume peak RSS            {illume / 1e6:6.1f} MB  = {illume / size:.1f}x the text (goal <= 5x)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
