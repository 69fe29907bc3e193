"""Where a fill-in-the-middle answer should end, decided while it streams.

A FIM model does not know when to stop: asked for the line that computes
`r`, it writes the line, then rewrites the `return r` that follows the hole,
then invents `norm3`.  `InfillGuard` watches the middle as it streams, says
when it has left the hole (the caller then closes the stream so the server
stops generating), and gives back only the part that belongs in the hole.

Rules (for `!stop-rules`; each is off unless the buffer, a profile or --stop-rules asks):

echo
    The middle starts to reproduce the text that follows the hole: the rest
    of the cursor line (checked when the middle's first line ends), or the
    next non-blank lines of the suffix, compared line by line with their
    indentation (one matching line is held back until the next one confirms
    it, or the stream ends).  The middle is cut before the echo.
scope
    The middle leaves the hole's scope: a closing bracket that the hole did
    not open (brackets inside strings and comments do not count; a bracket
    that the prefix opened and the suffix does not close may be closed), a
    Python line indented at or below the header of the function or class the
    hole sits in, or, when the hole sits inside a block, a new top-level
    definition at column 0 (`def`/`class`/`@` in Python, any code line but a
    closing bracket, preprocessor line or label in C and JavaScript).  The
    middle is cut before that line, or just before the bracket when code
    precedes it on its line.
syntax
    Where tree-sitter and the language's grammar are installed, a point is
    good when prefix + middle + suffix parses with no more errors than
    prefix + suffix alone.  Lines are printed only up to the latest good
    point, and the final cut is the latest good point at or before the one
    the other rules chose (or the end of the stream).  Without tree-sitter
    every point is good.

The directive argument (`parse_rules`) is `all`, `off` (or `none`), or
rule names separated by commas or spaces; a name preceded by `-` removes
it, so `-syntax` means every rule but syntax.

Output comes in whole lines: only the line in progress, and the newline
before it, are held back (plus lines waiting for a good parse, or one
suspected echo line), so nothing that is later cut reaches the buffer.
Everything here is pure: text in, text out; tree-sitter is imported only
when the syntax rule first runs.
"""

import re

RULES = ("echo", "scope", "syntax")

LANGUAGES = ("python", "c", "javascript")

# File-name endings and other names for the languages that have rules.
_LANGUAGE_NAMES = {
    "py": "python", "pyi": "python", "pyw": "python", "python": "python", "python3": "python",
    "c": "c", "h": "c",
    "js": "javascript", "mjs": "javascript", "cjs": "javascript", "jsx": "javascript",
    "javascript": "javascript", "node": "javascript",
}

_CLOSERS = {")": "(", "]": "[", "}": "{"}
_OPENERS = "([{"
_PY_DEFINITION = re.compile(r"(async\s+def|def|class)\b|@")
_LABEL = re.compile(r"[A-Za-z_]\w*\s*:(?!:)")


def parse_rules(argument):
    """Give back the set of rule names that a directive argument selects.

    >>> sorted(parse_rules("echo, scope"))
    ['echo', 'scope']
    """
    words = [word for word in re.split(r"[\s,]+", argument.strip().lower()) if word]
    if not words:
        raise ValueError(f"no stopping rules given: expected all, off, or some of {', '.join(RULES)}")
    chosen = set()
    if words[0].startswith("-"):
        chosen = set(RULES)
    for word in words:
        if word == "all":
            chosen = set(RULES)
        elif word in ("off", "none"):
            chosen = set()
        elif word.startswith("-") and word[1:] in RULES:
            chosen.discard(word[1:])
        elif word in RULES:
            chosen.add(word)
        else:
            raise ValueError(
                f"unknown stopping rule {word!r}: expected all, off, or some of "
                f"{', '.join(RULES)} (a leading '-' removes one)"
            )
    return frozenset(chosen)


def guess_language(hint, prefix=""):
    """Give back "python", "c", "javascript" or None, from a name/file name hint or the prefix."""
    if hint:
        name = hint.strip().lower()
        key = name.rsplit(".", 1)[-1] if "." in name else name
        if key in _LANGUAGE_NAMES:
            return _LANGUAGE_NAMES[key]
        if name in _LANGUAGE_NAMES:
            return _LANGUAGE_NAMES[name]
    text = prefix[-4000:]
    scores = {
        "python": len(re.findall(r"^\s*(def|class|import|from|elif|return|for|if|while)\b[^\n;{]*:?$", text, re.M))
        + 3 * len(re.findall(r"^\s*(def |class |from \S+ import|elif )", text, re.M)),
        "c": 3 * len(re.findall(r"^#\s*(include|define|if|endif)\b", text, re.M))
        + len(re.findall(r"\b(int|char|void|size_t|struct|unsigned|static)\b[\w\s*]*[;({=]", text)),
        "javascript": 3 * len(re.findall(r"\b(function|const|let|=>|require\(|console\.)", text))
        + len(re.findall(r"\bvar\b|===", text)),
    }
    best = max(scores, key=scores.get)
    return best if scores[best] > 0 else None


class _Lexer:
    """Follows strings, comments and brackets through code one line at a time."""

    def __init__(self, language):
        self.language = language
        self.line_comment = "#" if language == "python" else "//" if language in ("c", "javascript") else None
        self.block_comments = language in ("c", "javascript")
        self.mode = None  # None: code; "string": inside self.quote; "comment": inside /* */
        self.quote = ""
        self.depth = 0  # brackets open since the lexer started (may go below 0)
        self.lowest = 0

    def line(self, text):
        """Scan one line; give back (starts_in_code, [(index, bracket), ...], code_end)."""
        starts_in_code = self.mode is None
        brackets = []
        code_end = len(text)
        i, n = 0, len(text)
        while i < n:
            ch = text[i]
            if self.mode == "string":
                if ch == "\\":
                    i += 2
                    continue
                if text.startswith(self.quote, i):
                    self.mode = None
                    i += len(self.quote)
                    continue
                i += 1
            elif self.mode == "comment":
                end = text.find("*/", i)
                if end < 0:
                    break
                self.mode = None
                i = end + 2
            elif self.line_comment and text.startswith(self.line_comment, i):
                code_end = i
                break
            elif self.block_comments and text.startswith("/*", i):
                self.mode = "comment"
                i += 2
            elif ch in "'\"" or (ch == "`" and self.language == "javascript"):
                if self.language == "python" and text.startswith(ch * 3, i):
                    self.quote = ch * 3
                else:
                    self.quote = ch
                self.mode = "string"
                i += len(self.quote)
            elif ch in _OPENERS:
                self.depth += 1
                brackets.append((i, ch))
                i += 1
            elif ch in _CLOSERS:
                self.depth -= 1
                self.lowest = min(self.lowest, self.depth)
                brackets.append((i, ch))
                i += 1
            else:
                i += 1
        # A one-line string ends with its line unless the newline is escaped.
        if self.mode == "string" and len(self.quote) == 1 and self.quote != "`" and not text.endswith("\\"):
            self.mode = None
        return starts_in_code, brackets, code_end


def _indent(line):
    return len(line.expandtabs(8)) - len(line.expandtabs(8).lstrip())


class InfillGuard:
    """Streams a FIM middle through the stopping rules.

    `prefix` and `suffix` are exactly the texts sent to the model, `rules`
    a set of names from RULES (None: all), `language` a language name, a
    file name, or None to guess from the prefix.
    """

    def __init__(self, prefix, suffix, rules=None, language=None):
        self.prefix = prefix
        self.suffix = suffix
        self.rules = frozenset(RULES if rules is None else rules)
        unknown = self.rules - set(RULES)
        if unknown:
            raise ValueError(f"unknown stopping rules: {', '.join(sorted(unknown))}")
        self.language = guess_language(language, prefix)
        self.stopped = False
        self.reason = None  # the rule that stopped the middle, once one has

        self._text = ""
        self._line_start = 0  # where the line in progress starts
        self._line_number = 0
        self._emitted = 0  # how much of _text has been given out
        self._good = 0  # the latest point known good (everything before it is given out)
        self._points = []  # line ends after _good, waiting for a good parse
        self._suspect = None  # [start of a line that may begin an echo, lines matched]
        self._finished = False

        head_start = prefix.rfind("\n") + 1
        self._head = prefix[head_start:]  # the cursor line before the hole
        suffix_lines = suffix.split("\n")
        self._rest = suffix_lines[0]  # the cursor line after the hole
        self._echo_targets = self._suffix_lines_to_echo(suffix_lines)
        self._setup_scope()
        self._check = None
        if "syntax" in self.rules and self.language:
            from illume.syntax import HoleCheck, available

            if available(self.language):
                self._check = HoleCheck(prefix, suffix, self.language)

    # -- public -----------------------------------------------------------

    def feed(self, chunk):
        """Give back the text that is safe to print after this chunk (may be "")."""
        if self.stopped or self._finished or not chunk:
            return ""
        self._text += chunk
        while not self.stopped:
            newline = self._text.find("\n", self._line_start)
            if newline < 0:
                break
            self._take_line(self._line_start, newline, at_end=False)
            self._line_start = newline + 1
            self._line_number += 1
        return self._give()

    def finish(self):
        """Give back the rest of the kept middle, once the stream has ended or stopped."""
        if self._finished:
            return ""
        self._finished = True
        if not self.stopped:
            end = len(self._text)
            if end > self._line_start:
                self._take_line(self._line_start, end, at_end=True)
        if not self.stopped:
            if self._closed_early is not None and self._middle_depth < -self._may_close:
                self._stop(self._closed_early, "scope")
            elif self._suspect is not None:  # the stream ended inside an echo
                self._stop(self._before_line(self._suspect[0]), "echo")
            else:
                self._settle(len(self._text))
        return self._give()

    @classmethod
    def cut(cls, prefix, suffix, middle, rules=None, language=None):
        """Give back the kept part of a whole `middle` (feed it all, then finish)."""
        guard = cls(prefix, suffix, rules=rules, language=language)
        return guard.feed(middle) + guard.finish()

    @property
    def kept(self):
        """Give back everything given out so far."""
        return self._text[: self._emitted]

    # -- set-up -----------------------------------------------------------

    def _suffix_lines_to_echo(self, suffix_lines):
        """Give back the suffix's next non-blank lines, as whole lines, for the echo rule."""
        lines = []
        if self._head.strip() == "" and self._rest.strip():
            lines.append((self._head + self._rest).rstrip())
        lines.extend(line.rstrip() for line in suffix_lines[1:] if line.strip())
        return lines[:2]

    def _setup_scope(self):
        self._lexer = _Lexer(self.language)
        code_lines = []  # (indent, code) of prefix lines that start in code at depth 0
        for line in self.prefix.split("\n"):
            depth = self._lexer.depth
            in_code, _, code_end = self._lexer.line(line)
            if in_code and depth <= 0 and line[:code_end].strip():
                code_lines.append((_indent(line), line[:code_end].strip()))
            self._lexer.depth = max(self._lexer.depth, 0)  # stray closers in the prefix
        open_at_hole = self._lexer.depth
        # How many of the prefix's open brackets the suffix closes, scanning
        # it as if the middle were balanced.
        after = _Lexer(self.language)
        after.mode, after.quote = self._lexer.mode, self._lexer.quote
        suffix_indents = []
        for number, line in enumerate(self.suffix.split("\n")):
            depth = after.depth
            in_code, _, code_end = after.line(line)
            full = self._head + line if number == 0 else line
            if number == 0 and self._head.strip():
                continue
            if in_code and depth + open_at_hole <= 0 and line[:code_end].strip() and not suffix_indents:
                suffix_indents.append(_indent(full))
        self._may_close = max(0, open_at_hole + after.lowest)
        self._lowest_allowed = -self._may_close  # the middle's bracket depth may not go below
        self._closed_early = None  # a cut point held while a closed bracket may be reopened
        self._open_at_hole = open_at_hole
        self._middle_depth = 0
        self._suffix_indent = suffix_indents[0] if suffix_indents else None

        # Python: the middle may dedent as far as the body of the outermost
        # def/class that holds the hole (finishing a nested function is
        # legitimate), but a definition at or left of the innermost one's
        # header starts something new.
        self._floor = 0
        self._definition_floor = 0
        if code_lines:
            last_indent, last_code = code_lines[-1]
            if last_indent > 0 or last_code.endswith(":"):
                self._definition_floor = 1
            limit = last_indent + 1 if last_code.endswith(":") else last_indent
            innermost = None
            for indent, code in reversed(code_lines):
                if indent < limit:
                    if _PY_DEFINITION.match(code) and not code.startswith("@"):
                        innermost = indent + 1 if innermost is None else innermost
                        self._floor = indent + 1
                    limit = indent
                if limit == 0:
                    break
            if innermost is not None:
                self._definition_floor = innermost
        self._level_chosen = False

    # -- the rules, line by line ------------------------------------------

    def _take_line(self, start, end, at_end):
        line = self._text[start:end]
        first = self._line_number == 0
        whole = self._head + line if first else line
        if "echo" in self.rules:
            self._echo(start, line, whole, first, at_end)
            if self.stopped:
                return
        depth_before = self._middle_depth
        in_code, brackets, code_end = self._lexer.line(line)
        for _, bracket in brackets:
            self._middle_depth += 1 if bracket in _OPENERS else -1
        if "scope" in self.rules:
            cut = self._scope(start, line, whole, first, in_code, depth_before, brackets, code_end)
            if cut is not None:
                self._stop(cut, "scope")
                return
        if self._closed_early is not None and self._closed_early < start and line.strip():
            if self._middle_depth < -self._may_close:
                self._stop(self._closed_early, "scope")
                return
            self._closed_early = None  # reopened: the suffix's closer has its bracket again
            self._lowest_allowed = -self._may_close
        if self._suspect is not None and self._suspect[1] >= len(self._echo_targets) and line.strip():
            if self._suspect[0] != start:  # code after the lone suffix line, in scope: not an echo
                self._suspect = None
                self._advance()
        self._points.append(end)
        self._advance()

    def _echo(self, start, line, whole, first, at_end):
        """Stop at an echo of the suffix, or start or end holding a suspected one."""
        # The rest of the cursor line, written again at the end of the first
        # line.  Without a newline after it, only when it holds a word: a
        # middle may well end with the same bracket that follows it.
        rest = self._rest.strip()
        if first and rest and (not at_end or re.search(r"\w", rest)):
            written = line.rstrip()
            if written.endswith(rest):
                # The echo takes the blank before it too when it was written.
                echoed = self._rest.rstrip() if written.endswith(self._rest.rstrip()) else rest
                self._stop(start + len(written) - len(echoed), "echo")
                return
        targets = self._echo_targets
        if not targets or not line.strip() or (first and self._head.strip()):
            return
        written = whole.rstrip()
        if self._suspect is not None:
            matched = self._suspect[1]
            if matched >= len(targets):
                return  # the whole suffix echoed: _take_line sees whether this line leaves
            if written == targets[matched]:
                self._suspect[1] += 1
                if self._suspect[1] >= 2:
                    self._stop(self._before_line(self._suspect[0]), "echo")
                return
            self._suspect = None  # not an echo after all: release the held lines
            self._advance()
        if written == targets[0]:
            # Held until the next suffix line matches too, or, when the suffix
            # has only this one, until the stream ends or leaves the scope
            # (without the scope rule to tell, one line is enough).
            self._suspect = [start, 1]
            if len(targets) == 1 and "scope" not in self.rules:
                self._stop(self._before_line(start), "echo")

    def _scope(self, start, line, whole, first, in_code, depth, brackets, code_end):
        """Give back the cut point when this line leaves the hole, else None."""
        code = line[:code_end]
        stripped = code.strip()
        starts_line = not first or not self._head.strip()
        if in_code and starts_line and stripped:
            indent = _indent(whole)
            if self.language == "python" and self._open_at_hole + depth > 0:
                # `def` and `class` cannot stand inside brackets: a new definition.
                if indent < self._definition_floor and re.match(r"(async\s+def|def|class)\s", stripped):
                    return self._before_line(start)
            elif self.language == "python":
                floor = self._floor
                if not self._level_chosen:
                    self._level_chosen = True
                    # The middle may start at the suffix's level, below the
                    # block the prefix ends in (a new function after the last).
                    if self._suffix_indent is not None and self._suffix_indent <= indent < self._definition_floor:
                        self._floor = floor = min(floor, indent)
                        self._definition_floor = indent
                if indent < floor:
                    return self._before_line(start)
                if indent < self._definition_floor and _PY_DEFINITION.match(stripped):
                    return self._before_line(start)
            elif self.language in ("c", "javascript"):
                if (
                    indent == 0
                    and depth <= 0
                    and self._open_at_hole > 0
                    and stripped[0] not in ")]}#"
                    and not stripped.startswith(("/*", "//"))
                    and not _LABEL.match(stripped)
                ):
                    return self._before_line(start)
        # A closing bracket that neither the middle nor the allowance opened.
        level = depth
        for index, bracket in brackets:
            level += 1 if bracket in _OPENERS else -1
            if level < self._lowest_allowed:
                before = line[:index].rstrip()
                if not before.strip() or (first and self._head.strip() == "" and not before):
                    return self._before_line(start)
                if self.language == "python" and self._open_at_hole + depth > 0 and self._closed_early is None:
                    # A continuation line that closes the bracket the suffix
                    # was to close: wrong unless the middle opens another
                    # one for the suffix, which the next line shows (Python
                    # only, where the indentation rule watches that line).
                    self._closed_early = start + len(before)
                    self._lowest_allowed -= 1
                    continue
                return start + len(before)
        return None

    # -- cutting and giving out ------------------------------------------

    def _before_line(self, start):
        """Give back the cut point before the line at `start`, without the newline that precedes it."""
        return max(start - 1, 0)

    def _good_at(self, point):
        if self._check is None:
            return True
        return self._check.verdict(self._text[:point]) != "worse"

    def _advance(self):
        """Move the good point to the latest pending line end that parses well."""
        if self._suspect is not None or self._closed_early is not None:
            return  # lines held while an echo or a closed bracket is in doubt
        if self._points and self._good_at(self._points[-1]):
            self._good = self._points[-1]
            self._points = []

    def _settle(self, cut):
        """Set the final point: the latest good point at or before `cut`."""
        candidates = [point for point in self._points if self._good < point < cut] + [cut]
        final = self._good
        for point in reversed(candidates):
            if point >= self._good and self._good_at(point):
                final = point
                break
        self._good = final
        self._points = []
        self._text = self._text[:final]

    def _stop(self, cut, reason):
        if self._suspect is not None:  # a suspected echo ends where the middle left the hole
            cut = min(cut, self._before_line(self._suspect[0]))
        if self._closed_early is not None:
            cut = min(cut, self._closed_early)
        self.stopped = True
        self.reason = reason
        self._suspect = None
        self._settle(cut)

    def _give(self):
        if self._good <= self._emitted:
            return ""
        out = self._text[self._emitted : self._good]
        self._emitted = self._good
        return out
