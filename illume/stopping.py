"""Where a fill-in-the-middle answer should end, decided while it streams.

A FIM model does not know when to stop: asked for the line that computes
`r`, it writes the line, then rewrites the `return r` that follows the hole,
then invents `norm3`.  `InfillGuard` watches the middle as it streams, says
when it has left the hole (the caller then closes the stream so the server
stops generating), and gives back only the part that belongs in the hole.

The rules are off unless asked for: by the buffer's `!stop-rules`, by a
profile that sets it, or by `illume --stop-rules` (the editors pass `all`).
They are built to be safe on by default: a rule that is unsure leaves the
middle as the model wrote it, since cutting a good line costs more than
missing an overrun.

Rules (names for `!stop-rules` and `--stop-rules`):

echo
    The middle starts to reproduce the text that follows the hole: the rest
    of the cursor line (checked when the middle's first line ends), or the
    next non-blank lines of the suffix, compared line by line with their
    indentation (one matching line is held back until the next one confirms
    it; a stream that ends after only part of the suffix keeps it, since
    code may well repeat the line after the hole).  The middle is cut
    before the echo.
scope
    The middle leaves the hole's scope: a closing bracket that the hole did
    not open (brackets inside strings, comments and JavaScript regex
    literals do not count; a bracket that the prefix opened and the suffix
    does not close may be closed), a Python line indented at or below the
    header of the function or class the hole sits in, or, when the hole sits
    inside a block, a new top-level definition at column 0 (`def`/`class`/`@`
    in Python, any code line but a closing bracket, preprocessor line or
    label in C and JavaScript; not inside `namespace` or `extern "C"`, nor
    in a block whose body is written at column 0).  A buffer that starts
    inside a block, a docstring or a comment is read as the fragment it is.
    The middle is cut before that line, or just before the bracket when
    code precedes it on its line.
syntax
    Where tree-sitter and the language's grammar are installed, and
    prefix + suffix alone parses without errors, a point is good when
    prefix + middle + suffix has no parse error that reaches the middle's
    last line (see illume.syntax.HoleCheck).  Lines are printed only up to
    the latest good point, and the final cut is the latest good point at or
    before the one the other rules chose (or the end of the stream).
    Without tree-sitter, when the buffer is a piece of a file (it starts
    indented, inside a string or comment, or inside a block the suffix
    closes), or when the surroundings do not parse (code the grammar does
    not know), every point is good.

The language comes from illume.language: a hint (`!language`, the editor's
file name or filetype, a `!context` file's name), a shebang or modeline,
else a guess from the whole buffer that must lead clearly.  Only the rules
that hold for any code (echo, and brackets outside quotes) run when the
language is unknown, has no rules of its own, or is named by a hint that the
code contradicts; syntax runs only for Python, C and JavaScript.

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
from collections.abc import Iterable, Sequence

from illume.language import FAMILY, RULED, guess_language, scores
from illume.syntax import HoleCheck, available

RULES = ("echo", "scope", "syntax")

_CLOSERS = {")": "(", "]": "[", "}": "{"}
_OPENERS = "([{"
_PY_DEFINITION = re.compile(r"(async\s+def|def|class)\b|@")
_WRAPPER = re.compile(r'\s*(namespace\b|extern\s+"C(\+\+)?")')
_LABEL = re.compile(r"[A-Za-z_]\w*\s*:(?!:)")


def parse_rules(argument: str) -> frozenset[str]:
    """Return the set of rule names that a directive argument selects.

    >>> sorted(parse_rules("echo, scope"))
    ['echo', 'scope']
    """
    words = [word for word in re.split(r"[\s,]+", argument.strip().lower()) if word]
    if not words:
        raise ValueError(f"no stopping rules given: expected all, off, or some of {', '.join(RULES)}")
    chosen: set[str] = set()
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


class _Lexer:
    """Follows strings, comments and brackets through code one line at a time."""

    def __init__(self, language: str | None):
        self.language = language
        self.line_comment = "#" if language == "python" else "//" if language in ("c", "javascript") else None
        self.block_comments = language in ("c", "javascript")
        self.mode: str | None = None  # None: code; "string": inside self.quote; "comment": inside /* */
        self.quote = ""
        # JavaScript `${...}` inside template strings, innermost last: how
        # many `{` are open in each; its `}` goes back into the string.
        self.templates: list[int] = []
        self.depth = 0  # brackets open since the lexer started (may go below 0)
        self.lowest = 0

    def line(self, text: str) -> tuple[bool, list[tuple[int, str]], int]:
        """Scan one line; return (starts_in_code, [(index, bracket), ...], code_end)."""
        starts_in_code = self.mode is None
        brackets: list[tuple[int, str]] = []
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
                if self.quote == "`" and text.startswith("${", i):
                    self.templates.append(0)
                    self.mode = None
                    i += 2
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
            elif ch == "/" and self.language == "javascript" and _regex_may_start(text, i):
                i = _regex_end(text, i)
            elif ch == "'" and self.language is None and i >= 2 and (text[i - 2 : i].isalnum()):
                i += 1  # unknown language: an apostrophe in a word (`don't`), not a quote
            elif ch in "'\"" or (ch == "`" and self.language == "javascript"):
                if self.language == "python" and text.startswith(ch * 3, i):
                    self.quote = ch * 3
                else:
                    self.quote = ch
                self.mode = "string"
                i += len(self.quote)
            elif ch == "}" and self.templates and self.templates[-1] == 0:
                self.templates.pop()  # the end of a `${...}`: back into its template string
                self.mode, self.quote = "string", "`"
                i += 1
            elif ch in _OPENERS:
                if ch == "{" and self.templates:
                    self.templates[-1] += 1
                self.depth += 1
                brackets.append((i, ch))
                i += 1
            elif ch in _CLOSERS:
                if ch == "}" and self.templates:
                    self.templates[-1] -= 1
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


# Where an expression may begin, a JavaScript `/` starts a regex literal:
# after these characters, these keywords, or at the start of a line.
_BEFORE_REGEX = set("(,=:[!&|?{};+-*%<>~^")
_LONGEST_REGEX = 1000  # a regex literal is looked for this far, so a long line stays linear
_KEYWORDS_BEFORE_REGEX = {
    "return", "typeof", "instanceof", "in", "of", "new", "delete", "void", "throw", "case", "do", "else",
    "yield", "await",
}


def _regex_may_start(text: str, i: int) -> bool:
    """Return whether the `/` at I may open a regex literal (else it divides)."""
    end = i
    while end > 0 and text[end - 1] in " \t":
        end -= 1
    if end == 0 or text[end - 1] in _BEFORE_REGEX:
        return True
    start = end
    while start > 0 and end - start <= 10 and (text[start - 1].isalnum() or text[start - 1] in "_$"):
        start -= 1
    return text[start:end] in _KEYWORDS_BEFORE_REGEX


def _regex_end(text: str, i: int) -> int:
    """Return where the regex literal opened at I ends (after its flags), or i + 1 if none ends on the line."""
    j, in_class = i + 1, False
    while j < min(len(text), i + _LONGEST_REGEX):
        ch = text[j]
        if ch == "\\":
            j += 2
            continue
        if ch == "[":
            in_class = True
        elif ch == "]":
            in_class = False
        elif ch == "/" and not in_class:
            j += 1
            while j < len(text) and (text[j].isalnum() or text[j] in "_$"):
                j += 1
            return j
        j += 1
    return i + 1  # no end on this line (or not within reach): a division after all


def _indent(line: str) -> int:
    return len(line.expandtabs(8)) - len(line.expandtabs(8).lstrip())


class InfillGuard:
    """Streams a FIM middle through the stopping rules.

    `prefix` and `suffix` are exactly the texts sent to the model, `rules`
    a set of names from RULES (None: all), `language` a hint (a language
    name, an editor's filetype or a file name), a sequence of hints, the
    strongest first, or None; see illume.language for how the buffer's own
    signals join them.
    """

    def __init__(self, prefix: str, suffix: str, rules: Iterable[str] | None = None,
                 language: str | Sequence[str | None] | None = None):
        self.prefix = prefix
        self.suffix = suffix
        self.rules = frozenset(RULES if rules is None else rules)
        unknown = self.rules - set(RULES)
        if unknown:
            raise ValueError(f"unknown stopping rules: {', '.join(sorted(unknown))}")
        # None when unsure: then only the rules that hold for any code run.
        self.language = guess_language(language, prefix + suffix)
        self._family = FAMILY.get(self.language or "")  # whose strings, comments and brackets it has
        self.stopped = False
        self.reason: str | None = None  # the rule that stopped the middle, once one has

        self._text = ""
        self._line_start = 0  # where the line in progress starts
        self._line_number = 0
        self._emitted = 0  # how much of _text has been given out
        self._good = 0  # the latest point known good (everything before it is given out)
        self._points: list[int] = []  # line ends after _good, waiting for a good parse
        self._suspect: list[int] | None = None  # [start of a line that may begin an echo, lines matched]
        self._finished = False

        head_start = prefix.rfind("\n") + 1
        self._head = prefix[head_start:]  # the cursor line before the hole
        suffix_lines = suffix.split("\n")
        self._rest = suffix_lines[0]  # the cursor line after the hole
        self._echo_targets = self._suffix_lines_to_echo(suffix_lines)
        self._setup_scope()
        self._check: HoleCheck | None = None
        if "syntax" in self.rules and self.language in RULED and not self._fragment:
            if available(self.language):
                self._check = HoleCheck(prefix, suffix, self.language)

    # -- public -----------------------------------------------------------

    def feed(self, chunk: str) -> str:
        """Return the text that is safe to print after this chunk (may be "")."""
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

    def finish(self) -> str:
        """Return the rest of the kept middle, once the stream has ended or stopped."""
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
            elif self._suspect is not None and self._suspect[1] >= len(self._echo_targets):
                # The stream ended right after the whole suffix was written
                # again.  After only part of it, the middle may well repeat
                # the line that follows it (a second `onTick()`): kept.
                self._stop(self._before_line(self._suspect[0]), "echo")
            else:
                self._settle(len(self._text))
        return self._give()

    # -- set-up -----------------------------------------------------------

    def _suffix_lines_to_echo(self, suffix_lines: list[str]) -> list[str]:
        """Return the suffix's next non-blank lines, as whole lines, for the echo rule."""
        lines = []
        if self._head.strip() == "" and self._rest.strip():
            lines.append((self._head + self._rest).rstrip())
        lines.extend(line.rstrip() for line in suffix_lines[1:] if line.strip())
        return lines[:2]

    def _scan_prefix(self, mode: str | None = None, quote: str = "") -> tuple[
            _Lexer, list[tuple[int, str]], list[str], tuple[str, bool] | None]:
        """Return (lexer, code lines at depth 0, openers, last code line) after lexing the prefix from MODE."""
        lexer = _Lexer(self._family)
        lexer.mode, lexer.quote = mode, quote
        code_lines: list[tuple[int, str]] = []  # (indent, code) of prefix lines that start in code at depth 0
        openers: list[str] = []  # the prefix line of each bracket open at the hole
        last_code: tuple[str, bool] | None = None  # the prefix's last code line, and whether it opened a bracket
        for line in self.prefix.split("\n"):
            depth = lexer.depth
            in_code, brackets, code_end = lexer.line(line)
            code = line[:code_end]
            if in_code and depth <= 0 and code.strip():
                code_lines.append((_indent(line), code.strip()))
            elif in_code and depth > 0 and code.strip() and code_lines:
                # A continuation line: it ends the statement (a `def` header's `):`).
                indent, start = code_lines[-1]
                code_lines[-1] = (indent, start + " " + code.strip())
            for _, bracket in brackets:
                if bracket in _OPENERS:
                    openers.append(line)
                elif openers:
                    openers.pop()
            if in_code and code.strip():
                last_code = (line, any(bracket in _OPENERS for _, bracket in brackets))
            lexer.depth = max(lexer.depth, 0)  # stray closers in the prefix
        return lexer, code_lines, openers, last_code

    def _fragment_start(self) -> tuple[str | None, str]:
        """Return the lexer's (mode, quote) at the start of the prefix: inside a string or comment for a fragment.

        A buffer cut from a file may start inside a docstring or a block
        comment; read from code, its closing quotes would open a string
        that swallows the code after it.  In C and JavaScript a `*/` before
        any `/*` says so.  In Python, when the prefix read from code leaves
        the hole inside a string, it is read again from inside its first
        triple-quoted string, and that reading wins when it leaves the hole
        in code and its code looks at least as much like Python.
        """
        if self._family in ("c", "javascript"):
            close, open_ = self.prefix.find("*/"), self.prefix.find("/*")
            if close >= 0 and (open_ < 0 or close < open_):
                return "comment", ""
        elif self._family == "python":
            match = re.search(r"\"\"\"|'''", self.prefix)
            if match:
                plain, plain_ends_in_code = self._python_reading(None, "")
                if not plain_ends_in_code:  # else the plain reading stands, and nothing more is read
                    inside, inside_ends_in_code = self._python_reading("string", match.group())
                    if inside_ends_in_code and scores(inside)["python"] >= scores(plain)["python"]:
                        return "string", match.group()
        return None, ""

    def _python_reading(self, mode: str | None, quote: str) -> tuple[str, bool]:
        """Return (the prefix's code, whether the hole is in code), reading the prefix from MODE."""
        lexer = _Lexer("python")
        lexer.mode, lexer.quote = mode, quote
        code: list[str] = []
        for line in self.prefix.split("\n"):
            in_code, _, code_end = lexer.line(line)
            if in_code and lexer.mode is None:
                code.append(line[:code_end])
        return "\n".join(code), lexer.mode is None

    def _setup_scope(self) -> None:
        start = self._fragment_start()
        self._lexer, code_lines, openers, last_code = self._scan_prefix(*start)
        open_at_hole = self._lexer.depth
        # How many of the prefix's open brackets the suffix closes, scanning
        # it as if the middle were balanced.
        after = _Lexer(self._family)
        after.mode, after.quote, after.templates = self._lexer.mode, self._lexer.quote, list(self._lexer.templates)
        suffix_indents: list[int] = []
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
        self._closed_early: int | None = None  # a cut point held while a closed bracket may be reopened
        self._open_at_hole = open_at_hole
        self._middle_depth = 0
        self._suffix_indent = suffix_indents[0] if suffix_indents else None
        suffix_closes = after.lowest + open_at_hole < 0
        self._top_level_rule = self._column_0_leaves(openers, last_code, suffix_closes)
        # A piece of a file rather than a whole one: it starts indented, inside
        # a string or comment, or inside a block that the suffix closes.  Its
        # parse can succeed by luck and fail with any middle, so the syntax
        # rule does not judge it.
        first = next((line for line in (self.prefix + self.suffix).split("\n") if line.strip()), "")
        self._fragment = start[0] is not None or suffix_closes or _indent(first) > 0

        # Python: the middle may dedent as far as the body of the outermost
        # def/class that holds the hole (finishing a nested function is
        # legitimate), but a definition at or left of the innermost one's
        # header starts something new.
        self._floor = 0
        self._definition_floor = 0
        if code_lines:
            last_indent, last_statement = code_lines[-1]
            if last_indent > 0 or last_statement.endswith(":"):
                self._definition_floor = 1
            limit = last_indent + 1 if last_statement.endswith(":") else last_indent
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
        elif self._suffix_indent:
            self._definition_floor = 1  # no code before the hole, indented code after: inside something
        self._level_chosen = False

    def _column_0_leaves(self, openers: list[str], last_code: tuple[str, bool] | None, suffix_closes: bool) -> bool:
        """Return whether a code line at column 0 leaves the hole's block (C and JavaScript).

        Yes inside a block: one the prefix opens, or, in a fragment of a
        file, one the suffix closes or whose code around the hole is
        indented.  Not when the only open blocks are wrappers whose body
        sits at column 0 by custom (`namespace`, `extern "C"`), nor when the
        hole's block is written at column 0 (an unindented IIFE or AMD
        module), which the code line before the hole or after it shows.
        """
        near: list[str] = []
        if last_code is not None and not last_code[1]:
            near.append(last_code[0])
        first_after = next((line for line in self.suffix.split("\n")[1:] if line.strip()), None)
        if first_after is not None:
            near.append(first_after)
        if any(
            _indent(line) == 0 and line.strip()[0] not in ")]}#" and not line.startswith(("/*", "//", "*"))
            and not _LABEL.match(line)
            for line in near
        ):
            return False
        if openers:
            return any(not _WRAPPER.match(line) for line in openers)
        return suffix_closes or bool(near)

    # -- the rules, line by line ------------------------------------------

    def _take_line(self, start: int, end: int, at_end: bool) -> None:
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

    def _echo(self, start: int, line: str, whole: str, first: bool, at_end: bool) -> None:
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

    def _scope(self, start: int, line: str, whole: str, first: bool, in_code: bool, depth: int,
               brackets: list[tuple[int, str]], code_end: int) -> int | None:
        """Return the cut point when this line leaves the hole, else None."""
        code = line[:code_end]
        stripped = code.strip()
        starts_line = not first or not self._head.strip()
        if in_code and starts_line and stripped:
            indent = _indent(whole)
            if self._family == "python" and self._open_at_hole + depth > 0:
                # `def` and `class` cannot stand inside brackets: a new definition.
                if indent < self._definition_floor and re.match(r"(async\s+def|def|class)\s", stripped):
                    return self._before_line(start)
            elif self._family == "python":
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
            elif self._family in ("c", "javascript") and self._top_level_rule:
                if (
                    indent == 0
                    and depth <= 0
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
                if self._family == "python" and self._open_at_hole + depth > 0 and self._closed_early is None:
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

    def _before_line(self, start: int) -> int:
        """Return the cut point before the line at START, without the newline that precedes it."""
        return max(start - 1, 0)

    def _good_at(self, point: int) -> bool:
        if self._check is None:
            return True
        return self._check.verdict(self._text[:point]) != "worse"

    def _advance(self) -> None:
        """Move the good point to the latest pending line end that parses well."""
        if self._suspect is not None or self._closed_early is not None:
            return  # lines held while an echo or a closed bracket is in doubt
        if self._points and self._good_at(self._points[-1]):
            self._good = self._points[-1]
            self._points = []

    def _settle(self, cut: int) -> None:
        """Set the final point: the latest good point at or before CUT."""
        candidates = [point for point in self._points if self._good < point < cut] + [cut]
        final = self._good
        for point in reversed(candidates):
            if point >= self._good and self._good_at(point):
                final = point
                break
        self._good = final
        self._points = []
        self._text = self._text[:final]

    def _stop(self, cut: int, reason: str) -> None:
        if self._suspect is not None:  # a suspected echo ends where the middle left the hole
            cut = min(cut, self._before_line(self._suspect[0]))
        if self._closed_early is not None:
            cut = min(cut, self._closed_early)
        self.stopped = True
        self.reason = reason
        self._suspect = None
        self._settle(cut)

    def _give(self) -> str:
        if self._good <= self._emitted:
            return ""
        out = self._text[self._emitted : self._good]
        self._emitted = self._good
        return out
