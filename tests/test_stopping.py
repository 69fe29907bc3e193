"""Tests for illume.stopping: where a streamed infill middle is cut."""

import subprocess
import sys

import pytest

from conftest import require_module
from illume import syntax
from illume.language import guess_language, language_of, scores
from illume.stopping import RULES, InfillGuard, parse_rules
from illume.syntax import HoleCheck

NO_SYNTAX = {"echo", "scope"}

NORM_PREFIX = "import math\n\n\ndef norm(v):\n"
NORM_SUFFIX = "\n    return r\n"
NORM_LINE = "    r = math.sqrt(sum(x*x for x in v))"
NORM_OVERRUN = NORM_LINE + "\n    return r\n\ndef norm3(v):\n    return math.sqrt(sum(x*x for x in v))\n\ndef norm4(v):\n"


def cut(prefix, suffix, middle, rules=None, language=None):
    """Return the kept part of a whole MIDDLE: all of it fed to a guard at once, then finished."""
    guard = InfillGuard(prefix, suffix, rules=rules, language=language)
    return guard.feed(middle) + guard.finish()


def verdict(prefix, middle, suffix, language):
    """Return "ok", "worse" or "unknown" for one MIDDLE between PREFIX and SUFFIX (syntax.HoleCheck)."""
    return HoleCheck(prefix, suffix, language).verdict(middle)


def stream(guard, middle, size):
    """Feed `middle` in chunks of `size` characters, as the CLI does; give back (printed, chunks left)."""
    printed = []
    chunks = [middle[i : i + size] for i in range(0, len(middle), size)]
    for number, chunk in enumerate(chunks):
        printed.append(guard.feed(chunk))
        if guard.stopped:
            printed.append(guard.finish())
            return "".join(printed), len(chunks) - number - 1
    printed.append(guard.finish())
    return "".join(printed), 0


# (name, language, prefix, suffix, model output, rules, kept middle)
CASES = [
    # The seed article's example: the line, then an echo, then norm3.
    ("norm", None, NORM_PREFIX, NORM_SUFFIX, NORM_OVERRUN, None, NORM_LINE),
    ("norm without syntax", "python", NORM_PREFIX, NORM_SUFFIX, NORM_OVERRUN, NO_SYNTAX, NORM_LINE),
    ("norm, echo alone", "python", NORM_PREFIX, NORM_SUFFIX, NORM_OVERRUN, {"echo"}, NORM_LINE),
    (
        "norm, scope alone keeps the echoed line",
        "python", NORM_PREFIX, NORM_SUFFIX, NORM_OVERRUN, {"scope"}, NORM_LINE + "\n    return r\n",
    ),
    ("rules off keep everything", "python", NORM_PREFIX, NORM_SUFFIX, NORM_OVERRUN, set(), NORM_OVERRUN),
    # Stopping well: nothing is cut.
    ("python whole", "python", NORM_PREFIX, NORM_SUFFIX, NORM_LINE, None, NORM_LINE),
    (
        "python whole, several lines with a legitimate dedent",
        "python",
        "def total(rows):\n    result = 0\n    for row in rows:\n",
        "\n    return result\n",
        "        if not row:\n            continue\n        result += row[0]\n    result *= 2",
        None,
        "        if not row:\n            continue\n        result += row[0]\n    result *= 2",
    ),
    (
        "python whole, finishing a nested function",
        "python",
        "def outer(xs):\n    def inner(x):\n",
        "",
        "        return x + 1\n\n    return [inner(x) for x in xs]\n",
        None,
        "        return x + 1\n\n    return [inner(x) for x in xs]\n",
    ),
    (
        "python whole, a line like the suffix's, then more in scope",
        "python",
        "def f(xs):\n    for x in xs:\n",
        "\n        print(x)\n",
        "        print(x)\n        print(x * 2)",
        None,
        "        print(x)\n        print(x * 2)",
    ),
    (
        "python whole, brackets in strings and comments",
        "python",
        "def f(s):\n",
        "\n    return n\n",
        "    n = s.count(')')  # count ]\n    n += s.count(\"}\")",
        None,
        "    n = s.count(')')  # count ]\n    n += s.count(\"}\")",
    ),
    (
        "python whole, a new function after the last one",
        "python",
        "def f():\n    return 1\n\n",
        "\n\n\ndef h():\n    return 3\n",
        "def g():\n    return 2",
        None,
        "def g():\n    return 2",
    ),
    (
        "c whole",
        "c",
        "int add(int a, int b) {\n",
        "\n}\n",
        "    int sum = a + b;\n    printf(\"%d)\\n\", sum); /* } */\n    return sum;",
        None,
        "    int sum = a + b;\n    printf(\"%d)\\n\", sum); /* } */\n    return sum;",
    ),
    (
        "javascript whole",
        "x.js",
        "function add(a, b) {\n",
        "\n}\n",
        "  const sum = `${a})`;\n  return sum;",
        None,
        "  const sum = `${a})`;\n  return sum;",
    ),
    # Python scope: dedent and new definitions.
    (
        "python dedent to column 0",
        "python",
        "def f(xs):\n    total = 0\n",
        "",
        "    total = sum(xs)\n    return total\n\nprint(f([1, 2]))\n",
        None,
        "    total = sum(xs)\n    return total\n",
    ),
    (
        "python new method after the hole's method",
        "python",
        "class A:\n    def f(self):\n",
        "\n\n    def h(self):\n        pass\n",
        "        return 1\n\n    def g(self):\n        return 2\n",
        NO_SYNTAX,
        "        return 1\n",
    ),
    (
        "python new definition while a bracket is open",
        "python",
        "def f():\n",
        "\n        1: 'one',\n    }\n",
        "    names = {\n\n\ndef g():\n",
        None,
        "    names = {\n\n",
    ),
    (
        "python closing bracket the hole did not open, mid-line",
        "python",
        "def f(a, b):\n    return max(\n",
        "\n    )\n",
        "        a,\n        b)\n\nprint(f(1, 2))\n",
        None,
        "        a,\n        b",
    ),
    # C and JavaScript scope: brackets and new functions.
    (
        "c closing brace",
        "c",
        "int add(int a, int b) {\n",
        "\n}\n",
        "    return a + b;\n}\n\nint sub(int a, int b) {\n    return a - b;\n}\n",
        None,
        "    return a + b;",
    ),
    (
        "c new function at column 0 after the hole's function",
        "c",
        "int add(int a, int b) {\n",
        "",
        "    return a + b;\n}\n\nint sub(int a, int b) {\n",
        None,
        "    return a + b;\n}\n",
    ),
    (
        "javascript closing bracket",
        "javascript",
        "describe('add', () => {\n  it('adds', () => {\n",
        "\n  });\n});\n",
        "    expect(add(1, 2)).toBe(3);\n  });\n\n  it('subtracts', () => {\n",
        None,
        "    expect(add(1, 2)).toBe(3);",
    ),
    (
        "javascript closing bracket after code on its line",
        "javascript",
        "const xs = [\n",
        "\n];\n",
        "  1,\n  2];\nconsole.log(xs);\n",
        None,
        "  1,\n  2",
    ),
    # Echo.
    (
        "echo of the suffix's next lines",
        "python",
        "def f(x):\n",
        "\n\n    y = x + 1\n    return y\n",
        "    x = abs(x)\n\n    y = x + 1\n    return y\n",
        NO_SYNTAX,
        "    x = abs(x)\n",
    ),
    (
        "echo at once leaves nothing",
        "c",
        "int f(int x) {\n",
        "\n    x++;\n    return x;\n}\n",
        "    x++;\n    return x;\n}\n",
        None,
        "",
    ),
    (
        "echo of the rest of the cursor line",
        "python",
        "def f(a, b):\n    return a",
        " * b\n",
        " + 1 * b\n    return a * b\n",
        None,
        " + 1",
    ),
    (
        "echo of the rest of the cursor line at the end of the stream",
        "python",
        "def f(found):\n    return",
        " found\n",
        " not found",
        None,
        " not",
    ),
]


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
@pytest.mark.parametrize(
    "name, language, prefix, suffix, output, rules, expected", CASES, ids=[case[0] for case in CASES]
)
def test_cut(name, language, prefix, suffix, output, rules, expected, size):
    guard = InfillGuard(prefix, suffix, rules=rules, language=language)
    printed, _ = stream(guard, output, size)
    assert printed == expected


@pytest.mark.parametrize("name, language, prefix, suffix, output, rules, expected", CASES[:3])
def test_cut_convenience(name, language, prefix, suffix, output, rules, expected):
    assert cut(prefix, suffix, output, rules=rules, language=language) == expected


def test_norm_stops_the_stream_early():
    guard = InfillGuard(NORM_PREFIX, NORM_SUFFIX, language="python")
    printed, left = stream(guard, NORM_OVERRUN, 1)
    assert guard.stopped
    assert left > 0  # the caller could close the stream before norm4
    assert "norm3" not in NORM_OVERRUN[: len(NORM_OVERRUN) - left - len("def norm3(v):\n")]
    assert guard.feed("more") == "" and guard.finish() == ""
    assert printed == NORM_LINE


def test_prints_whole_lines_only():
    guard = InfillGuard("def f():\n", "\n    return c\n", rules=NO_SYNTAX, language="python")
    assert guard.feed("    a = 1\n    b") == "    a = 1"
    assert guard.feed(" = 2\n") == "\n    b = 2"
    assert guard.feed("    c = 3") == ""  # the line in progress waits
    assert guard.feed("\n    return c\n") == "\n    c = 3"  # the echo waits for its confirmation
    assert guard.finish() == ""
    assert guard.reason == "echo"


def test_newline_before_a_cut_line_is_never_printed():
    guard = InfillGuard("int f(void) {\n", "\n}\n", rules=NO_SYNTAX, language="c")
    printed = [guard.feed("    return 1;\n")]
    printed.append(guard.feed("}\n"))
    printed.append(guard.finish())
    assert printed == ["    return 1;", "", ""]
    assert guard.stopped and guard.reason == "scope"


def test_blank_lines_before_the_cut_are_kept():
    kept = cut("def f():\n", "", "    return 1\n\n\ndef g():\n", language="python")
    assert kept == "    return 1\n\n"


def test_unknown_language_still_stops_at_echo_and_brackets():
    guard = InfillGuard("(defun f (x)\n", "\n  x)\n", language=None)
    assert guard.language is None
    assert stream(guard, "  (print x)\n  x)\n(defun g ()", 2)[0] == "  (print x)"


# -- the syntax rule ------------------------------------------------------

GRAMMARS = "pip install '.[syntax]'"


def require_grammar(language: str) -> None:
    """Make sure tree-sitter can parse LANGUAGE here; a missing package is `missing` (a failure in CI)."""
    require_module("tree_sitter", GRAMMARS)
    require_module(syntax.GRAMMARS[language], GRAMMARS)
    assert syntax.available(language), f"tree-sitter cannot load the {language} grammar (incompatible versions?)"


TRUNCATED = "    r = math.sqrt(sum(x*x for x in v))\n    s = math.sqrt("


def test_syntax_trims_a_dangling_line():
    require_grammar("python")
    guard = InfillGuard(NORM_PREFIX, NORM_SUFFIX, language="python")
    assert stream(guard, TRUNCATED, 4)[0] == NORM_LINE


def test_syntax_holds_lines_until_they_parse():
    require_grammar("python")
    guard = InfillGuard("def f(xs):\n", "\n    return total\n", language="python")
    assert guard.feed("    total = sum(\n") == ""
    assert guard.feed("        xs)\n") == "    total = sum(\n        xs)"


def test_syntax_c_and_javascript_trim_an_unclosed_call():
    for language, prefix, suffix, line in [
        ("c", "int f(int x) {\n", "\n}\n", "    x++;"),
        ("javascript", "function f(x) {\n", "\n}\n", "  x++;"),
    ]:
        require_grammar(language)
        assert cut(prefix, suffix, line + "\n  g(x, ", language=language) == line


def test_without_the_syntax_rule_the_dangling_line_stays():
    guard = InfillGuard(NORM_PREFIX, NORM_SUFFIX, rules=NO_SYNTAX, language="python")
    assert stream(guard, TRUNCATED, 4)[0] == TRUNCATED


def test_without_tree_sitter_the_syntax_rule_answers_unknown(monkeypatch):
    monkeypatch.setitem(syntax.GRAMMARS, "python", "no_such_grammar_module")
    syntax.parser_for.cache_clear()
    try:
        assert verdict("def f():\n", "    x = (", "\n", "python") == "unknown"
        assert syntax.count_errors("x = (", "python") is None
        assert not syntax.available("python")
        guard = InfillGuard(NORM_PREFIX, NORM_SUFFIX, language="python")
        assert stream(guard, TRUNCATED, 4)[0] == TRUNCATED  # every point counts as good
        assert cut(NORM_PREFIX, NORM_SUFFIX, NORM_OVERRUN, language="python") == NORM_LINE
    finally:
        syntax.parser_for.cache_clear()


def test_syntax_verdicts():
    require_grammar("python")
    assert verdict("def f():\n", "    x = 1", "\n    return x\n", "python") == "ok"
    assert verdict("def f():\n", "    x = (", "\n    return x\n", "python") == "worse"
    assert verdict("x = 1\n", "y", "\n", "rust") == "unknown"


def test_only_errors_that_reach_the_middles_last_line_count():
    # Counted in bytes: the prefix's 40 two-byte letters put a count in characters 40 bytes short.
    require_grammar("python")
    prefix, suffix = "def f():\n    # " + "\u00e9" * 40 + "\n", "\n    return y\n"
    assert verdict(prefix, "    x = ]\n    y = 2", suffix, "python") == "ok"
    assert verdict(prefix, "    y = 2\n    x = ]", suffix, "python") == "worse"


def test_importing_the_engine_does_not_import_tree_sitter():
    code = "import sys, illume.stopping; print('tree_sitter' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# -- the directive argument and the language --------------------------------

@pytest.mark.parametrize(
    "argument, expected",
    [
        ("all", set(RULES)),
        ("ALL", set(RULES)),
        ("off", set()),
        ("none", set()),
        ("echo", {"echo"}),
        ("echo,scope", {"echo", "scope"}),
        ("echo scope", {"echo", "scope"}),
        (" scope , syntax ", {"scope", "syntax"}),
        ("-syntax", {"echo", "scope"}),
        ("all,-echo", {"scope", "syntax"}),
        ("off,syntax", {"syntax"}),
    ],
)
def test_parse_rules(argument, expected):
    assert parse_rules(argument) == expected


@pytest.mark.parametrize("argument, message", [("bogus", "'bogus'"), ("echo,scop", "'scop'"), ("", "no stopping")])
def test_parse_rules_rejects(argument, message):
    with pytest.raises(ValueError, match=message):
        parse_rules(argument)


def test_guard_rejects_unknown_rules():
    with pytest.raises(ValueError, match="bogus"):
        InfillGuard("", "", rules={"echo", "bogus"})


# -- the language ----------------------------------------------------------

CMPFILE = (
    "static int cmpfile(const char *str, const char *name)\n"
    "{\n"
    "    const char *dot = strrchr(name, '.');\n"
    "    if (dot == NULL)\n"
    "        return strcmp(str, name);\n"
    "    return strncmp(str, name, (size_t)(dot - name));\n"
    "}\n"
)
SHAPES_JS = (
    "const shapes = require('./shapes');\n\n"
    "function area(shape) {\n"
    "  if (shape.kind === 'circle') {\n"
    "    return Math.PI * shape.r ** 2;\n"
    "  }\n"
    "  return shape.w * shape.h;\n"
    "}\n"
)
RECT_PY = (
    "import math\n\n\n"
    "class Rect:\n"
    "    def __init__(self, w, h):\n"
    "        self.w = w\n"
    "        self.h = h\n\n"
    "    def area(self):\n"
    "        return self.w * self.h\n"
)


@pytest.mark.parametrize(
    "hint, expected",
    [
        ("src/main.py", "python"),
        ("Python", "python"),
        ("python3", "python"),
        ("lib.h", "c"),
        ("C:\\src\\util.c", "c"),
        ("app.mjs", "javascript"),
        ("javascript", "javascript"),
        ("js2-mode", "javascript"),
        ("python-ts-mode", "python"),
        ("c++-ts-mode", "cpp"),
        ("typescript", "typescript"),
        ("web/app.tsx", "typescript"),
        ("cpp", "cpp"),
        ("src/main.rs", "rust"),
        ("notes.txt", "text"),
        ("rs", "rust"),
        ("Makefile", None),
        ("", None),
        (None, None),
    ],
)
def test_language_of_a_hint(hint, expected):
    assert language_of(hint) == expected


@pytest.mark.parametrize(
    "hints, text, expected",
    [
        # A hint decides when the code does not say otherwise.
        ("src/sort.c", "", "c"),
        (["", None, "notes/a.py"], "", "python"),
        ("main.rs", CMPFILE, "rust"),  # named, though without rules of its own: not guessed as C
        # The code decides without a hint; the case the issue names: C's `const` is no JavaScript.
        (None, CMPFILE, "c"),
        (None, SHAPES_JS, "javascript"),
        (None, RECT_PY, "python"),
        # Docstrings are prose: a doctest's `=>` is no JavaScript.
        (None, RECT_PY + '    def f(self):\n        """f("") => 0, f("ab") => 2, f(x) => 3, f(y) => 4"""\n',
         "python"),
        # The buffer's own word: a shebang or a modeline.
        (None, "#!/usr/bin/env node\nx = 1\n", "javascript"),
        (None, "#!/usr/bin/python3.11\nx = 1\n", "python"),
        # A shebang line that names no program is no word, and no crash: the modeline still counts.
        (None, "#!\nx = 1\n", None),
        (None, "#!  \nx = 1\n# vim: ft=python\n", "python"),
        (None, "x = 1\n# vim: set ts=4 ft=python:\n", "python"),
        (None, "/* -*- mode: c; indent-tabs-mode: nil -*- */\nx = 1;\n", "c"),
        (None, "// -*- js -*-\nx = 1\n", "javascript"),
        # Python's dict literals are no C braces.
        (None, "import re\n\n\ndef f():\n    return {\n        'a': 1,\n    }\n\n\ntable = {\n    'b': 2,\n}\n",
         "python"),
        # Too little to go on: no guess.
        (None, "    x = y\n", None),
        (None, "", None),
        # A hint the code clearly contradicts: neither is trusted.
        ("python", CMPFILE * 2, None),
        ("c", RECT_PY * 2, None),
    ],
)
def test_guess_language(hints, text, expected):
    assert guess_language(hints, text) == expected


def test_c_const_and_static_do_not_count_for_javascript():
    assert scores(CMPFILE)["javascript"] == 0


def test_a_weak_guess_leaves_the_syntax_rule_out():
    # One line of code: no language, so a truncated middle is not trimmed by a grammar.
    guard = InfillGuard("    x = y\n", "\n    z = x\n")
    assert guard.language is None
    assert guard.feed("    w = f(x,\n") + guard.finish() == "    w = f(x,\n"


# -- fragments: a buffer that starts inside a class, a function or a comment --

METHOD_PREFIX = "    def grow(self, n):\n        w = self.w + n\n"
METHOD_SUFFIX = "\n        return Rect(w, h)\n\n    def shrink(self, n):\n        return self.grow(-n)\n"


@pytest.mark.parametrize(
    "name, hint, prefix, suffix, output, expected",
    [
        # Without its class and after a docstring's end: one big parse error with the hole
        # empty, more with any line in it; every line used to be cut.
        ("methods after a docstring's end, kept whole", "python",
         '        the element.\n        """\n\n    def endElement(self, name):\n'
         '        """Signals the end of an element."""\n\n    def startElementNS(self, name, qname, attrs):\n',
         '\n\n    def endElementNS(self, name, qname):\n        """Signals the end."""\n        self.depth -= 1\n',
         '        """Signals the start of an element in namespace mode."""\n        self.depth += 1', None),
        # Indented, yet prefix + suffix parses without errors; any middle breaks it.
        ("an indented fragment that parses by luck, kept whole", "python",
         "            # We don't do this if we're assigning to x.next.\n            if is_assign_target(node):\n",
         '\n            attr.replace(Name("__next__"))\n        elif "global" in results:\n'
         "            self.warning(node, bind_warning)\n",
         '                head = results["head"]\n                if "".join(str(n) for n in head) == "b":\n'
         "                    self.warning(node, bind_warning)\n                return", None),
        # C read as JavaScript: the four lines around the hole are valid JavaScript, `goto` is not.
        ("C in a JavaScript-shaped fragment, kept whole", "javascript",
         "    doc = xmlParseFile(enc_file);\n    if ((doc == NULL) || (xmlDocGetRootElement(doc) == NULL)){\n",
         "\n    }\n\n    node = xmlSecFindNode(xmlDocGetRootElement(doc));\n",
         '        fprintf(stderr, "Error: unable to parse file %s\\n", enc_file);\n        goto done;', None),
        ("a method without its class, kept whole", "python", METHOD_PREFIX, METHOD_SUFFIX,
         "        h = self.h + n\n        assert w > 0 and h > 0", None),
        ("a method without its class, new function cut", "python", METHOD_PREFIX, METHOD_SUFFIX,
         "        h = self.h + n\n\n\ndef helper(x):\n    return x\n", "        h = self.h + n\n\n"),
        ("a def header over two lines", "python",
         "import os\n\n\nasync def serve(host, port, *,\n                limit=10, **kwds):\n", "\n",
         '    """Serve."""\n    return host\n\n\ndef helper(x):\n    return x\n',
         '    """Serve."""\n    return host\n\n'),
        ("a C function body without its header, kept whole", "c",
         "    int n = 0;\n    for (i = 0; i < len; i++)\n", "\n    return n;\n}\n",
         "        if (s[i] == '(')\n            n++;", None),
        ("a C function body without its header, new function cut", "c",
         "    int n = 0;\n    for (i = 0; i < len; i++)\n", "\n    return n;\n}\n",
         "        n++;\n\nstatic int helper(void)\n{\n", "        n++;\n"),
        ("a fragment that starts inside a docstring", "python",
         "        the number of items.\n        \"\"\"\n        total = 0\n", "\n        return total\n",
         "        total += len(self)\n\n\ndef helper(x):\n    return x\n", "        total += len(self)\n\n"),
        ("a fragment that starts inside a block comment", "c",
         " * don't count the (first one\n */\n    n = 0;\n", "\n    return n;\n}\n",
         "    n++;\n\nint helper(void) {\n", "    n++;\n"),
    ],
)
def test_fragments(name, hint, prefix, suffix, output, expected):
    require_module("tree_sitter", GRAMMARS)
    if hint in syntax.GRAMMARS:
        require_grammar(hint)
    expected = output if expected is None else expected
    assert cut(prefix, suffix, output, language=hint) == expected


@pytest.mark.parametrize("middle", [
    "    Py_BEGIN_ALLOW_THREADS\n    fsync(fd);\n    Py_END_ALLOW_THREADS",
    "    Py_BEGIN_ALLOW_THREADS\n    fsync(fd);\n    Py_END_ALLOW_THREADS\n    close(fd);",
    "    fsync(fd);\n    CHECK_FD(fd)",
])
def test_a_line_the_grammar_does_not_know_is_kept(middle):
    # tree-sitter-c reads a bare macro statement as an error; the model finished the line.
    require_grammar("c")
    prefix = "#include <Python.h>\n\nstatic void wait(int fd)\n{\n"
    assert cut(prefix, "\n}\n", middle, language="c") == middle
    assert cut(prefix, "\n}\n", middle + "\n    g(fd, ", language="c") == middle


@pytest.mark.parametrize(
    "name, hint, prefix, suffix, output, expected",
    [
        ("unindented IIFE body", "javascript",
         "(function () {\n'use strict';\nvar n = 0;\n", "\nreturn n;\n})();\n",
         "n += 1;\nvar m = n * 2;", None),
        ("C++ namespace body", "cpp",
         "namespace geo {\n\nint area(int w, int h) {\n    return w * h;\n}\n\n", "\n\n}  // namespace geo\n",
         "int perimeter(int w, int h) {\n    return 2 * (w + h);\n}", None),
        ("extern C block", "c",
         '#ifdef __cplusplus\nextern "C" {\n#endif\n\nint area(int w, int h);\n', "\n\n#ifdef __cplusplus\n}\n#endif\n",
         "int perimeter(int w, int h);", None),
    ],
)
def test_blocks_whose_body_sits_at_column_0(name, hint, prefix, suffix, output, expected):
    expected = output if expected is None else expected
    assert cut(prefix, suffix, output, language=hint) == expected


# -- JavaScript regex literals in the scope rule -----------------------------

REGEX_PREFIX = "function quote(s) {\n"
REGEX_NEWDEF = "\n\nfunction helper(x) {\n  return x;\n}\n"


@pytest.mark.parametrize(
    "line",
    [
        "  s = s.replace(/'/g, \"\\\\'\");",
        "  s = s.replace(/[\\t\"#$&'()]/g, '');",
        "  if (/`/.test(s)) s = s.split(/[{(]/).join('');",
        "  return /}/.test(s) ? s : s;",
        "  const half = s.length / 2, third = (s.length) / 3; // a ' in a comment",
        "  s = s.replace(/\\//g, '-');",
        # A template inside a template's `${...}`, with a regex literal in it.
        "  s = `'${s.replace(/'/g, `'\\\\''`)}'`;",
        "  s = `${s.length > 2 ? `${s}}` : '{'}`;",
    ],
)
def test_regex_literals_and_division(line):
    for rules in (None, NO_SYNTAX):
        assert cut(REGEX_PREFIX, "\n}\n", line, rules=rules, language="javascript") == line
        kept = cut(REGEX_PREFIX, "\n  return s;\n}\n", line + REGEX_NEWDEF, rules=rules,
                               language="javascript")
        assert kept == line + "\n"  # the blank line before the cut stays, as always


# -- a wrong language given: a clean middle is kept whole ---------------------

@pytest.mark.parametrize(
    "hint, prefix, suffix, middle",
    [
        ("python", "static int count(const char *s)\n{\n    int n = 0;\n",
         "\n    return n;\n}\n", "    for (; *s; s++)\n        if (*s == '(')  /* don't ( */\n            n++;"),
        ("c", "def count(s):\n    n = 0\n", "\n    return n\n",
         "    for ch in s:  # don't count ')'\n        if ch == '(':\n            n += 1"),
        ("python", "function count(s) {\n  let n = 0;\n", "\n  return n;\n}\n",
         "  for (const ch of s.replace(/'/g, '')) {\n    if (ch === '(') n++;\n  }"),
        ("javascript", "def count(s):\n    n = 0\n", "\n    return n\n",
         "    for ch in s:\n        n += ch == '/'  # a /regex/ it is not ("),
    ],
)
def test_a_wrong_language_keeps_a_clean_middle_whole(hint, prefix, suffix, middle):
    for rules in (None, NO_SYNTAX):
        assert cut(prefix, suffix, middle, rules=rules, language=hint) == middle


def test_a_middle_that_repeats_the_next_line_once_is_kept():
    # Real code: `onTick()` twice in a row.  Only an echo of the whole suffix is cut at the end of a stream.
    prefix = "  tick (delay = 0) {\n"
    middle = "    fastNow += delay\n    onTick()"
    suffix = "\n    onTick()\n  },\n"
    assert cut(prefix, suffix, middle, language="javascript") == middle
    assert cut(prefix, suffix, middle + "\n    onTick()\n  },\n", language="javascript") == middle
