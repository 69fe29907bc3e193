"""`!:grammar` on the embedded backend: what would crash, hang or fill llama.cpp is an error (backends/gbnf.py).

The table tests check the grammar's outline as llama.cpp's parser builds it;
the CLI tests run the real model, where each of these grammars once killed
the process (SIGSEGV) or never finished.
"""

import json

import pytest

from conftest import embedded_model, run_illume
from illume.backends import gbnf
from illume.errors import DirectiveError

NOTHING = ("repeats what can match nothing, which llama.cpp cannot follow (it crashes or crawls): "
           "repeat what reads at least one character, x* rather than (x?)*")
TOO_BIG = "makes the grammar over 2,097,152 elements as llama.cpp writes out repetitions (each copy in full)"
LEFT = "can come back to itself before it reads a character (left recursion), which llama.cpp cannot follow"


@pytest.mark.parametrize("grammar, message", [
    ('root ::= "a"?{0,100000}', f'"a"?{{0,100000}} {NOTHING}'),
    ('root ::= "a"?*', f'"a"?* {NOTHING}'),
    ('root ::= ("a"?)+', f'("a"?)+ {NOTHING}'),
    ('root ::= "a"?{0,20}', f'"a"?{{0,20}} {NOTHING}'),
    ('root ::= "a"?{3}', f'"a"?{{3}} {NOTHING}'),
    ('root ::= x*\nx ::= [0-9]*', f"x* {NOTHING}"),
    ('root ::= "[" items{0,50} "]"\nitems ::= item? ("," item)*\nitem ::= [a-z]+', f"items{{0,50}} {NOTHING}"),
    ('root ::= ( [ ]? "" ){2,}', f'( [ ]? "" ){{2,}} {NOTHING}'),
    ('root ::= "a"{5,2}', '"a"{5,2} asks for at least 5 but at most 2'),
    ('root ::= "a"{0,100000000}', f'"a"{{0,100000000}} {TOO_BIG}'),
    ('root ::= "abcd"{1000}{1000}', f'"abcd"{{1000}}{{1000}} {TOO_BIG}'),
    ('root ::= "a"{99999999999999999999999999}', f'"a"{{99999999999999999999999999}} {TOO_BIG}'),
    ('root ::= x\nx ::= y x "a" | "b"\ny ::= "c"?', f"rule x {LEFT}"),
    ('root ::= root "a" | "b"', f"rule root {LEFT}"),
    ('root ::= (x | "b") "c"\nx ::= root', f"rule root {LEFT}"),
    ('answer ::= "yes"', "there is no rule named root"),
    ("# nothing but a comment\n", "there is no rule named root"),
    ("root ::= " + "(" * 201 + '"a"' + ")" * 201, "parentheses nest more than 200 deep"),
    ('root ::= "a" # (((\r' + "(" * 201 + '"a"' + ")" * 201, "parentheses nest more than 200 deep"),
    ('root ::= <"> ' + "(" * 201 + '"a"' + ")" * 201, "parentheses nest more than 200 deep"),
    ('root ::= "\ud800"', "not valid text (it holds a lone surrogate, \\ud800 to \\udfff)"),
])
def test_a_grammar_that_would_break_llama_cpp_is_refused(grammar, message):
    with pytest.raises(DirectiveError) as refused:
        gbnf.check(grammar)
    assert str(refused.value) == "!:grammar: " + message


def ordinary_grammars() -> list[str]:
    import llama_cpp.llama_grammar as shipped  # the grammars llama.cpp ships: JSON, lists, C, chess, ...

    return [getattr(shipped, name) for name in sorted(dir(shipped)) if name.endswith("_GBNF")]


@pytest.mark.parametrize("grammar", [
    'root ::= "yes" | "no"',
    'root ::= ws? "{" ws? "}"\nws ::= [ \\t\\n]*',  # an optional rule that can be empty: one copy is fine
    'root ::= "a"??',
    'root ::= [0-9]{1,3} ("." [0-9]{1,3}){3}',
    'root ::= "a"{0,1999} "b"{5} "c"{2,}',
    'root ::= "' + "a" * 500 + '"{1999}',  # a million elements: llama.cpp builds it in a twentieth of a second
    'root ::= <think> [^<]* "end" !<[2]>',
    'root ::= "\\x41\\u00e9\\U0001F600\\"\\[\\]\\-" [\\]\\-a-z]',
    "",  # no grammar: free sampling, as on llama-server
    'root ::= "a" junk(',  # not GBNF: llama.cpp says why, asked (see below)
])
def test_ordinary_grammars_pass(grammar):
    gbnf.check(grammar)


def test_the_grammars_llama_cpp_ships_pass():
    for grammar in ordinary_grammars():
        gbnf.check(grammar)


@pytest.mark.parametrize("grammar, elements", [
    ('root ::= "ab" [a-z0-9_]', 2 + 5 + 1),  # CHAR CHAR, CHAR RNG_UPPER CHAR RNG_UPPER CHAR, END
    ('root ::= "ab"{3}', 6 + 1),
    ('root ::= "ab"{0,}', 1 + 1 + (2 + 1 + 2)),  # REF END; the rule: "ab" REF ALT END
    ('root ::= x | y\nx ::= "a"\ny ::= "b"', 4 + 2 + 2),
])
def test_the_size_is_counted_as_llama_cpp_builds_it(grammar, elements):
    counted = gbnf._Grammar()
    counted.parse(grammar)
    assert counted.elements == elements


def test_depth_reads_strings_classes_tokens_and_comments_as_llama_cpp_does():
    assert gbnf.depth('root ::= ("(" [(] x) # ((((\nx ::= "\\"("') == 1
    assert gbnf.depth("root ::= <(> ((x))") == 2
    assert gbnf.depth("root ::= x # (\r((x))") == 2


# The real model through the CLI: an !error and exit status 1, where each of these once crashed or hung.

@pytest.mark.embedded
@pytest.mark.parametrize("grammar, error", [
    ('root ::= "a"?{0,100000}', f'"a"?{{0,100000}} {NOTHING}'),  # SIGSEGV: 28 characters
    ('root ::= "a"{5,2}', '"a"{5,2} asks for at least 5 but at most 2'),  # never finished
    ('root ::= "a', "llama.cpp refused it: unexpected end of input"),  # SIGSEGV, as every refused grammar
    ("root ::= x", "llama.cpp refused it: Undefined rule identifier 'x'"),
])
def test_a_grammar_llama_cpp_cannot_take_is_an_error_not_a_crash(grammar, error):
    embedded_model()
    result = run_illume(f"!profile embedded\n!:max_tokens 4\n!:grammar {json.dumps(grammar)}\n!user\nhi\n")
    assert (result.returncode, result.stdout.decode(), result.stderr) == (1, f"\n\n!error\n\n!!:grammar: {error}\n",
                                                                          b"")


@pytest.mark.embedded
def test_a_grammar_still_shapes_the_reply():
    embedded_model()
    grammar = 'root ::= ("yes" | "no") "."'
    result = run_illume("!profile embedded\n!:temperature 0\n!:max_tokens 8\n"
                        f"!:grammar {json.dumps(grammar)}\n!user\nIs the sky blue?\n")
    assert result.returncode == 0, result.stdout
    assert result.stdout.decode() in ("\n\n!assistant\n\nyes.", "\n\n!assistant\n\nno.")
