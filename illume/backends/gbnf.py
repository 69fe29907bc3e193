"""A `!:grammar` checked before llama.cpp sees it: what would crash it, hang it or fill the memory is an error.

llama.cpp's parser (src/llama-grammar.cpp, `llama_grammar_parser`) turns
a GBNF grammar into rules of elements, and its sampler then follows every
way the text so far can be read (its "stacks"). A grammar of one line can
break either:

- **Nesting.** The parser descends once per parenthesis on the C stack:
  200,000 of them kill the process (`MAX_DEPTH`, found without parsing).
- **Expansion.** `X{m,n}` is written out: m copies of X, then n - m
  optional rules, each holding X again. A 500-character string `{1999}`
  is a million elements, and builds older than its 2,000-repetition bound
  expand `{0,100000000}` as asked. The size is counted here as the parser
  would build it, without building it, and bounded (`MAX_ELEMENTS`).
- **`{m,n}` with n < m.** llama.cpp subtracts unsigned and adds rules
  until the memory is gone (`"a"{5,2}`, measured: no end).
- **A repetition of what can be empty** (`"a"?*`, `"a"?{0,100000}`,
  `x+` with `x ::= [0-9]*`). Each copy may be skipped, so one character
  reaches a parse position per copy: `"a"?{0,20}` took 3.6 times as long
  a token as `"a"?{0,10}` here, `{0,200}` over a minute for four tokens.
  Unbounded, it is left recursion, which llama.cpp refuses (and
  llama-cpp-python then hands it a null sampler: SIGSEGV) or, in older
  builds, follows until the stack overflows. It adds nothing: `x?{0,n}`
  matches what `x{0,n}` matches.
- **Left recursion through rules that can be empty** (`a ::= b a "x"`,
  `b ::= "y"?`): llama.cpp's own check knows only rules with an empty
  alternative, and misses it.

Everything else llama.cpp refuses (a syntax error, an undefined rule, its
own bounds) it says itself: `refusal` asks it, so that a grammar it
refuses never reaches the sampler. Grammars whose many readings stay
ambiguous can still be slow; that is the parser's nature, not a crash.
"""

import os
import re
import tempfile

from illume.errors import DirectiveError

MAX_CHARS = 1024 * 1024
MAX_DEPTH = 200  # far beyond any grammar written by hand or generated from a JSON schema
# Elements as llama.cpp stores them, 8 bytes each: 16 MB, built in about a tenth of a second (measured
# 1,000,000 in 0.05 s). Twice MAX_CHARS, so that a grammar under that length is never refused for its
# plain size, only for what its repetitions multiply.
MAX_ELEMENTS = 2 * MAX_CHARS
ROOT = "root"
TERMINAL = -1  # a symbol that reads a character or a token: never empty
_PLAIN = re.compile(r'[^"\\]*')  # in a string: characters that stand for themselves


def check(text: str) -> None:
    """Raise DirectiveError if the grammar TEXT would crash, hang or exhaust llama.cpp; return None if not."""
    if len(text) > MAX_CHARS:
        raise DirectiveError(f"!:grammar: the grammar is {len(text)} characters, over the {MAX_CHARS} allowed")
    if depth(text) > MAX_DEPTH:
        raise DirectiveError(f"!:grammar: parentheses nest more than {MAX_DEPTH} deep")
    try:
        text.encode()
    except UnicodeEncodeError:
        raise DirectiveError("!:grammar: not valid text (it holds a lone surrogate, \\ud800 to \\udfff)") from None
    text = text.split("\0", 1)[0]  # llama.cpp reads a C string: it ends at the first NUL
    if not text:
        return  # no grammar: llama.cpp samples freely, as llama-server does for an empty one
    grammar = _Grammar()
    try:
        grammar.parse(text)
    except _Syntax:
        return  # llama.cpp says what is wrong with it (refusal)
    grammar.check()


def depth(text: str) -> int:
    """Return how deep the parentheses of the GBNF grammar TEXT nest (outside strings, classes, tokens, comments).

    Read as llama.cpp reads it, or deeper where they differ: a comment ends
    at a CR as well as at a LF, and `<...>` is a token whatever it holds.
    """
    level = deepest = 0
    i, size = 0, len(text)
    while i < size:
        c = text[i]
        if c == "#":
            while i < size and text[i] not in "\r\n":
                i += 1
        elif c == "<":
            i = text.find(">", i)
            if i < 0:
                break
        elif c in "\"[":
            close = '"' if c == '"' else "]"
            i += 1
            while i < size and text[i] != close:
                i += 2 if text[i] == "\\" else 1
        elif c == "(":
            level += 1
            deepest = max(deepest, level)
        elif c == ")":
            level -= 1
        i += 1
    return deepest


def refusal(llama, text: str) -> str | None:
    """Return why llama.cpp refuses the grammar TEXT for LLAMA's vocabulary, or None when it takes it.

    llama-cpp-python adds whatever llama.cpp returns to its sampler chain,
    and a refused grammar returns null: the process dies at the first token.
    So the grammar is built once here first. llama.cpp prints its reason on
    stderr (file descriptor 2), caught in an unnamed temporary file: the
    message quotes the rest of the grammar, which could fill a pipe.
    """
    import llama_cpp

    if not text:
        return None
    with tempfile.TemporaryFile() as said:
        saved = os.dup(2)
        try:
            os.dup2(said.fileno(), 2)
            vocab = llama._model.vocab if hasattr(llama._model, "vocab") else llama._model.model  # as its add_grammar
            sampler = llama_cpp.llama_sampler_init_grammar(vocab, text.encode(), ROOT.encode())
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        if sampler:
            llama_cpp.llama_sampler_free(sampler)
            return None
        said.seek(0)
        message = said.read(4096).decode(errors="replace")
    found = re.search(r"error parsing grammar: ([^\n]*)", message)
    return _excerpt(found.group(1), 200) if found else "llama.cpp refused it"


class _Syntax(Exception):
    """The grammar is not GBNF as llama.cpp reads it: llama.cpp says why (`refusal`)."""


def _excerpt(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _count(digits: str) -> int:
    # Past 20 digits llama.cpp refuses it (stoull); capped, it is past MAX_ELEMENTS all the same.
    return int(digits) if len(digits) <= 20 else 10**20


def _is_word(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c == "-")


class _Grammar:
    """A grammar's rules as llama.cpp's parser builds them, in outline: enough to count and to check them.

    A rule is a list of alternatives, an alternative a list of symbols:
    TERMINAL, or the id of a rule. Repetitions keep one copy of what they
    repeat (copies change the size, counted in `elements`, not what can be
    empty) and one rule for all their optional copies.
    """

    def __init__(self):
        self.ids: dict[str, int] = {}
        self.rules: list[list[list[int]] | None] = []
        self.owner: list[str] = []  # the named rule each rule was written in
        self.repeated: list[tuple[list[int], str]] = []  # what each repetition of more than one copy repeats
        self.elements = 0
        self.nesting = 0  # as deep as `depth` allows, or the parser's recursion would outgrow Python's

    def parse(self, text: str) -> None:
        """Read TEXT's rules; raise _Syntax where llama.cpp's parser would stop, DirectiveError past a bound."""
        self.text = text
        i = self._space(0, True)
        while i < len(text):
            i = self._rule(i)

    # -- the parser, following llama-grammar.cpp function by function

    def _at(self, i: int) -> str:
        return self.text[i] if i < len(self.text) else ""

    def _space(self, i: int, newline_ok: bool) -> int:
        text = self.text
        while i < len(text):
            c = text[i]
            if c == "#":
                while i < len(text) and text[i] not in "\r\n":
                    i += 1
            elif c in " \t" or (newline_ok and c in "\r\n"):
                i += 1
            else:
                break
        return i

    def _name(self, i: int) -> int:
        end = i
        while _is_word(self._at(end)):
            end += 1
        if end == i:
            raise _Syntax("expecting name")
        return end

    def _int(self, i: int) -> int:
        end = i
        while self._at(end).isascii() and self._at(end).isdigit():
            end += 1
        if end == i:
            raise _Syntax("expecting integer")
        return end

    def _char(self, i: int) -> int:
        c = self._at(i)
        if c == "\\":
            escape = self._at(i + 1)
            size = {"x": 2, "u": 4, "U": 8}.get(escape)
            if size:
                digits = self.text[i + 2:i + 2 + size]
                if len(digits) != size or not all(d in "0123456789abcdefABCDEF" for d in digits):
                    raise _Syntax("expecting hex chars")
                return i + 2 + size
            if escape and escape in "trn\\\"[]-":
                return i + 2
            raise _Syntax("unknown escape")
        if not c:
            raise _Syntax("unexpected end of input")
        return i + 1

    def _token(self, i: int) -> int:
        if self._at(i) != "<":
            raise _Syntax("expecting '<'")
        end = self.text.find(">", i)
        if end < 0:
            raise _Syntax("expecting '>'")
        return end + 1

    def _id(self, name: str) -> int:
        if name not in self.ids:
            self.ids[name] = self._new(name)
        return self.ids[name]

    def _new(self, owner: str) -> int:
        self.rules.append(None)
        self.owner.append(owner)
        return len(self.rules) - 1

    def _rule(self, i: int) -> int:
        end = self._name(i)
        name = self.text[i:end]
        i = self._space(end, False)
        if self.text[i:i + 3] != "::=":
            raise _Syntax("expecting ::=")
        i = self._alternates(self._space(i + 3, True), name, self._id(name), False)
        if self._at(i) == "\r":
            i += 2 if self._at(i + 1) == "\n" else 1
        elif self._at(i) == "\n":
            i += 1
        elif self._at(i):
            raise _Syntax("expecting newline or end")
        return self._space(i, True)

    def _alternates(self, i: int, name: str, rule: int, nested: bool) -> int:
        alternatives = [[]]
        i = self._sequence(i, name, alternatives[-1], nested)
        while self._at(i) == "|":
            alternatives.append([])
            i = self._sequence(self._space(i + 1, True), name, alternatives[-1], nested)
        self.elements += len(alternatives)  # an ALT after each, the last one an END
        self.rules[rule] = [[symbol for symbol, _ in sequence] for sequence in alternatives]
        return i

    def _sequence(self, i: int, name: str, sequence: list, nested: bool) -> int:
        """Parse one alternative into SEQUENCE, (symbol, elements) pairs; return where it ends."""
        last = len(sequence)  # where the item a repetition applies to begins, in SEQUENCE and in the text
        start = i
        while i < len(self.text):
            c = self.text[i]
            if c == '"' or c == "[":
                start, last, count = i, len(sequence), 0
                i += 1
                close = '"' if c == '"' else "]"
                if c == "[" and self._at(i) == "^":
                    i += 1
                while self._at(i) != close:
                    if c == '"':  # a run of plain characters at once: a long string is common
                        plain = _PLAIN.match(self.text, i).end()
                        count, i = count + plain - i, plain
                        if self._at(i) == close:
                            break
                    i = self._char(i)
                    count += 1
                    if c == "[" and self._at(i) == "-" and self._at(i + 1) != "]":
                        i = self._char(i + 1)
                        count += 1
                if count:  # "" and [] add nothing, as in llama.cpp
                    self._push(sequence, TERMINAL, count)
                i = self._space(i + 1, nested)
            elif c == "<" or c == "!":
                start, last = i, len(sequence)
                i = self._space(self._token(i + (c == "!")), nested)
                self._push(sequence, TERMINAL, 1)
            elif _is_word(c):
                start, last = i, len(sequence)
                end = self._name(i)
                self._push(sequence, self._id(self.text[i:end]), 1)
                i = self._space(end, nested)
            elif c == "(":
                start = i
                self.nesting += 1
                if self.nesting > MAX_DEPTH:
                    raise DirectiveError(f"!:grammar: parentheses nest more than {MAX_DEPTH} deep")
                group = self._new(name)
                i = self._alternates(self._space(i + 1, True), name, group, True)
                self.nesting -= 1
                last = len(sequence)
                self._push(sequence, group, 1)
                if self._at(i) != ")":
                    raise _Syntax("expecting ')'")
                i = self._space(i + 1, nested)
            elif c == ".":
                start, last = i, len(sequence)
                self._push(sequence, TERMINAL, 1)
                i = self._space(i + 1, nested)
            elif c in "*+?":
                i = self._space(i + 1, nested)
                least, most = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
                self._repeat(sequence, last, least, most, self.text[start:i], name)
            elif c == "{":
                i = self._space(i + 1, nested)
                end = self._int(i)
                least, most = _count(self.text[i:end]), None
                i = self._space(end, nested)
                if self._at(i) == "}":
                    most = least
                elif self._at(i) == ",":
                    i = self._space(i + 1, nested)
                    if self._at(i).isascii() and self._at(i).isdigit():
                        end = self._int(i)
                        most = _count(self.text[i:end])
                        i = self._space(end, nested)
                    if self._at(i) != "}":
                        raise _Syntax("expecting '}'")
                else:
                    raise _Syntax("expecting ','")
                i = self._space(i + 1, nested)
                self._repeat(sequence, last, least, most, self.text[start:i], name)
            else:
                break
        return i

    def _push(self, sequence: list, symbol: int, elements: int) -> None:
        sequence.append((symbol, elements))
        self.elements += elements

    def _repeat(self, sequence: list, last: int, least: int, most: int | None, written: str, name: str) -> None:
        """Apply {LEAST,MOST} (None: no bound), WRITTEN in rule NAME, to SEQUENCE's last item, as handle_repetitions."""
        if last == len(sequence):
            raise _Syntax("expecting preceding item")
        if most is not None and most < least:
            raise DirectiveError(f"!:grammar: {_excerpt(written)} asks for at least {least} but at most {most}")
        item = sequence[last:]
        size = sum(elements for _, elements in item)
        del sequence[last:]
        if least:
            sequence.extend((symbol, elements * least) for symbol, elements in item)
        optional = 1 if most is None else most - least
        # The copies past the first, then each optional rule: the item, a reference to the next, ALT, END.
        self.elements += (least - 1) * size + optional * (size + 3) + (1 if optional else 0)
        if self.elements > MAX_ELEMENTS:
            raise DirectiveError(f"!:grammar: {_excerpt(written)} makes the grammar over {MAX_ELEMENTS:,} elements "
                              "as llama.cpp writes out repetitions (each copy in full)")
        if optional:
            chain = self._new(name)
            link = [chain] if most is None or optional > 1 else []
            self.rules[chain] = [[symbol for symbol, _ in item] + link, []]
            sequence.append((chain, 1))
        if most is None or most > 1:
            self.repeated.append(([symbol for symbol, _ in item], written))

    # -- what llama.cpp cannot take

    def check(self) -> None:
        """Raise DirectiveError for a grammar without root, a repetition of what can be empty, or left recursion."""
        root = self.ids.get(ROOT)
        if root is None or self.rules[root] is None:
            raise DirectiveError(f"!:grammar: there is no rule named {ROOT}")
        empty = self._can_be_empty()
        for item, written in self.repeated:
            if all(symbol != TERMINAL and empty[symbol] for symbol in item):
                raise DirectiveError(f"!:grammar: {_excerpt(written)} repeats what can match nothing, which llama.cpp "
                                  "cannot follow (it crashes or crawls): repeat what reads at least one character, "
                                  "x* rather than (x?)*")
        looping = self._left_recursion(empty)
        if looping is not None:
            raise DirectiveError(f"!:grammar: rule {self.owner[looping]} can come back to itself before it reads a "
                              "character (left recursion), which llama.cpp cannot follow")

    def _can_be_empty(self) -> list[bool]:
        """Return, for each rule, whether it can match the empty text (undefined rules cannot)."""
        empty = [False] * len(self.rules)
        pending = []  # for each alternative: how many of its symbols are not yet known to be empty
        waiting: dict[int, list[tuple[int, int]]] = {}  # symbol -> the (rule, alternative) waiting on it
        ready = []
        for rule, alternatives in enumerate(self.rules):
            for alternative in alternatives or []:
                if any(s == TERMINAL or self.rules[s] is None for s in alternative):
                    continue
                for symbol in alternative:
                    waiting.setdefault(symbol, []).append((rule, len(pending)))
                pending.append(len(alternative))
                if not alternative and not empty[rule]:
                    empty[rule] = True
                    ready.append(rule)
        while ready:
            for rule, alternative in waiting.get(ready.pop(), []):
                pending[alternative] -= 1
                if pending[alternative] == 0 and not empty[rule]:
                    empty[rule] = True
                    ready.append(rule)
        return empty

    def _left_recursion(self, empty: list[bool]) -> int | None:
        """Return a rule that can reach itself before reading a character, or None."""
        first: list[list[int]] = [[] for _ in self.rules]  # the rules each one can begin with
        for rule, alternatives in enumerate(self.rules):
            for alternative in alternatives or []:
                for symbol in alternative:
                    if symbol == TERMINAL or self.rules[symbol] is None:
                        break
                    first[rule].append(symbol)
                    if not empty[symbol]:
                        break
        state = [0] * len(self.rules)  # 0 unseen, 1 on the path, 2 done
        for start in range(len(self.rules)):
            if state[start]:
                continue
            path = [(start, iter(first[start]))]
            state[start] = 1
            while path:
                rule, following = path[-1]
                symbol = next(following, None)
                if symbol is None:
                    state[rule] = 2
                    path.pop()
                elif state[symbol] == 1:
                    return symbol
                elif state[symbol] == 0:
                    state[symbol] = 1
                    path.append((symbol, iter(first[symbol])))
        return None
