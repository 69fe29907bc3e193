"""Long texts nobody here wrote, for the tests and benches of stories longer than the context (summaries)."""

import re
from pathlib import Path

OPTICKS = Path(__file__).resolve().parent / "data" / "opticks.txt"


def opticks(count: int, cut: int = 1200) -> list[str]:
    """Return the first COUNT propositions of Newton's Opticks (tests/data/opticks.txt), each cut to CUT characters."""
    parts = re.split(r"\n(?=_PROP\._ )", OPTICKS.read_text())[1 : count + 1]
    assert len(parts) == count, f"{OPTICKS} holds {len(parts)} propositions, fewer than {count}"
    return [part.strip()[:cut].rstrip() for part in parts]


def outgrown_story(model: Path, setting: str = "!profile story\n") -> tuple[str, str]:
    """Return a buffer whose summaries outgrow SmolLM2 at a 512-token context (MODEL), and its last chapter.

    Three long hand-written summaries and a chapter: nothing but the
    summaries can go, so `!fit summarize` (SETTING's) writes a `!summary all`.
    """
    long = " ".join(f"In year {i} the miller sold {i * 7} sacks of flour to the town of Avel." for i in range(5))
    chapter = "Chapter four. " + "The river rose and the mill wheel turned faster than ever before. " * 15
    parts = "".join(f"!user\nPart {k}.\n!assistant\nIt went on.\n!summary\n{long}\n" for k in range(3))
    head = f"!profile embedded\n!:model {model}\n!:n_ctx 512\n!:temperature 0\n!:max_tokens 16\n{setting}"
    return head + parts + f"!user\n{chapter}\n", chapter
