"""The embedded backend's load settings: flash attention and the batch size, for reading a prompt and for each reply token.

Usage: .venv/bin/python bench/load_settings.py [REPEATS] [CONTEXTS]

For each prompt length in CONTEXTS (default 300,1000,2400 tokens of
illume's own source) and each setting, a fresh model (as each illume
process loads one) evaluates the prompt in batches of its n_batch, then 10
reply-like tokens one at a time. Settings are interleaved within a repeat
(default 3); prints medians with the min-max spread, and per prompt length
the token count of a reply at which flash attention off catches up.
"""

import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SETTINGS = {
    "flash attention, batches of 512 (before)": {"flash_attn": True, "n_batch": 512},
    "no flash attention, batches of 128 (now)": {},
    "no flash attention, batches of 64": {"n_batch": 64},
    "no flash attention, batches of 512": {"n_batch": 512},
}


def measure(options: dict, tokens: list[int]) -> tuple[float, float]:
    """Return (seconds to read TOKENS, seconds per token after them) on a freshly loaded model."""
    from illume.backends.embedded import default_model, open_model

    llama = open_model(default_model(), options)
    try:
        start = time.perf_counter()
        for i in range(0, len(tokens), llama.n_batch):
            llama.eval(tokens[i:i + llama.n_batch])
        prompt = time.perf_counter() - start
        start = time.perf_counter()
        for token in tokens[:10]:
            llama.eval([token])
        return prompt, (time.perf_counter() - start) / 10
    finally:
        llama.close()


def main() -> None:
    from illume.backends.embedded import default_model, load

    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    contexts = [int(n) for n in (sys.argv[2] if len(sys.argv) > 2 else "300,1000,2400").split(",")]
    source = "".join((REPO / "illume" / name).read_text() for name in ("buffer.py", "request.py", "answer.py"))
    everything = load(default_model(), {}).llama.tokenize(source.encode())
    print(f"model {default_model().name}, median of {repeats} (min-max), a fresh model each time")
    for count in contexts:
        tokens = everything[:count]
        results = {name: [] for name in SETTINGS}
        for _ in range(repeats):
            for name, options in SETTINGS.items():
                results[name].append(measure(options, tokens))
        print(f"\n{count} prompt tokens{'':24} {'read the prompt, s':>22} {'each reply token, ms':>22}")
        for name, runs in results.items():
            prompts, singles = [r[0] for r in runs], [r[1] * 1000 for r in runs]
            print(f"  {name:<42} {statistics.median(prompts):6.2f} ({min(prompts):.2f}-{max(prompts):.2f})"
                  f"     {statistics.median(singles):6.1f} ({min(singles):.1f}-{max(singles):.1f})")
        before, now = (results[name] for name in list(SETTINGS)[:2])
        extra = statistics.median(r[0] for r in now) - statistics.median(r[0] for r in before)
        saved = statistics.median(r[1] for r in before) - statistics.median(r[1] for r in now)
        if extra <= 0:
            print("  now reads the prompt no slower: faster from the first reply token")
        elif saved > 0:
            print(f"  now: {extra:+.2f} s to read the prompt, {saved * 1000:.1f} ms less a reply token: "
                  f"even after {extra / saved:.0f} reply tokens")


if __name__ == "__main__":
    main()
