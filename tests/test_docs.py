"""The reference in docs/: its examples print what it says, and the docs cite only what is in the repository.

Each `illume` block of a docs/ page is a buffer, and the `output` block
after it what the real CLI prints for it, or the `prompt` block after it
the `prompt` its `!debug` request holds (docs/README.md, "The examples").
"""

import json
import re
from pathlib import Path

import pytest

from conftest import REPO, run_illume

DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))

# The made-up keys docs/README.md names; masked, they show their last four characters.
EXAMPLE_KEYS = {"OPENAI_API_KEY": "sk-example-0123456789abcdef", "HF_TOKEN": "hf_example_0123456789wxyz"}

# A fenced block: its info string and its text. A block that shows fences uses a longer one.
_FENCE = re.compile(r"^(`{3,})(\w*)\n(.*?)^\1$", re.MULTILINE | re.DOTALL)


def examples() -> list:
    """Return (buffer, kind, expected) for each `illume` block and the `output` or `prompt` block after it."""
    found = []
    for page in PAGES:
        text = page.read_text()
        blocks = [(m.group(2), m.group(3), text.count("\n", 0, m.start()) + 1) for m in _FENCE.finditer(text)]
        for (kind, body, line), following in zip(blocks, blocks[1:] + [None]):
            if kind == "illume":
                assert following and following[0] in ("output", "prompt"), \
                    f"{page.name}:{line}: an illume block without its output"
                found.append(pytest.param(body, following[0], following[1], id=f"{page.name}:{line}"))
    return found


@pytest.mark.parametrize("buffer, kind, expected", examples())
def test_example_prints_what_the_docs_say(buffer, kind, expected, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           **EXAMPLE_KEYS}
    result = run_illume(buffer, environ={}, env=env, timeout=60)  # nothing of this environment but ENV
    printed = result.stdout.decode()
    assert result.stderr == b""
    if kind == "prompt":
        assert result.returncode == 0, printed
        body = json.loads(printed[printed.index("\n{"):])
        assert body["prompt"] == expected.strip("\n")
        return
    # A page cannot show the blank lines at the very start and end of what was printed.
    assert printed.strip("\n") == expected.strip("\n")
    assert result.returncode == (1 if printed.startswith("\n\n!error\n") else 0)


def test_there_are_examples():
    assert len(examples()) >= 10


# A repository path: a top folder of the repository, then a file with a suffix or a folder
# (`vim/`). Not `illume/profiles`: the README means that one under $XDG_CONFIG_HOME.
_TOP = r"(?:docs|bench|illume|tests|examples|profiles|fim_templates|vim|emacs)"
_BACKTICKED = re.compile(rf"`({_TOP}/(?:[^`\s]*\.\w+|[^`\s]*/)?)`")
_LINKED = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def cited_paths(page: Path) -> list[tuple[str, Path]]:
    """Return (as written, resolved path) of each repository path PAGE cites: `top/...` or a relative link."""
    text = _FENCE.sub("", page.read_text())  # fenced blocks show what illume prints, not citations
    cited = [(path, REPO / path) for path in _BACKTICKED.findall(text)]
    cited += [(link, (page.parent / link).resolve()) for link in _LINKED.findall(text)
              if not re.match(r"[a-z]+:", link)]
    return cited


@pytest.mark.parametrize("page", [REPO / "README.md", *PAGES, *sorted((REPO / "bench").glob("*.md"))],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_cited_files_exist(page):
    missing = [written for written, path in cited_paths(page) if not path.exists()]
    assert missing == []


def _anchor(heading: str) -> str:
    """Return the anchor GitHub gives HEADING: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", [REPO / "README.md", *PAGES], ids=lambda p: str(p.relative_to(REPO)))
def test_section_links_name_sections_that_exist(page):
    broken = []
    for target, anchor in re.findall(r"\]\(([^)\s#]*)#([^)\s]+)\)", _FENCE.sub("", page.read_text())):
        linked = (page.parent / target) if target else page
        if linked.suffix == ".md":
            headings = re.findall(r"^#+ (.*)$", _FENCE.sub("", linked.read_text()), re.MULTILINE)
            if anchor not in {_anchor(h) for h in headings}:
                broken.append(f"{target}#{anchor}")
    assert broken == []


def test_anchors_are_github_s():
    assert _anchor("`!infill` and `!infill TEMPLATE`") == "infill-and-infill-template"
    assert _anchor("Errors and exit statuses") == "errors-and-exit-statuses"


def test_citation_checker_sees_paths():
    text = (REPO / "README.md").read_text()
    assert "docs/README.md" in text
    assert any(written == "docs/README.md" for written, _ in cited_paths(REPO / "README.md"))


def _sources():
    for folder in ("illume", "tests", "bench", "docs", "vim", "emacs"):
        for path in sorted((REPO / folder).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".md", ".txt", ".vim", ".el", ".sh", ".jinja", ".profile"):
                yield path
    yield REPO / "README.md"


def test_nothing_cites_files_outside_the_repository():
    # Spelled in pieces, so this file does not name them itself.
    outside = ("SP" + "EC.md", "../" + "shared")
    citing = [f"{path.relative_to(REPO)}: {word}" for path in _sources()
              for word in outside if word in path.read_text(errors="replace")]
    assert citing == []


def test_nothing_cites_the_issue_tracker():
    # The repository links no tracker: tests and benchmarks are named by their subject.
    pattern = re.compile(r"\b[Ii]ssue " + r"\d+")
    citing = [f"{path.relative_to(REPO)}: {match.group()}" for path in _sources()
              for match in pattern.finditer(path.read_text(errors="replace"))]
    assert citing == []
