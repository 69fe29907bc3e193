"""Tests for illume.stopping: where a streamed infill middle is cut."""

import subprocess
import sys

import pytest
from conftest import require_module

from illume import syntax
from illume.stopping import RULES, InfillGuard, guess_language, parse_rules

NO_SYNTAX = {"echo", "scope"}

NORM_PREFIX = "import math\n\n\ndef norm(v):\n"
NORM_SUFFIX = "\n    return r\n"
NORM_LINE = "    r = math.sqrt(sum(x*x for x in v))"
NORM_OVERRUN = NORM_LINE + "\n    return r\n\ndef norm3(v):\n    return math.sqrt(sum(x*x for x in v))\n\ndef norm4(v):\n"


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
    assert InfillGuard.cut(prefix, suffix, output, rules=rules, language=language) == expected


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
    kept = InfillGuard.cut("def f():\n", "", "    return 1\n\n\ndef g():\n", language="python")
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
        assert InfillGuard.cut(prefix, suffix, line + "\n  g(x, ", language=language) == line


def test_without_the_syntax_rule_the_dangling_line_stays():
    guard = InfillGuard(NORM_PREFIX, NORM_SUFFIX, rules=NO_SYNTAX, language="python")
    assert stream(guard, TRUNCATED, 4)[0] == TRUNCATED


def test_without_tree_sitter_the_syntax_rule_answers_unknown(monkeypatch):
    monkeypatch.setitem(syntax.GRAMMARS, "python", "no_such_grammar_module")
    syntax.parser_for.cache_clear()
    try:
        assert syntax.verdict("def f():\n", "    x = (", "\n", "python") == "unknown"
        assert syntax.count_errors("x = (", "python") is None
        assert not syntax.available("python")
        guard = InfillGuard(NORM_PREFIX, NORM_SUFFIX, language="python")
        assert stream(guard, TRUNCATED, 4)[0] == TRUNCATED  # every point counts as good
        assert InfillGuard.cut(NORM_PREFIX, NORM_SUFFIX, NORM_OVERRUN, language="python") == NORM_LINE
    finally:
        syntax.parser_for.cache_clear()


def test_syntax_verdicts():
    require_grammar("python")
    assert syntax.verdict("def f():\n", "    x = 1", "\n    return x\n", "python") == "ok"
    assert syntax.verdict("def f():\n", "    x = (", "\n    return x\n", "python") == "worse"
    assert syntax.verdict("x = 1\n", "y", "\n", "rust") == "unknown"


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


@pytest.mark.parametrize(
    "hint, prefix, expected",
    [
        ("src/main.py", "", "python"),
        ("Python", "", "python"),
        ("lib.h", "", "c"),
        ("app.mjs", "", "javascript"),
        ("notes.txt", "", None),
        (None, "#include <stdio.h>\n\nint main(void) {\n", "c"),
        (None, "import os\n\ndef main():\n", "python"),
        (None, "const fs = require('fs');\nfunction main() {\n", "javascript"),
        (None, "", None),
    ],
)
def test_guess_language(hint, prefix, expected):
    assert guess_language(hint, prefix) == expected
