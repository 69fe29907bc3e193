"""illume.secrets: which names and URL parts are credentials, and how they are shown (tables)."""

import pytest

from illume.secrets import looks_generated, mask, scrub, secret_name, shown_url, url_secrets

NAMES = [
    ("authorization", True), ("Proxy-Authorization", True), ("x-api-key", True), ("api-key", True),
    ("x-goog-api-key", True), ("ocp-apim-subscription-key", True), ("cookie", True), ("X-Auth-Token", True),
    ("x-amz-security-token", True), ("client_secret", True), ("apiKey", True), ("access_token", True),
    ("X-Passphrase", True), ("key", True), ("password", True),
    ("content-type", False), ("x-use-cache", False), ("anthropic-version", False), ("max_tokens", False),
    ("n_keep", False), ("cache_prompt", False), ("model", False), ("x-plain", False), ("keep_alive", False),
]


@pytest.mark.parametrize("name, secret", NAMES)
def test_secret_names(name, secret):
    assert secret_name(name) is secret


GENERATED = [
    ("AIzaSyD3xA9bK2mQ7pLr5tVw8yZ1cE4fG6hJ0kN", True),
    ("bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", True),
    ("hf_AbCdEfGhIjKlMnOpQrStUvWxYz123456", True),
    ("Mixtral-8x7B-Instruct-v0.1", False), ("Qwen2.5-Coder-32B-Instruct-GGUF", False),
    ("Meta-Llama-3.1-8B-Instruct-Turbo", False), ("claude-3-5-sonnet-20241022", False),
    ("gemini-2.5-flash-preview-05-20", False), ("chat", False), ("streamGenerateContent", False),
]


@pytest.mark.parametrize("text, generated", GENERATED)
def test_looks_generated(text, generated):
    assert looks_generated(text) is generated


URLS = [
    ("http://localhost:8080/", "http://localhost:8080/", []),
    ("http://admin:pw@host/v1", "http://admin:***@host/v1", ["pw", "pw", "YWRtaW46cHc="]),
    # A token given as the user name is masked; a plain user name (`git@`, `user@`) is no secret, and
    # masking it would also mask that word wherever it stands in !debug's body.
    ("https://ghp_4fQ9xZ2mL7pR8sT1vW3yB6nC0dE5gH@host/", "https://***@host/",
     ["ghp_4fQ9xZ2mL7pR8sT1vW3yB6nC0dE5gH", "ghp_4fQ9xZ2mL7pR8sT1vW3yB6nC0dE5gH"]),
    ("https://user@host/", "https://user@host/", []),
    ("HTTP://host/v1", "HTTP://host/v1", []),  # nothing to hide: as written, the scheme's case too
    ("http://h/v1?alt=sse&key=abc%2Fdef", "http://h/v1?alt=sse&key=***", ["abc%2Fdef", "abc/def"]),
    ("http://h/token/abcd/x", "http://h/token/***/x", ["abcd", "abcd"]),
    ("http://localhost:8080/v1/chat/completions?model=my-model", "http://localhost:8080/v1/chat/completions?model=my-model",
     []),
    ("http://[bad/x", "http://[bad/x", []),
]


@pytest.mark.parametrize("url, shown, secrets", URLS)
def test_urls(url, shown, secrets):
    assert shown_url(url) == shown
    assert url_secrets(url) == secrets


def test_scrub_masks_the_longest_first_and_a_secret_cut_before_an_ellipsis():
    key = "sk-proj-0123456789abcdefWXYZ"
    assert scrub(f"a {key} b {key[:12]}… c", [key[:6], key]) == "a ***WXYZ b ***… c"
    assert scrub("plain… text", [key]) == "plain… text"
    assert mask("Digest username=x, response=0123456789abcdef") == "Digest ***cdef"
