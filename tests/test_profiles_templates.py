"""Built-in profiles and FIM templates, original one-line and Jinja (docs/profiles.md)."""


import pytest

from conftest import builtin_profiles
from illume import buffer, profiles, request, templates
from illume.errors import TemplateError

pytestmark = pytest.mark.usefixtures("in_tmp")  # conftest: each test in an empty folder of its own


def profile_lines(name: str) -> list[str]:
    with open(profiles.builtin_file(name), encoding="utf-8") as f:
        return f.read().splitlines()


EXACT_PROFILES = [
    ("llama.cpp", ["!api http://localhost:8080/", "!:cache_prompt true", '!:stop ["<|im_end|>"]']),
    ("huggingface.co", ["!api https://api-inference.huggingface.co/models/{model}/v1",
                        "!>authorization Bearer $HF_TOKEN", "!>x-use-cache false",
                        "!:model meta-llama/Llama-3.3-70B-Instruct"]),
]


@pytest.mark.parametrize("name, lines", EXACT_PROFILES)
def test_profiles_with_exact_lines(name, lines):
    assert profile_lines(name) == lines


def test_builtin_profiles_present():
    required = {"llama.cpp", "huggingface.co", "hf", "openai", "claude", "gemini", "qwen3", "gemma-3",
                "fim:deepseek", "fim:qwen", "fim:granite", "fim:granite4", "fim:mistral", "fim:codellama"}
    assert required - set(builtin_profiles()) == set()


def test_every_builtin_profile_loads():
    names = builtin_profiles()
    for name in names:
        parsed = buffer.parse(f"!profile {name}\n!user\nhi\n", buffer.Sources({}))
        assert parsed.profile in names  # the last one loaded: itself or one it loads


def parse(text: str, env: dict | None = None) -> buffer.Buffer:
    return buffer.parse(text, buffer.Sources(env or {}))


def test_claude_profile():
    parsed = parse("!profile claude\n", {"ANTHROPIC_API_KEY": "key"})
    assert (parsed.api, parsed.headers.get("anthropic-version"), parsed.headers.get("x-api-key")) == (
        '"https://api.anthropic.com/v1/messages"', "2023-06-01", "key")


KEY_PROFILES = [
    # (profile, env variable its credential comes from, header it lands in)
    ("openai", "OPENAI_API_KEY", "authorization"),
    ("gemini", "GEMINI_API_KEY", "authorization"),
    ("hf", "HF_TOKEN", "authorization"),
    ("huggingface.co", "HF_TOKEN", "authorization"),
    ("claude", "ANTHROPIC_API_KEY", "x-api-key"),
]


@pytest.mark.parametrize("name, variable, header", KEY_PROFILES)
def test_keys_come_from_the_environment(name, variable, header):
    assert parse(f"!profile {name}\n", {variable: "sk-123"}).headers.get(header).endswith("sk-123")


def test_hf_router_profile():
    parsed = parse("!profile hf\n", {"HF_TOKEN": "t"})
    built = request.build(parsed, {})
    assert (built.url, built.body["model"], parsed.headers.get("authorization")) == (
        "https://router.huggingface.co/v1/chat/completions", "meta-llama/Llama-3.3-70B-Instruct", "Bearer t")


FIM_PROFILES = [
    # (profile, the template in the original's notation, stop)
    ("fim:deepseek", "<｜begin▁of▁sentence｜><｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>", None),
    ("fim:qwen", "<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>", None),
    ("fim:granite4", "<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>", None),
    ("fim:granite", "<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>", None),
    ("fim:mistral", "[SUFFIX]{suffix}[PREFIX]{prefix}", None),
    ("fim:codellama", " <PRE> {prefix} <SUF>{suffix} <MID>", ["<EOT>"]),
]

# Text that a template engine might mistake for its own syntax.
TRICKY_PREFIX = "def f():  # {{ x }} {% if %} {prefix} <b>&amp;\n    '''"
TRICKY_SUFFIX = "    return {suffix}\n{# c #}\n"


@pytest.mark.parametrize("name, original, stop", FIM_PROFILES)
def test_fim_profiles_make_the_original_prompts(name, original, stop):
    parsed = parse(f"!profile {name}\n!api http://h/\n{TRICKY_PREFIX}\n!infill\n{TRICKY_SUFFIX}")
    built = request.build(parsed, {})
    prefix, suffix = TRICKY_PREFIX + "\n", "\n" + TRICKY_SUFFIX.strip("\n")
    expected = original.replace("{prefix}", "\0").replace("{suffix}", suffix).replace("\0", prefix)
    assert (built.url, built.body["prompt"], built.body.get("stop")) == ("http://h/completions", expected, stop)


@pytest.mark.parametrize("name, original, stop", FIM_PROFILES)
def test_fim_profiles_set_only_their_template(name, original, stop):
    lines = profile_lines(name)
    assert lines[0].startswith("!infill ") and lines[1:] == ([] if stop is None else ['!:stop ["<EOT>"]'])


@pytest.mark.parametrize("name, original, stop", FIM_PROFILES)
def test_one_line_templates_keep_working(name, original, stop):
    parsed = parse(f"!infill {original}\n!api http://h/\npre\n!infill\nsuf\n")
    expected = original.replace("{prefix}", "pre\n").replace("{suffix}", "\nsuf")
    assert request.build(parsed, {}).body["prompt"] == expected


RENDERS = [
    # (template, prompt for prefix "P\n", suffix "\nS")
    ("A{prefix}B{suffix}C", "AP\nB\nSC"),
    ("{suffix}{prefix}{prefix}", "\nSP\nP\n"),
    ("  lead and trail  ", "  lead and trail  "),
    ("{{ prefix }}|{{ suffix }}", "P\n|\nS"),
    ("<{{ prefix | trim }}>{% if suffix %}[{{ suffix | trim }}]{% endif %}", "<P>[S]"),
    ("{%- for f in files %}#{{ f.filename }}\n{{ f.text }}{% endfor %}{{ prefix }}", "#a.py\nA\nP\n"),
    ("qwen.jinja", "<|fim_prefix|>P\n<|fim_suffix|>\nS<|fim_middle|>"),
    ("  qwen.jinja  ", "<|fim_prefix|>P\n<|fim_suffix|>\nS<|fim_middle|>"),
    ("codellama.jinja", " <PRE> P\n <SUF>\nS <MID>"),
    ("mistral.jinja", "[SUFFIX]\nS[PREFIX]P\n"),
]


@pytest.mark.parametrize("template, prompt", RENDERS)
def test_render(template, prompt):
    assert templates.render(template, "P\n", "\nS", {}, [{"filename": "a.py", "text": "A\n"}]) == prompt


def test_user_template_folder(in_tmp):
    folder = in_tmp / "cfg/illume/fim_templates"
    folder.mkdir(parents=True)
    (folder / "mine.jinja").write_text("<{{ prefix }}|{{ suffix }}>\n")
    assert templates.render("mine.jinja", "p", "s", {"XDG_CONFIG_HOME": str(in_tmp / "cfg")}) == "<p|s>"


def test_template_path(in_tmp):
    (in_tmp / "t").mkdir()
    (in_tmp / "t/mine.jinja").write_text("{{ suffix }}{{ prefix }}")
    assert templates.render("t/mine.jinja", "p", "s", {}) == "sp"


def test_builtin_template_beats_a_local_file(in_tmp):
    (in_tmp / "qwen.jinja").write_text("local")
    assert templates.render("qwen.jinja", "p", "s", {}) == "<|fim_prefix|>p<|fim_suffix|>s<|fim_middle|>"


TEMPLATE_ERRORS = [
    ("{x}", "missing key: x"),
    ("A{prefix", "unmatched '}'"),
    ("nope.jinja", "FIM template not found: nope.jinja"),
    ("{{ nope }}", "!infill: 'nope' is undefined"),
    ("{{ prefix", "!infill:1: template syntax error: unexpected end of template, expected 'end of print statement'."),
    ("{{ prefix.__class__ }}",
     "!infill: unsafe template: access to attribute '__class__' of 'str' object is unsafe."),
]


@pytest.mark.parametrize("template, message", TEMPLATE_ERRORS)
def test_template_errors(template, message):
    with pytest.raises(TemplateError) as caught:
        templates.render(template, "p", "s", {})
    assert str(caught.value) == message


INTERPOLATIONS = [
    # (URL, values, URL sent)
    ("http://h/v1", {}, "http://h/v1"),
    ("http://h/{model}/v1", {"model": "org/m"}, "http://h/org/m/v1"),
    ("{a}{b}", {"a": "x", "b": "y"}, "xy"),
    ("http://h/{n}", {"n": 3.0}, "http://h/3"),
    ("http://h/{n}", {"n": 0.5}, "http://h/0.5"),
    ("http://h/{o}", {"o": {"b": 1.0, "a": [True, None]}}, 'http://h/{"a":[true,null],"b":1}'),
    ("http://h/{s}", {"s": ""}, "http://h/"),
    ("http://h/{s}", {"s": "<&>"}, "http://h/<&>"),
    ("}{k}", {"k": "v"}, "}v"),
]


@pytest.mark.parametrize("url, values, expected", INTERPOLATIONS)
def test_interpolate(url, values, expected):
    assert templates.interpolate(url, values) == expected


def test_a_template_that_fails_while_rendering_is_a_clear_error():
    import io

    from illume.cli import Options, run

    out = io.BytesIO()
    status = run(b"!infill {{ 1/0 }}{{ prefix }}\nx\n!infill\ny\n!debug\n", out, {}, Options())
    assert status == 1
    assert out.getvalue() == b"\n\n!error\n\n!infill: the template failed: ZeroDivisionError: division by zero\n"


def test_builtin_names_are_typed_names_not_file_names():
    # fim:qwen is stored as fim-qwen.profile (Windows refuses `:`); only the typed name is a built-in.
    assert profiles.builtin_file("fim:qwen").endswith("fim-qwen.profile")
    assert profiles.builtin_file("fim:qwen-repo").endswith("fim-qwen-repo.profile")
    assert profiles.builtin_file("fim-qwen") is None and profiles.builtin_file("fim:nothing") is None
    assert "fim:qwen-repo" in builtin_profiles() and "fim-qwen" not in builtin_profiles()
    assert buffer.parse("!profile fim:qwen-repo\nx\n!infill\ny\n", buffer.Sources({})).profile == "fim:qwen-repo"


def test_the_prompt_may_hold_the_context_files_beyond_the_size_limit(monkeypatch):
    # The limit is on what a template makes beyond the texts it is given: its !context files count as given.
    monkeypatch.setattr(templates, "MAX_OUTPUT", 1000)
    files = [{"filename": "big.py", "text": "x" * 5000}]
    template = "{% for f in files %}{{ f.text }}{% endfor %}<hole>{{ prefix }}"
    assert templates.render(template, "p", "s", {}, files) == "x" * 5000 + "<hole>p"
    with pytest.raises(TemplateError, match="over"):
        templates.render("{% for i in range(3) %}{% for f in files %}{{ f.text }}{% endfor %}{% endfor %}",
                         "p", "s", {}, files)
