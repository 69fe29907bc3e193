"""Long texts nobody here wrote, for the tests and benches of stories longer than the context (summaries)."""

import re
from pathlib import Path

OPTICKS = Path(__file__).resolve().parent / "data" / "opticks.txt"


def opticks(count: int, cut: int = 1200) -> list[str]:
    """Return the first COUNT propositions of Newton's Opticks (tests/data/opticks.txt), each cut to CUT characters."""
    parts = re.split(r"\n(?=_PROP\._ )", OPTICKS.read_text())[1 : count + 1]
    assert len(parts) == count, f"{OPTICKS} holds {len(parts)} propositions, fewer than {count}"
    return [part.strip()[:cut].rstrip() for part in parts]
