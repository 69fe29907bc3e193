"""Infill that knows when to stop, end to end: the real CLI against a scripted server that overruns."""

import json
import subprocess

import pytest

from conftest import run_illume
from fakeserver import FakeServer, Reply, infill_events

NORM = "!stop-rules echo,scope\nimport math\n\ndef norm(v):\n!infill\n    return r\n"
OVERRUN = ["    r = math.sqrt(", "sum(x * x for x in v))\n", "    return r\n", "\n\ndef norm3(v):\n",
           "    return 3\n"] + [f"\ndef norm{i}(v):\n    return {i}\n" for i in range(4, 40)]


def test_overrun_is_cut_and_the_stream_closed_early():
    with FakeServer() as server:
        # After the overrun the server stalls for ten minutes without ending the
        # stream: only illume closing it can end this run in time.
        server.respond(Reply(infill_events(OVERRUN[:6], done=False), delay=0.05, hold=600), path="/infill")
        result = run_illume(f"!api {server.url}\n{NORM}", timeout=60)
    assert result.returncode == 0, result.stdout
    assert result.stdout == b"    r = math.sqrt(sum(x * x for x in v))"


def test_without_rules_the_same_stall_is_waited_out():
    # The control for the test above: it is the guard that ends the run.
    with FakeServer() as server:
        server.respond(Reply(infill_events(OVERRUN[:6], done=False), hold=600), path="/infill")
        with pytest.raises(subprocess.TimeoutExpired):
            run_illume(f"!api {server.url}\n{NORM.replace('!stop-rules echo,scope', '!stop-rules off')}", timeout=5)


@pytest.mark.parametrize("rules", ["!stop-rules off\n", ""], ids=["off", "default"])
def test_rules_off_print_every_byte_as_the_original(rules):
    with FakeServer() as server:
        server.respond(Reply(infill_events(OVERRUN[:5])), path="/infill")
        result = run_illume(f"!api {server.url}\n{NORM.replace('!stop-rules echo,scope', rules)}")
    assert result.returncode == 0
    assert result.stdout == "".join(OVERRUN[:5]).encode()


def test_a_middle_that_stops_well_is_kept_whole():
    with FakeServer() as server:
        server.respond(Reply(infill_events(["    r = math.hy", "pot(*v)"])), path="/infill")
        result = run_illume(f"!api {server.url}\n{NORM}")
    assert result.returncode == 0
    assert result.stdout == b"    r = math.hypot(*v)"


def test_template_fim_is_guarded_too():
    events = [json.dumps({"choices": [{"text": piece}]}) for piece in ["    r = 5\n", "    return r\n"]]
    with FakeServer() as server:
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
    with FakeServer() as server:
        profile.write_text(f"!api {server.url}\n!stop-rules echo,scope\n")
        server.respond(Reply(infill_events(OVERRUN[:5])), path="/infill")
        result = run_illume(NORM.replace("!stop-rules echo,scope\n", ""), env={"ILLUME_PROFILE": str(profile)})
    assert result.returncode == 0, result.stdout
    assert result.stdout == b"    r = math.sqrt(sum(x * x for x in v))"
