"""FIM templates: how a prefix and a suffix become one completion prompt (docs/profiles.md).

A template is one of
- the original's one-line form, `<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>`;
- an inline Jinja template (it holds `{{` or `{%`);
- the name of a Jinja file ending in `.jinja`: built in (`fim_templates/`),
  in the user's folder `$XDG_CONFIG_HOME/illume/fim_templates`, or a path
  (the user's folder first, as for profiles).

Jinja templates see `prefix`, `suffix` and `files` (the `!context` files
before the hole, a list of `{filename, text}`), and run sandboxed with
undefined names as errors. jinja2 is imported only when one is rendered.
"""

import os
from collections.abc import Mapping

from illume.documents import read_text
from illume.errors import DocumentError, TemplateError
from illume.gotext import trim_space
from illume.jsonwire import encode
from illume.names import shown
from illume.resources import builtin_dir, user_dir


def render(template: str, prefix: str, suffix: str, env: Mapping[str, str], files=()) -> str:
    """Return the prompt that TEMPLATE makes of PREFIX and SUFFIX."""
    name = trim_space(template)
    if name.endswith(".jinja"):
        return _render_jinja(_load(name, env), name, prefix, suffix, files)
    if "{{" in template or "{%" in template:
        return _render_jinja(template, "!infill", prefix, suffix, files)
    return interpolate(template, {"prefix": prefix, "suffix": suffix})


def interpolate(text: str, values: Mapping) -> str:
    """Return TEXT with each `{key}` replaced by VALUES[key], as the original fills `!api` and `!infill`.

    Non-string values appear as compact JSON. Raises TemplateError naming a
    missing key or an unclosed brace.
    """
    out = []
    rest = text
    while True:
        before, brace, after = rest.partition("{")
        out.append(before)
        if not brace:
            return "".join(out)
        key, close, rest = after.partition("}")
        if not close:
            raise TemplateError("unmatched '}'")  # the original's words for a '{' left open
        if key not in values:
            raise TemplateError(f"missing key: {key}")
        value = values[key]
        out.append(value if isinstance(value, str) else encode(value))


def _load(name: str, env: Mapping[str, str]) -> str:
    # As profiles: the user's own folder before the current directory, which a cloned repository controls.
    candidates = []
    if "/" not in name:
        candidates.append(os.path.join(builtin_dir("fim_templates"), name))
        candidates.append(os.path.join(user_dir("fim_templates", env), name))
    candidates.append(name)
    for candidate in candidates:
        try:
            return read_text(str(candidate))
        except DocumentError:
            continue
    raise TemplateError(f"FIM template not found: {shown(name)}")


# A template can come with a cloned repository's profile: it renders in
# illume.sandbox, where `{{ 'a' * 10**10 }}` or nested loops over
# `range(100000)` stop with an error before they take the machine.
MAX_OUTPUT = 32 * 1024 * 1024  # characters of any value made and of the prompt, beyond the texts given


def _render_jinja(source: str, name: str, prefix: str, suffix: str, files) -> str:
    import jinja2

    from illume.sandbox import TooMuch, render

    name = shown(name)
    files = list(files)
    given = len(prefix) + len(suffix) + sum(len(str(f.get("text", ""))) for f in files if isinstance(f, dict))
    limit = MAX_OUTPUT + 2 * given
    try:
        template = sandbox(limit).from_string(source)
        return render(template, limit, prefix=prefix, suffix=suffix, files=files)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"{name}:{e.lineno}: template syntax error: {e.message}") from None
    except jinja2.UndefinedError as e:
        raise TemplateError(f"{name}: {e.message}") from None
    except jinja2.exceptions.SecurityError as e:
        raise TemplateError(f"{name}: unsafe template: {e}") from None
    except TooMuch as e:
        raise TemplateError(f"{name}: {e}") from None
    except Exception as e:  # the template's own code failed: {{ 1/0 }}, a bad filter argument
        raise TemplateError(f"{name}: the template failed: {type(e).__name__}: {e}") from None


def sandbox(limit: int = MAX_OUTPUT):
    """Return the sandboxed Jinja environment FIM templates render in: nothing it makes goes past LIMIT."""
    from illume.sandbox import environment

    return environment(limit)
