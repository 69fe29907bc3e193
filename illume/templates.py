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
import re
from collections.abc import Mapping

from illume.documents import DocumentError, read_text
from illume.gotext import trim_space
from illume.errors import IllumeError
from illume.resources import builtin_dir, user_dir


class TemplateError(IllumeError):
    """A FIM template could not be found or rendered."""


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
    from illume.jsonwire import encode

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
    raise TemplateError(f"FIM template not found: {name}")


# Bounds on what a template may do: a template can come with a cloned
# repository's profile, and `{{ 'a' * 10**10 }}` or nested loops over
# `range(100000)` would otherwise take the memory or the time of the machine.
MAX_OUTPUT = 32 * 1024 * 1024  # characters of any value made and of the prompt, beyond the texts given
MAX_SECONDS = 2.0  # of rendering; a prompt template takes milliseconds


def _render_jinja(source: str, name: str, prefix: str, suffix: str, files) -> str:
    import jinja2

    files = list(files)
    given = len(prefix) + len(suffix) + sum(len(str(f.get("text", ""))) for f in files if isinstance(f, dict))
    limit = MAX_OUTPUT + 2 * given
    environment = sandbox(limit)
    try:
        template = environment.from_string(source)
        return _bounded(template, limit, prefix=prefix, suffix=suffix, files=files)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"{name}:{e.lineno}: template syntax error: {e.message}") from None
    except jinja2.UndefinedError as e:
        raise TemplateError(f"{name}: {e.message}") from None
    except jinja2.exceptions.SecurityError as e:
        raise TemplateError(f"{name}: unsafe template: {e}") from None
    except _TooMuch as e:
        raise TemplateError(f"{name}: {e}") from None
    except Exception as e:  # the template's own code failed: {{ 1/0 }}, a bad filter argument
        raise TemplateError(f"{name} failed: {type(e).__name__}: {e}") from None


class _TooMuch(Exception):
    """A template went past MAX_OUTPUT or MAX_SECONDS."""


def sandbox(limit: int = MAX_OUTPUT):
    """Return a sandboxed Jinja environment in which no value grows past LIMIT characters.

    Checking a template needs it too: compiling folds constants, and an
    unbounded environment would compute `'a' * 10**10` right there.
    """
    import jinja2
    from jinja2.compiler import CodeGenerator
    from jinja2.sandbox import SandboxedEnvironment

    def check(value):
        if isinstance(value, (str, list, tuple, bytes)) and len(value) > limit:
            raise _TooMuch(f"the template makes a value of more than {limit} characters")
        return value

    def check_arguments(args, kwargs):
        for value in (*args, *kwargs.values()):
            # A width or a count this large (`center(500000000)`) can only build something too big.
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > limit:
                raise _TooMuch(f"the template passes {value}, more than the {limit} allowed")

    class Generator(CodeGenerator):
        def visit_Concat(self, node, frame):
            # `a ~ b` cannot be intercepted like `+`: it is joined through a checked join.
            self.write("environment.checked_join((")
            for argument in node.nodes:
                self.visit(argument, frame)
                self.write(", ")
            self.write("))")

    class Bounded(SandboxedEnvironment):
        code_generator_class = Generator
        intercepted_binops = frozenset({"*", "**", "+", "%"})

        def call_binop(self, context, operator, left, right):
            if operator == "*":
                for sized, times in ((left, right), (right, left)):
                    if hasattr(sized, "__len__") and isinstance(times, int) and len(sized) * times > limit:
                        raise _TooMuch(f"the template makes a value of more than {limit} characters")
            elif operator == "**":
                if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 \
                        and right * max(abs(left), 2).bit_length() > 4096:
                    raise _TooMuch("the template computes a number too large")
            elif operator == "+":
                if hasattr(left, "__len__") and hasattr(right, "__len__") and len(left) + len(right) > limit:
                    raise _TooMuch(f"the template makes a value of more than {limit} characters")
            elif operator == "%" and isinstance(left, str):
                widths = [int(n) for spec in _FORMAT_SPECS.findall(left) for n in _NUMBER.findall(spec)]
                check_arguments((*widths, *(right if isinstance(right, tuple) else (right,))), {})
            return check(super().call_binop(context, operator, left, right))

        def call(__self, __context, __obj, *args, **kwargs):
            check_arguments(args, kwargs)
            return check(super().call(__context, __obj, *args, **kwargs))

        def checked_join(self, values):
            return check(jinja2.runtime.str_join(values))

    environment = Bounded(undefined=jinja2.StrictUndefined, autoescape=False)
    for filter_name, function in list(environment.filters.items()):
        environment.filters[filter_name] = _checked_filter(function, check, check_arguments)
    return environment


_FORMAT_SPECS = re.compile(r"%[-#0 +]*[\d.]+")  # `%0999999999d`: the width and precision of each
_NUMBER = re.compile(r"\d+")


def _checked_filter(function, check, check_arguments):
    import functools

    @functools.wraps(function)
    def checked(*args, **kwargs):
        check_arguments(args[1:], kwargs)  # the first is the value filtered, or the context
        return check(function(*args, **kwargs))

    return checked


def _bounded(template, limit: int, **values) -> str:
    """Return TEMPLATE rendered with VALUES, within MAX_SECONDS and LIMIT characters (the environment's).

    Time is watched line by line in the template's own code (a trace on
    its frames only), so that loops with no output still stop.
    """
    import sys
    import time

    deadline = time.monotonic() + MAX_SECONDS

    def on_line(frame, event, arg):
        if time.monotonic() > deadline:
            raise _TooMuch(f"the template ran longer than {MAX_SECONDS:g} s")
        return on_line

    def on_call(frame, event, arg):
        return on_line if frame.f_code.co_filename == "<template>" else None

    pieces, size = [], 0
    previous = sys.gettrace()
    sys.settrace(on_call)
    try:
        for piece in template.generate(**values):
            size += len(piece)
            if size > limit:
                raise _TooMuch(f"the template's prompt is over {limit} characters")
            pieces.append(piece)
    finally:
        sys.settrace(previous)
    return "".join(pieces)
