"""Infill that knows when to stop, end to end: the real CLI against a scripted server that overruns."""

import json
import re
import subprocess

import pytest

from conftest import run_illume
from scripted import Reply, ScriptedServer, infill_events

NORM = "!stop-rules echo,scope\nimport math\n\ndef norm(v):\n!infill\n    return r\n"
OVERRUN = ["    r = math.sqrt(", "sum(x * x for x in v))\n", "    return r\n", "\n\ndef norm3(v):\n",
           "    return 3\n"] + [f"\ndef norm{i}(v):\n    return {i}\n" for i in range(4, 40)]


def test_overrun_is_cut_and_the_stream_closed_early(server):
        # After the overrun the server stalls for ten minutes without ending the
        # stream: only illume closing it can end this run in time.
    server.respond(Reply(infill_events(OVERRUN[:6], done=False), delay=0.05, hold=600), path="/infill")
    result = run_illume(f"!api {server.url}\n{NORM}", timeout=60)
    assert result.returncode == 0, result.stdout
    assert result.stdout == b"    r = math.sqrt(sum(x * x for x in v))"


def test_stats_after_a_stop_time_the_stream_until_it_was_closed(server):
    # The stream never ends by itself: the rate is over the time until illume closed it, not +Inf.
    server.respond(Reply(infill_events(OVERRUN[:6], done=False), delay=0.05, hold=600), path="/infill")
    result = run_illume(f"!api {server.url}\n!stats\n{NORM}", timeout=60)
    assert result.returncode == 0, result.stdout
    middle, note = result.stdout.split(b"\n\n!note ")
    assert middle == b"    r = math.sqrt(sum(x * x for x in v))"
    assert re.fullmatch(rb"[0-9.]+(e[+-][0-9]+)? tok/s, [1-6] toks, [0-9.]+(ns|\xc2\xb5s|ms|s)", note), note


def test_without_rules_the_same_stall_is_waited_out(server):
    # The control for the test above: it is the guard that ends the run.
    server.respond(Reply(infill_events(OVERRUN[:6], done=False), hold=600), path="/infill")
    with pytest.raises(subprocess.TimeoutExpired):
        run_illume(f"!api {server.url}\n{NORM.replace('!stop-rules echo,scope', '!stop-rules off')}", timeout=5)


@pytest.mark.parametrize("rules", ["!stop-rules off\n", ""], ids=["off", "default"])
def test_rules_off_print_every_byte_as_the_original(rules, server):
    server.respond(Reply(infill_events(OVERRUN[:5])), path="/infill")
    result = run_illume(f"!api {server.url}\n{NORM.replace('!stop-rules echo,scope', rules)}")
    assert result.returncode == 0
    assert result.stdout == "".join(OVERRUN[:5]).encode()


def test_a_middle_that_stops_well_is_kept_whole(server):
    server.respond(Reply(infill_events(["    r = math.hy", "pot(*v)"])), path="/infill")
    result = run_illume(f"!api {server.url}\n{NORM}")
    assert result.returncode == 0
    assert result.stdout == b"    r = math.hypot(*v)"


def test_template_fim_is_guarded_too():
    events = [json.dumps({"choices": [{"text": piece}]}) for piece in ["    r = 5\n", "    return r\n"]]
    with ScriptedServer() as server:
        server.respond(Reply(events + ["[DONE]"]), path="/completions")
        result = run_illume(f"!api {server.url}\n!profile fim:qwen\n{NORM}")
    assert result.returncode == 0, result.stdout
    assert result.stdout == b"    r = 5"


def test_unknown_rule_is_an_error_naming_the_line():
    result = run_illume("!stop-rules echo,telepathy\n!debug\nx\n!infill\ny\n")
    assert result.returncode == 1
    assert result.stdout.startswith(b"\n\n!error\n\n<stdin>:1: !stop-rules: ")


@pytest.mark.parametrize("language", ["python", "c", "javascript"])
def test_language_directive_is_accepted(language):
    result = run_illume(f"!language {language}\n!debug\nx\n!infill\ny\n")
    assert result.returncode == 0


def test_rules_from_the_default_profile(tmp_path):
    profile = tmp_path / "fim.profile"
    with ScriptedServer() as server:
        profile.write_text(f"!api {server.url}\n!stop-rules echo,scope\n")
        server.respond(Reply(infill_events(OVERRUN[:5])), path="/infill")
        result = run_illume(NORM.replace("!stop-rules echo,scope\n", ""), env={"ILLUME_PROFILE": str(profile)})
    assert result.returncode == 0, result.stdout
    assert result.stdout == b"    r = math.sqrt(sum(x * x for x in v))"


CUT = b"    r = math.sqrt(sum(x * x for x in v))"
WHOLE = "".join(OVERRUN[:5]).encode()


@pytest.mark.parametrize("buffer_rules, option, expected", [
    ("", "echo,scope", CUT),  # the option applies when the buffer sets none
    ("!stop-rules off\n", "all", WHOLE),  # the buffer's own rules win over it
    ("", "", WHOLE),  # an empty option means none (as the editors pass it)
], ids=["applies", "buffer-wins", "empty-is-none"])
def test_stop_rules_option(buffer_rules, option, expected):
    buffer = NORM.replace("!stop-rules echo,scope\n", buffer_rules)
    with ScriptedServer() as server:
        server.respond(Reply(infill_events(OVERRUN[:5])), path="/infill")
        result = run_illume(f"!api {server.url}\n{buffer}", "--stop-rules", option)
    assert result.returncode == 0, result.stdout
    assert result.stdout == expected


def test_an_unknown_rule_in_the_option_is_a_usage_error():
    result = run_illume("!debug\nx\n!infill\ny\n", "--stop-rules", "telepathy")
    assert result.returncode == 2
    assert b"unknown stopping rule 'telepathy'" in result.stderr
    assert b"Traceback" not in result.stderr


@pytest.mark.parametrize("language", ["", "!language frobnicate\n"], ids=["no-word", "a-word-naming-none"])
def test_file_name_option_tells_the_language(language):
    # `#` opens a comment in Python, not in C: read as C, the `(` stays open
    # and the scope rule never sees the new function; read as Python it does.
    # A !language word that names no language falls through to the file name.
    buffer = f"!stop-rules echo,scope\n{language}def f(x):\n!infill\n    return y\n"
    middle = ["    y = x  # (\n", "    return y\n\n\ndef g(x):\n    return 2\n"]
    results = {}
    for name in ("src/f.py", "src/f.c"):
        with ScriptedServer() as server:
            server.respond(Reply(infill_events(middle)), path="/infill")
            results[name] = run_illume(f"!api {server.url}\n{buffer}", "--file-name", name).stdout
    assert results["src/f.py"] == b"    y = x  # ("
    assert results["src/f.c"] == "".join(middle).encode()


def test_file_name_names_the_language_of_a_buffer_with_regex_literals():
    # As the editors run it: every rule on, the file's name passed.  Read as
    # JavaScript, the backtick inside the regex literal is no template string
    # and the new function after the middle is cut; named a text file, no
    # language rule applies and every byte stays.
    buffer = "function quote(s) {\n!infill\n  return s;\n}\n"
    middle = ["  s = s.replace(/`/g, '\\\\`');\n", "\n\nfunction helper(x) {\n", "  return x;\n}\n"]
    results = {}
    for name in ("src/quote.js", "notes.txt"):
        with ScriptedServer() as server:
            server.respond(Reply(infill_events(middle)), path="/infill")
            result = run_illume(f"!api {server.url}\n{buffer}", "--stop-rules", "all", "--file-name", name)
        assert result.returncode == 0, result.stdout
        results[name] = result.stdout
    assert results["src/quote.js"] == b"  s = s.replace(/`/g, '\\\\`');\n\n"
    assert results["notes.txt"] == "".join(middle).encode()
