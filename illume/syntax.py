"""Parse-error counts from tree-sitter, for judging where an infill should end.

tree-sitter and its grammars are optional: they come from PyPI as
`tree-sitter` plus one prebuilt grammar package per language
(`tree-sitter-python`, `tree-sitter-c`, `tree-sitter-javascript`).  They are
imported on first use, never at module import, and when either is missing
every question gets the answer "unknown" (None), so callers fall back to
their other rules.
"""

import importlib
import re
from functools import lru_cache
from typing import Any, Literal

# What a middle does to the file's parse (HoleCheck.verdict).
Verdict = Literal["ok", "worse", "unknown"]

# language name -> module of its prebuilt grammar on PyPI.
GRAMMARS = {
    "python": "tree_sitter_python",
    "c": "tree_sitter_c",
    "javascript": "tree_sitter_javascript",
}


@lru_cache(maxsize=None)
def parser_for(language: str | None) -> Any:
    """Return a tree-sitter parser for LANGUAGE, or None when there is none."""
    module_name = GRAMMARS.get(language or "")
    if module_name is None:
        return None
    try:
        import tree_sitter

        grammar = importlib.import_module(module_name)
        return tree_sitter.Parser(tree_sitter.Language(grammar.language()))
    except Exception:  # not installed, or an incompatible binding/grammar pair
        return None


def available(language: str | None) -> bool:
    """Return whether LANGUAGE can be parsed here."""
    return parser_for(language) is not None


def count_errors(source: str, language: str | None, reaching: int = 0) -> int | None:
    """Return the number of ERROR and MISSING nodes in SOURCE ending at or after byte REACHING, or None.

    None means unknown: no tree-sitter or no grammar for LANGUAGE.
    """
    parser = parser_for(language)
    if parser is None:
        return None
    root = parser.parse(_encode(source)).root_node
    if not root.has_error:
        return 0
    count = 0
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            count += 1
        # Only subtrees that hold an error, and reach far enough, are worth walking.
        stack.extend(
            child for child in node.children
            if (child.has_error or child.is_missing) and child.end_byte >= reaching
        )
    return count


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


# A C line that is only a macro's name (capitals, or a capital and an
# underscore, as in Py_END_ALLOW_THREADS), perhaps with arguments:
# tree-sitter reads it as an error without its expansion.
_C_MACRO_LINE = re.compile(r"\s*(?:[A-Z][A-Za-z0-9]*_\w*|[A-Z][A-Z0-9]+)(?:\([^()]*\))?;?\s*$")


class HoleCheck:
    """Answers whether a middle leaves prefix + middle + suffix parsed without errors.

    Only where prefix + suffix alone (the file the user had, with the hole
    empty) parses without errors: then any error is the middle's doing.
    Where it does not (a buffer that starts inside a class or a function, a
    window onto a file, code the grammar does not know, or the wrong
    language), error counts say nothing about where a middle should end:
    a method without its class parses as one big error, and as several
    smaller ones with any line in the hole.  Every verdict is then
    "unknown", and the caller keeps the middle as its other rules cut it.
    """

    def __init__(self, prefix: str, suffix: str, language: str | None):
        self.prefix = prefix
        self.suffix = suffix
        self.language = language
        self.baseline = count_errors(prefix + suffix, language)
        self.prefix_bytes = len(_encode(prefix))  # UTF-8 lengths add up: encoded once, not per middle

    def verdict(self, middle: str) -> Verdict:
        """Return "ok", "worse" or "unknown" for the file with MIDDLE in the hole.

        Only errors that reach the middle's last line count: a dangling
        construct runs to the end of the middle or past it, while a line
        the grammar does not know but the model finished (a C macro such
        as `Py_BEGIN_ALLOW_THREADS`) is no reason to drop the lines after it.
        """
        if self.baseline is None or self.baseline > 0:
            return "unknown"
        body = middle.rstrip()
        last_line = body.rfind("\n") + 1 if body else 0
        reaching = self.prefix_bytes + len(_encode(middle[:last_line]))
        if count_errors(self.prefix + middle + self.suffix, self.language, reaching) == 0:
            return "ok"
        if self.language == "c" and _C_MACRO_LINE.match(body[last_line:]) and self.verdict(middle[:last_line]) == "ok":
            return "ok"  # a macro such as `Py_END_ALLOW_THREADS` ends the middle: the grammar cannot tell
        return "worse"

