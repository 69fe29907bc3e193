"""The chat prompt as llama-server renders it, for the embedded backend.

llama-server renders a chat with the model's own Jinja template, and with
ChatML when the GGUF has none (llama.cpp's common/chat.cpp); it drops a
leading BOS text that the tokenizer will add anyway, then tokenizes with
special tokens parsed and BOS added as the model asks. llama-cpp-python
falls back to the `llama-2` format instead, which a model such as Gemma 3
answers with garbage, so illume renders the prompt itself and hands the
model tokens. `!:chat_template` chooses another format: the name of one of
llama.cpp's built-in templates (`chatml`, `gemma`, `llama2`, ... the names
llama-server's `--chat-template` takes) or Jinja source.
"""

import ctypes
import functools
import json
from collections.abc import Mapping, Sequence

from illume.errors import DirectiveError
from illume.templates import MAX_OUTPUT

# llama.cpp's CHATML_TEMPLATE_SRC (common/chat.cpp), llama-server's fallback.
CHATML = (
    "{%- for message in messages -%}\n"
    "  {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "  {{- '<|im_start|>assistant\n' -}}\n"
    "{%- endif -%}"
)


def render(llama, messages: Sequence[Mapping], choice: str | None = None) -> str:
    """Return the prompt text for MESSAGES: CHOICE (a built-in name or Jinja source), else the model's own."""
    if choice is not None and "{{" not in choice and "{%" not in choice:
        return _builtin(choice, messages)
    source = choice if choice is not None else llama.metadata.get("tokenizer.chat_template") or CHATML
    model = llama._model
    bos = _token_text(model, model.token_bos())
    eos = _token_text(model, model.token_eos())
    from illume import sandbox  # with jinja2: only a chat is rendered, a completion's tokens need neither

    messages = [dict(m) for m in messages]
    limit = MAX_OUTPUT + 2 * sum(len(str(m.get("content", ""))) for m in messages)
    where = "!:chat_template" if choice is not None else "the model's chat template"
    try:
        text = sandbox.render(_compiled(source), limit, messages=messages, add_generation_prompt=True,
                              bos_token=bos, eos_token=eos, raise_exception=_raise)
    except sandbox.TooMuch as e:
        raise DirectiveError(f"{where}: {e}") from None
    except Exception as e:  # the template's own code failed; name it, never a traceback
        raise DirectiveError(f"{where}: {type(e).__name__}: {e}") from None
    # As llama-server: the tokenizer adds BOS (and EOS) itself, so the template's own copy goes.
    if bos and model.add_bos_token() and text.startswith(bos):
        text = text[len(bos):]
    if eos and model.add_eos_token() and text.endswith(eos):
        text = text[: -len(eos)]
    return text


def tokens(llama, text: str) -> list[int]:
    """Return TEXT's tokens as llama-server makes them: special tokens parsed, BOS added if the model wants."""
    return llama.tokenize(text.encode("utf-8"), add_bos=True, special=True)


def _token_text(model, token: int) -> str:
    return model.token_get_text(token) if token >= 0 else ""


def _raise(message):
    raise ValueError(message)


@functools.lru_cache(maxsize=8)
def _compiled(source: str):
    """Return SOURCE compiled as transformers and llama-server read chat templates; once per process."""
    import jinja2
    import jinja2.ext

    from illume import sandbox

    # Bounded as FIM templates are (illume.sandbox): `!:chat_template` may come with a cloned repository's profile.
    environment = sandbox.environment(MAX_OUTPUT, immutable=True, filters={"tojson": _tojson},
                                      undefined=jinja2.Undefined, trim_blocks=True, lstrip_blocks=True,
                                      extensions=[jinja2.ext.loopcontrols])
    try:
        return environment.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise DirectiveError(f"chat template line {e.lineno}: {e.message}") from None


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _builtin(name: str, messages: Sequence[Mapping]) -> str:
    """Return MESSAGES in llama.cpp's built-in template NAME; raise DirectiveError naming the known ones."""
    import ctypes

    import llama_cpp

    if name not in builtin_names():
        raise DirectiveError(f"!:chat_template: unknown template {name!r}; give Jinja source or one of: "
                          + ", ".join(builtin_names()))
    encoded = [(str(m["role"]).encode(), str(m["content"]).encode()) for m in messages]
    chat = (llama_cpp.llama_chat_message * len(encoded))(*[llama_cpp.llama_chat_message(r, c) for r, c in encoded])
    size = 2 * sum(len(r) + len(c) for r, c in encoded) + 256
    for _ in range(2):
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_chat_apply_template(name.encode(), chat, len(encoded), True, buf, size)
        if n < 0:
            raise DirectiveError(f"!:chat_template: llama.cpp cannot apply {name!r} to this chat")
        if n <= size:
            return buf.raw[:n].decode("utf-8", "replace")
        size = n
    raise DirectiveError(f"!:chat_template: {name!r} gave no prompt")


@functools.cache
def builtin_names() -> tuple[str, ...]:
    """Return the names of llama.cpp's built-in chat templates."""
    import llama_cpp

    n = llama_cpp.llama_chat_builtin_templates(None, 0)
    names = (ctypes.c_char_p * n)()
    llama_cpp.llama_chat_builtin_templates(names, n)
    return tuple(sorted(name.decode() for name in names))
