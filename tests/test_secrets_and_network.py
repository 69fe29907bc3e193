"""Secrets and network conventions: the real CLI against scripted servers.

Credentials (`authorization`, `proxy-authorization`, `x-api-key`, `api-key`
and any header value that came from a `$VAR`) are masked in `!debug` and in
error messages, even when a server echoes them back; they do not follow a
redirect to another host; an `!error` section in the buffer is not sent on
the next turn. HTTP_PROXY, HTTPS_PROXY and NO_PROXY are honoured.
(SSL_CERT_FILE and SSL_CERT_DIR are proven in test_faults.py.)
"""

import base64
import json

import pytest

import conftest
from scripted import DONE, ScriptedServer, chat, event, head, response

KEY = "sk-proj-0123456789abcdefWXYZ"
ANTHROPIC_KEY = "sk-ant-api03-secretsecret-9876"
CUSTOM = "tok_live_abcdefghijklmnop"
ENV = {"KEY": KEY, "ANTHROPIC_API_KEY": ANTHROPIC_KEY, "CUSTOM": CUSTOM}

CREDENTIALS = ("!>authorization Bearer $KEY\n!>x-api-key $ANTHROPIC_API_KEY\n!>api-key literal-key-0000000000\n"
               "!>proxy-authorization Basic dXNlcjpwYXNzd29yZA==\n!>x-custom $CUSTOM\n!>x-plain visible\n")


def illume(buffer: str | bytes, *args: str, env: dict | None = None) -> tuple[int, bytes]:
    """Return conftest.illume's (exit status, stdout) for BUFFER, with the credentials of ENV in the environment."""
    return conftest.illume(buffer, *args, env={**ENV, **(env or {})}, timeout=60)


def assert_no_secret(out: bytes) -> None:
    for secret in (KEY, ANTHROPIC_KEY, CUSTOM, "literal-key-0000000000", "dXNlcjpwYXNzd29yZA=="):
        assert secret.encode() not in out, secret


# --- masking -------------------------------------------------------------------

def test_debug_masks_every_credential():
    status, out = illume(CREDENTIALS + "!user\nhi\n", "--debug")
    assert status == 0
    assert_no_secret(out)
    headers = out.split(b"\n\n")[1].decode()
    assert headers.splitlines()[1:] == [
        "content-type: application/json",
        "authorization: Bearer ***WXYZ",
        "x-api-key: ***9876",
        "api-key: ***0000",
        "proxy-authorization: Basic ***ZA==",
        "x-custom: ***mnop",
        "x-plain: visible",
    ]


def test_debug_directive_in_a_profile_masks_the_profile_credentials(tmp_path):
    (tmp_path / "p.profile").write_text("!api http://x/\n!>authorization Bearer $KEY\n!debug\n")
    status, out = illume(f"!profile {tmp_path / 'p.profile'}\n!user\nhi\n")
    assert status == 0 and b"authorization: Bearer ***WXYZ\n" in out
    assert_no_secret(out)


def echo_headers(status: int, *names: str):
    """Return a reply step: STATUS with a body that quotes the request's NAMES headers, as careless servers do."""
    def step(request):
        quoted = ", ".join(f"{name}={request.headers.get(name)}" for name in names)
        body = json.dumps({"error": {"message": f"rejected credentials: {quoted}", "type": "auth_error"}})
        return response(status, body)[0]
    return step


def test_credentials_echoed_in_an_error_body_are_masked(server):
    server.script([echo_headers(401, "authorization", "x-api-key", "api-key", "x-custom", "x-plain")])
    status, out = illume(f"!api {server.url}\n" + CREDENTIALS + "!user\nhi\n")
    assert status == 1
    assert_no_secret(out)
    assert out == (b"\n\n!error\n\nHTTP 401: rejected credentials: authorization=Bearer ***WXYZ, "
                   b"x-api-key=***9876, api-key=***0000, x-custom=***mnop, x-plain=visible (auth_error)\n")


def test_credentials_echoed_in_a_stream_error_are_masked(server):
    def step(request):
        return event({"error": {"message": f"bad key {request.headers['authorization']}", "type": "auth"}})
    server.script([head(), chat("Hi"), step, DONE])
    status, out = illume(f"!api {server.url}\n!>authorization Bearer $KEY\n!user\nhi\n")
    assert (status, out) == (1, b"\n\n!assistant\n\nHi\n\n!error\n\nthe server reported an error: "
                                b"bad key Bearer ***WXYZ (auth)\n")


def test_credentials_in_a_raw_error_body_are_masked(server):
    server.script([lambda request: response(403, f"key {request.headers['x-api-key']} is revoked", "text/plain")[0]])
    status, out = illume(f"!api {server.url}\n!>x-api-key $ANTHROPIC_API_KEY\n!user\nhi\n")
    assert (status, out) == (1, b"\n\n!error\n\nHTTP 403: key ***9876 is revoked\n")


def test_the_credential_is_sent_in_full(server):
    server.script([head(), chat("ok"), DONE])
    assert illume(f"!api {server.url}\n" + CREDENTIALS + "!user\nhi\n") == (0, b"\n\n!assistant\n\nok")
    sent = server.requests[0].headers
    assert (sent["authorization"], sent["x-api-key"], sent["x-custom"]) == (f"Bearer {KEY}", ANTHROPIC_KEY, CUSTOM)


# --- redirects -----------------------------------------------------------------

@pytest.mark.parametrize("code", [307, 308])
def test_redirect_to_another_port_drops_credentials(server, code):
    with ScriptedServer() as other:
        server.script([head(code, "text/plain", location=f"{other.url}v2/chat/completions", content_length="0")])
        other.script([head(), chat("moved"), DONE])
        status, out = illume(f"!api {server.url}\n" + CREDENTIALS + "!user\nhi\n")
        assert (status, out) == (0, b"\n\n!assistant\n\nmoved")
        first, second = server.requests[0], other.requests[0]
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert second.target == "/v2/chat/completions" and second.method == "POST"
    assert second.body == first.body
    assert second.headers["content-type"] == "application/json"
    assert second.headers["x-plain"] == "visible"
    for name in ("authorization", "x-api-key", "api-key", "proxy-authorization", "x-custom"):
        assert name not in second.headers, name


def test_redirect_to_another_host_name_drops_credentials(server):
    with ScriptedServer() as other:
        server.script([head(307, "text/plain", location=f"http://localhost:{other.port}/x", content_length="0")])
        other.script([head(), chat("ok"), DONE])
        assert illume(f"!api {server.url}\n!>authorization Bearer $KEY\n!user\nhi\n") == (0, b"\n\n!assistant\n\nok")
        assert "authorization" not in other.requests[0].headers


def test_redirect_on_the_same_origin_keeps_credentials(server):
    server.script([head(307, "text/plain", location="/v1/chat/completions", content_length="0")],
                  [head(), chat("ok"), DONE])
    assert illume(f"!api {server.url}\n" + CREDENTIALS + "!user\nhi\n") == (0, b"\n\n!assistant\n\nok")
    assert server.requests[1].target == "/v1/chat/completions"
    assert server.requests[1].headers["authorization"] == f"Bearer {KEY}"
    assert server.requests[1].headers["x-custom"] == CUSTOM


def test_redirect_to_another_scheme_is_refused(server):
    server.script([head(308, "text/plain", location="https://example.invalid/v1", content_length="0")])
    status, out = illume(f"!api {server.url}\n!>authorization Bearer $KEY\n!user\nhi\n")
    assert (status, out) == (1, f"\n\n!error\n\nthe server redirected {server.url}chat/completions to "
                                "https://example.invalid/v1: put that URL in !api\n".encode())
    assert len(server.requests) == 1


def test_redirect_loop_ends(server):
    server.always([head(307, "text/plain", location="/again", content_length="0")])
    status, out = illume(f"!api {server.url}\n!user\nhi\n")
    assert (status, out) == (1, f"\n\n!error\n\ntoo many redirects from 127.0.0.1:{server.port}\n".encode())


# --- !error sections stay out of the next turn ------------------------------------

def test_error_section_is_not_sent_on_the_next_turn(server):
    server.script([echo_headers(401, "authorization")], [head(), chat("Hello"), DONE])
    first = f"!api {server.url}\n!>authorization Bearer $KEY\n!user\nhi\n"
    status, out = illume(first)
    assert status == 1 and out.startswith(b"\n\n!error\n\nHTTP 401:")
    second = first + out.decode() + "\n!user\nhi again\n"
    assert illume(second) == (0, b"\n\n!assistant\n\nHello")
    assert server.requests[1].json()["messages"] == [{"role": "user", "content": "hi"},
                                                     {"role": "user", "content": "hi again"}]


def test_error_section_after_a_partial_reply_keeps_the_reply(server):
    server.script([head(), chat("Partial"), event({"error": "boom"}), DONE], [head(), chat("ok"), DONE])
    first = f"!api {server.url}\n!user\nhi\n"
    status, out = illume(first)
    assert out == b"\n\n!assistant\n\nPartial\n\n!error\n\nthe server reported an error: boom\n"
    assert illume(first + out.decode() + "\n!user\nmore\n") == (0, b"\n\n!assistant\n\nok")
    assert server.requests[1].json()["messages"] == [{"role": "user", "content": "hi"},
                                                     {"role": "assistant", "content": "Partial"},
                                                     {"role": "user", "content": "more"}]


# --- proxies -----------------------------------------------------------------------

def proxy_env(variable: str, value: str) -> dict:
    """Return VARIABLE set to VALUE in both cases: a lower-case one, even empty, wins in urllib's reading."""
    return {variable.upper(): value, variable.lower(): value}


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "ALL_PROXY"])
def test_http_proxy_is_honoured(server, variable):
    server.script([head(), chat("via proxy"), DONE])  # the fake proxy answers itself
    env = proxy_env(variable, f"http://127.0.0.1:{server.port}")
    status, out = illume("!api http://model.example.invalid:8080/v1\n!user\nhi\n", env=env)
    assert (status, out) == (0, b"\n\n!assistant\n\nvia proxy")
    request = server.requests[0]
    assert (request.method, request.target) == ("POST", "http://model.example.invalid:8080/v1/chat/completions")
    assert request.headers["host"] == "model.example.invalid:8080"


def test_proxy_credentials_are_sent_to_the_proxy_and_not_shown(server):
    server.script([lambda r: response(407, f"bad proxy credentials {r.headers.get('proxy-authorization')}",
                                      "text/plain")[0]])
    env = proxy_env("HTTP_PROXY", f"http://alice:s3cr3t-proxy-pass@127.0.0.1:{server.port}")
    status, out = illume("!api http://model.example.invalid/\n!user\nhi\n", env=env)
    assert status == 1
    assert server.requests[0].headers["proxy-authorization"].startswith("Basic ")
    assert b"s3cr3t" not in out
    assert server.requests[0].headers["proxy-authorization"].split()[1].encode() not in out


def test_a_percent_encoded_proxy_password_is_not_shown_in_any_form(server):
    # The URL holds `p%40ss%2Fw0rd-s3cret`; the proxy sees, and may echo, `p@ss/w0rd-s3cret`.
    def refuse(request):
        basic = request.headers["proxy-authorization"]
        user, password = base64.b64decode(basic.split()[1]).decode().split(":")
        return response(407, f"user {user} password {password} ({basic}) refused", "text/plain")[0]
    server.script([refuse])
    env = proxy_env("HTTP_PROXY", f"http://alice:p%40ss%2Fw0rd-s3cret@127.0.0.1:{server.port}")
    status, out = illume("!api http://model.example.invalid/\n!user\nhi\n", env=env)
    assert server.requests[0].headers["proxy-authorization"] == "Basic YWxpY2U6cEBzcy93MHJkLXMzY3JldA=="
    assert (status, out) == (1, b"\n\n!error\n\nHTTP 407: user alice password ***cret (Basic ***dA==) refused\n")


def test_no_proxy_is_honoured(server):
    with ScriptedServer() as proxy:
        server.script([head(), chat("direct"), DONE])
        env = {**proxy_env("HTTP_PROXY", proxy.url), **proxy_env("NO_PROXY", "127.0.0.1,localhost")}
        assert illume(f"!api {server.url}\n!user\nhi\n", env=env) == (0, b"\n\n!assistant\n\ndirect")
        assert proxy.requests == []
        assert server.requests[0].target == "/chat/completions"


def test_https_proxy_gets_a_connect(server):
    server.script(response(403, "tunnels are not allowed here", "text/plain"))
    env = proxy_env("HTTPS_PROXY", f"http://127.0.0.1:{server.port}")
    status, out = illume("!api https://api.example.invalid/v1\n!user\nhi\n", env=env)
    assert status == 1
    assert out.startswith(b"\n\n!error\n\n") and b"api.example.invalid" in out
    assert (server.requests[0].method, server.requests[0].target) == ("CONNECT", "api.example.invalid:443")
