"""Parse-error counts from tree-sitter, for judging where an infill should end.

tree-sitter and its grammars are optional: they come from PyPI as
`tree-sitter` plus one prebuilt grammar package per language
(`tree-sitter-python`, `tree-sitter-c`, `tree-sitter-javascript`).  They are
imported on first use, never at module import, and when either is missing
every question gets the answer "unknown" (None), so callers fall back to
their other rules.
"""

from functools import lru_cache

# language name -> module of its prebuilt grammar on PyPI.
GRAMMARS = {
    "python": "tree_sitter_python",
    "c": "tree_sitter_c",
    "javascript": "tree_sitter_javascript",
}


@lru_cache(maxsize=None)
def parser_for(language):
    """Give back a tree-sitter parser for `language`, or None when there is none."""
    module_name = GRAMMARS.get(language or "")
    if module_name is None:
        return None
    try:
        import importlib

        import tree_sitter

        grammar = importlib.import_module(module_name)
        return tree_sitter.Parser(tree_sitter.Language(grammar.language()))
    except Exception:  # not installed, or an incompatible binding/grammar pair
        return None


def available(language):
    """Give back whether `language` can be parsed here."""
    return parser_for(language) is not None


def count_errors(source, language):
    """Give back the number of ERROR and MISSING nodes in `source`, or None if unknown."""
    parser = parser_for(language)
    if parser is None:
        return None
    root = parser.parse(source.encode("utf-8", "surrogatepass")).root_node
    if not root.has_error:
        return 0
    count = 0
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            count += 1
        # Only subtrees that hold an error are worth walking.
        stack.extend(child for child in node.children if child.has_error or child.is_missing)
    return count


class HoleCheck:
    """Answers whether a middle leaves prefix + middle + suffix no worse parsed.

    "No worse" means no more errors than prefix + suffix alone: the file the
    user had, with the hole empty.
    """

    def __init__(self, prefix, suffix, language):
        self.prefix = prefix
        self.suffix = suffix
        self.language = language
        self.baseline = count_errors(prefix + suffix, language)

    @property
    def known(self):
        return self.baseline is not None

    def verdict(self, middle):
        """Give back "ok", "worse" or "unknown" for the file with `middle` in the hole."""
        if self.baseline is None:
            return "unknown"
        errors = count_errors(self.prefix + middle + self.suffix, self.language)
        return "ok" if errors <= self.baseline else "worse"


def verdict(prefix, middle, suffix, language):
    """Give back "ok", "worse" or "unknown" for one middle (see HoleCheck)."""
    return HoleCheck(prefix, suffix, language).verdict(middle)
