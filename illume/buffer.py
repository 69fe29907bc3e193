"""The buffer language: text in, a description of the request out (docs/buffer.md).

`parse` reads a buffer top to bottom in one pass, as the original does, and
returns a `Buffer`: the conversation, the mode, the JSON keys, the headers
and the API URL. It does no I/O of its own; `!profile`, `!context`,
`!reddit` and `!github` go through a `Sources` object, which tests may
replace.
"""

from collections.abc import Mapping

from illume import documents, profiles, summary_blocks
from illume.errors import DirectiveError, IllumeError
from illume.gotext import fields, trim_space
from illume.headers import Headers, expand
from illume.jsonwire import parse_value
from illume.names import shown

# The original's placeholder for "no !api yet"; a profile may only set the
# URL while it is still this.
INVALID_URL = "http://invalid./"
# What a turn says when the buffer and its profiles set no URL.
NO_API_URL = "no API URL: set one with !api URL or load a profile (for example !profile llama.cpp)"

CHAT, COMPLETION, INFILL = "chat", "completion", "infill"

# Every directive, by the first word of its line (docs/buffer.md,
# "Directives"). A first word that starts with one of SETTERS and goes on
# is a directive too: `!>NAME` sets a header, `!:KEY` a JSON key.
DIRECTIVES = frozenset({
    "!user", "!assistant", "!completion", "!infill", "!api", "!profile", "!context", "!reddit", "!reddit!",
    "!github", "!note", "!begin", "!end", "!exclude", "!prepend", "!stats", "!debug", "!gpt-oss",
    "!branches", "!stop-rules", "!language", "!error", "!fit", "!thinking", "!prices", "!summary", "!summarize",
})
SETTERS = ("!>", "!:")


def directive(line: str) -> str | None:
    """Return the directive that LINE carries out (its first word), or None when LINE is text.

    The one rule of what a directive is: the parser goes by it, and so does
    illume.escape, which keeps a model's reply from reading back as one.
    A line that starts with `!!` is text (the escape).
    """
    command = line.partition(" ")[0]
    if command in DIRECTIVES or len(command) > 2 and command.startswith(SETTERS):
        return command
    return None


class Message:
    """One message of the conversation."""

    __slots__ = ("role", "content", "files", "line")

    def __init__(self, role: str, content: str, files: tuple[dict, ...] = (), line: int | None = None):
        self.role = role
        self.content = content
        self.files = files  # the !context files inside it ({filename, text}), for token counts (illume.tokens)
        self.line = line  # the buffer's line that began it (its role line), for summaries; None in a profile

    def __eq__(self, other) -> bool:
        return isinstance(other, Message) and (self.role, self.content) == (other.role, other.content)

    def __repr__(self) -> str:
        return f"Message({self.role!r}, {self.content!r})"


class Buffer:
    """What a buffer asks for.

    A plain class, not a dataclass: importing dataclasses (and inspect) is
    a tenth of illume's start-up.
    """

    api: str = INVALID_URL
    mode: str = CHAT
    infill_prefix: str = ""
    infill_suffix: str | None = None  # None: nothing follows the hole
    infill_prefix_without_files: str = ""  # the prefix less its !context files, for input_extra
    fim_template: str | None = None
    prepend: str = ""
    debug: bool = False
    debug_tokens: bool = False  # `!debug tokens`: the dry run ends with the prompt's token counts
    fit: bool = False  # `!fit`: leave out the oldest messages that do not fit the context (illume.counting)
    stats: bool = False
    stats_usage: bool = False  # `!stats usage`: what the reply used follows the original's line (illume.usage)
    gpt_oss: bool = False
    stop_rules: str | None = None  # argument of !stop-rules (illume.stopping); None: the default rules
    language: str | None = None  # !language NAME: the infill's language, for its stopping rules
    branches: int = 1  # !branches N: how many alternative replies (illume.branches)
    fit_summarize: bool = False  # `!fit summarize`: summarise what must go rather than leave it out
    summarize: bool = False  # `!summarize` is the buffer's last directive: write a summary (illume.summaries)
    summarize_with: str = ""  # the argument of the last `!summarize` (profile or buffer): its instruction
    summaries: list = []  # the `!summary` blocks, covered text and all (illume.summaries); [] when none
    profile: str | None = None  # the last profile loaded
    exclude: str = ""  # the !exclude tag in effect at the buffer's end, where the reply goes (illume.thinking)
    hide_thinking: bool = False  # `!thinking hide`: the reply's <think> block is not shown (illume.thinking)
    prices: tuple[float, float, float] | None = None  # !prices: per million input, cached, output tokens

    def __init__(self):
        self.messages: list[Message] = []
        self.infill_files: list[dict] = []  # !context files before the hole
        self.body: dict = {"max_tokens": 2000}
        self.headers = Headers.default()

    def hole(self) -> tuple[str, str]:
        """Return the infill prefix and suffix as sent (docs/wire.md, "Modes"): the hole is a line of its own."""
        suffix = "" if self.infill_suffix is None else "\n" + self.infill_suffix
        return self.infill_prefix + "\n", suffix


class Sources:
    """The outside world as the buffer sees it: profiles and documents."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def profile(self, name: str) -> tuple[str, str]:
        return profiles.resolve(name, self.env)

    def context(self, arguments: list[str]) -> tuple[str | list[str], list[dict]]:
        """Return the text to insert, whole or in pieces, and the files it holds ({filename, text} each)."""
        return documents.context_parts(arguments)

    def reddit(self, path: str, with_comments: bool) -> str:
        return documents.reddit(path, with_comments)

    def github(self, paths: list[str]) -> str:
        return documents.github(paths)


def _tag(line: str, tag: str) -> str | None:
    """Return "open" or "close" when LINE is exactly <TAG> or </TAG>."""
    if line == f"<{tag}>":
        return "open"
    if line == f"</{tag}>":
        return "close"
    return None


class _Reader:
    """The state of one pass over a buffer and the profiles it loads."""

    def __init__(self, sources: Sources):
        self.sources = sources
        self.out = Buffer()
        self.user_set: dict[str, bool] = {}  # key -> set by the buffer itself
        self.loading: list[str] = []  # identities of the profiles being loaded, to catch loops
        self.loading_names: list[str] = []
        self.profile_loads = 0
        self.exclude = ""
        self.excluding = False
        self.in_error = False  # inside an `!error` section that illume printed
        self.infill_line: int | None = None  # where the bare !infill was, for errors
        self.line_number = 0
        # Whether a FIM template was stored when the bare !infill came: the
        # original picks the endpoint there, so a template stored later (a
        # profile below the hole, the default profile) does not switch to it.
        self.template_at_split: bool | None = None
        self.summary_headings: dict[int, tuple[bool, str | None]] = {}  # by line: what each `!summary` said
        self._new_builder()

    # --- messages -------------------------------------------------------
    def _new_builder(self) -> None:
        self.messages: list[Message] = []
        self.role = ""
        self.parts: list[str] = []
        self.file_parts: set[int] = set()  # indexes in `parts` of !context insertions
        self.message_files: list[dict] = []  # the !context files of the message being built
        self.split = False  # the bare !infill has been seen
        self.files_before_hole: list[dict] = []
        self.started = None  # the line of the role line that began the message being built

    def close_message(self, next_role: str) -> None:
        content = _trimmed_join(self.parts)
        if self.role == INFILL:
            # Empty, it is dropped like any message: the original then sends "" as the suffix.
            if self.out.infill_suffix is None and content:
                self.out.infill_suffix = content
        elif content:
            self.messages.append(Message(self.role or "system", content, tuple(self.message_files), self.started))
        self.role = next_role
        self.parts = []
        self.file_parts = set()
        self.message_files = []

    # --- lines ----------------------------------------------------------
    def load(self, name: str, text: str, depth: int) -> None:
        """Carry out TEXT line by line; NAME locates errors (`<stdin>`, a profile's name).

        Runs of plain text lines are kept as one slice of TEXT rather than a
        string per line: a 50 MB buffer then costs one copy, not three.
        """
        number, start, end, size = 0, 0, 0, len(text)
        run = -1  # where the current run of plain text lines began
        while start < size:
            end = text.find("\n", start)
            if end < 0:
                end = size
            number += 1
            if text.startswith("!", start, end) or self.exclude or self.in_error:
                if run >= 0:
                    self.add_run(text, run, start)
                    run = -1
                self.line_number = number
                try:
                    if not self.line(text[start:end], depth):
                        return
                except DirectiveError as e:
                    raise e.located(name, number) from None
                except IllumeError as e:
                    raise DirectiveError(str(e), name, number) from None
            elif run < 0:
                run = start
            start = end + 1
        if run >= 0:
            self.add_run(text, run, end)
            self.parts.append("\n")  # every line ends in one, the last included

    def add_run(self, text: str, start: int, end: int) -> None:
        """Append TEXT[START:END] as parts, its leading and trailing line breaks apart from the rest.

        `_trimmed_join` drops the line breaks at a message's ends; kept
        apart, they are dropped without copying the text between them.
        """
        first, last = start, end
        while first < last and text[first] in "\r\n":
            first += 1
        while last > first and text[last - 1] in "\r\n":
            last -= 1
        for piece_start, piece_end in ((start, first), (first, last), (last, end)):
            if piece_start < piece_end:
                self.parts.append(text[piece_start:piece_end])

    def line(self, line: str, depth: int) -> bool:
        """Carry out one line; return False at `!end`."""
        if self.exclude:
            tag = _tag(line, self.exclude)
            if self.excluding:
                self.excluding = tag != "close"
                return True
            if tag == "open":
                self.excluding = True
                return True

        if line.startswith("!!"):
            self.text(line[1:])
            return True

        command = directive(line)
        if command is None:
            self.text(line)
            return True
        args = line[len(command) + 1 :]
        out = self.out
        if command == "!profile":
            self.load_profile(trim_space(args), depth)
        elif command == "!debug":
            out.debug = True
            # The original takes no argument and ignores one; `!debug tokens` adds the counts.
            if args.split() == ["tokens"]:
                out.debug_tokens = True
        elif command == "!fit":
            out.fit = True
            out.fit_summarize = out.fit_summarize or args.split() == ["summarize"]
        elif command == "!summarize":
            if args.strip():
                out.summarize_with = args.strip()
            out.summarize = depth == 0 or out.summarize  # a profile's line gives the instruction alone
        elif command == "!summary":
            if depth > 0:
                raise DirectiveError("!summary: a summary belongs in the buffer, not in a profile")
            self.summary_headings[self.line_number] = summary_blocks.heading(args)
            self.close_message("summary")
            self.started = self.line_number
            out.summarize = False
        elif command == "!stats":
            out.stats = True
            # The original ignores an argument; `!stats usage` adds what the reply used, as `!prices` does.
            if args.split() == ["usage"]:
                out.stats_usage = True
        elif command == "!gpt-oss":
            out.gpt_oss = True
        elif command == "!prepend":
            out.prepend = _prepend(args)
        elif command == "!completion":
            if self.split:
                raise DirectiveError(f"!completion: the buffer is already split for infill at line {self.infill_line}")
            out.mode = COMPLETION
        elif command == "!context":
            text, files = self.sources.context(fields(line)[1:])
            pieces = [text] if isinstance(text, str) else text
            self.file_parts.update(range(len(self.parts), len(self.parts) + len(pieces)))
            self.parts.extend(pieces)
            self.files_before_hole.extend(files)
            self.message_files.extend(files)
        elif command in ("!reddit", "!reddit!"):
            self.parts.append(self.sources.reddit(trim_space(args), command == "!reddit"))
        elif command == "!github":
            self.parts.append(self.sources.github(fields(line)[1:]))
        elif command == "!note":
            pass
        elif command == "!exclude":
            self.exclude = trim_space(args)
        elif command == "!begin":
            self._new_builder()
            self.out.infill_suffix = None
        elif command == "!end":
            return False
        elif command == "!api":
            if out.api == INVALID_URL or depth == 0:
                out.api = trim_space(args)
        elif command in ("!user", "!assistant"):
            self.in_error = False
            self.close_message(command[1:])
            self.started = self.line_number if depth == 0 else None
            out.summarize = False
        elif command == "!infill":
            if args:
                _check_inline_template(args)
                out.fim_template = args
            else:
                self.split_for_infill()
        elif command == "!branches":
            out.branches = _branches(args)
        elif command == "!stop-rules":
            from illume.stopping import parse_rules  # with the language tables: only when rules are set

            try:
                parse_rules(trim_space(args))
            except ValueError as e:
                raise DirectiveError(f"!stop-rules: {e}") from None
            out.stop_rules = trim_space(args)
        elif command == "!language":
            out.language = trim_space(args) or None
        elif command == "!thinking":
            choice = trim_space(args)
            if choice not in ("hide", "show"):
                raise DirectiveError(f"!thinking takes hide or show, not {choice!r}")
            out.hide_thinking = choice == "hide"
        elif command == "!prices":
            out.prices = _prices(args)
        elif command == "!error":
            # illume's own report of a failed turn: not for the model's eyes.
            self.in_error = True
        elif command.startswith("!>"):  # directive() lets through only setters with a name
            self.header(command[2:], trim_space(args))
        else:  # !:KEY
            self.key(command[2:], trim_space(args), depth)
        return True

    def text(self, line: str) -> None:
        if not self.in_error:
            self.parts.append(line)
            self.parts.append("\n")

    def split_for_infill(self) -> None:
        if self.out.mode == COMPLETION:
            raise DirectiveError("!infill: cannot fill in the middle in completion mode (remove !completion)")
        if self.split:
            raise DirectiveError(f"!infill: the buffer is already split at line {self.infill_line}; use one !infill")
        self.out.mode = INFILL
        self.template_at_split = self.out.fim_template is not None
        self.infill_line = self.line_number
        self.out.infill_prefix = _trimmed_join(self.parts)
        self.out.infill_prefix_without_files = _trimmed_join(
            [part for i, part in enumerate(self.parts) if i not in self.file_parts])
        self.out.infill_files = list(self.files_before_hole)
        self.split = True
        self.parts = []
        self.file_parts = set()
        self.message_files = []
        self.role = INFILL

    def header(self, name: str, value: str) -> None:
        if not value:
            # A delete sends nothing, so any name will do: `!>x-use-cache\r` in a
            # CRLF profile deletes nothing, as in the original, and is no error.
            self.out.headers.delete(name)
        else:
            if not set(name) <= _TOKEN_CHARS:
                raise DirectiveError(f"!>{name}: not a valid header name "
                                  "(RFC 9110 allows letters, digits and !#$%&'*+-.^_`|~)")
            expanded, from_env = expand(value, self.sources.env)
            # A line break from a $VAR would inject a header of its own choosing.
            if "\n" in expanded or "\r" in expanded:
                raise DirectiveError(f"!>{name}: a header value cannot hold a line break")
            if any(c < " " and c != "\t" or c == "\x7f" for c in expanded):
                raise DirectiveError(f"!>{name}: a header value cannot hold a control character")
            self.out.headers.set(name, expanded, from_env)

    def key(self, key: str, value: str, depth: int) -> None:
        if depth > 0 and self.user_set.get(key):
            return  # a profile never overrides what the buffer set
        if not value:
            self.out.body.pop(key, None)
        else:
            try:
                self.out.body[key] = parse_value(value)
            except ValueError:
                self.out.body[key] = value
        self.user_set[key] = depth == 0

    def load_profile(self, name: str, depth: int) -> None:
        # Bounds that no real setup comes near: a chain of profiles deep enough
        # to overflow Python's stack, or a few files that load each other's
        # neighbours hundreds of times over (minutes of work), end as an error.
        if len(self.loading) >= MAX_PROFILE_DEPTH:
            raise DirectiveError(f"profiles nested more than {MAX_PROFILE_DEPTH} deep: "
                              + " -> ".join(map(shown, self.loading_names[:3] + ["..."] + self.loading_names[-2:]
                                                + [name])))
        self.profile_loads += 1
        if self.profile_loads > MAX_PROFILE_LOADS:
            raise DirectiveError(f"more than {MAX_PROFILE_LOADS} profile loads for one buffer "
                              f"(profiles that load the same profiles over and over?)")
        identity, text = self.sources.profile(name)
        if identity in self.loading:
            chain = " -> ".join(map(shown, self.loading_names + [name]))
            raise DirectiveError(f"profile loop: {chain}")
        self.out.profile = name
        self.loading.append(identity)
        self.loading_names.append(name)
        try:
            self.load(name, text, depth + 1)
        finally:
            self.loading.pop()
            self.loading_names.pop()


MAX_PROFILE_DEPTH = 32
MAX_PROFILE_LOADS = 256

_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

# What a FIM template sees (illume.templates).
_TEMPLATE_NAMES = frozenset({"prefix", "suffix", "files"})


def _check_inline_template(template: str) -> None:
    """Raise DirectiveError for an inline Jinja template that cannot compile or names an unknown variable.

    Checked here, where the line is known; rendering happens after parsing.
    Only the inline form is checked: a `.jinja` file is found at render time.
    """
    if trim_space(template).endswith(".jinja") or ("{{" not in template and "{%" not in template):
        return
    import jinja2
    import jinja2.meta

    from illume.templates import sandbox

    environment = sandbox()
    try:
        tree = environment.parse(template)
    except jinja2.TemplateSyntaxError as e:
        raise DirectiveError(f"!infill: template syntax error: {e.message}") from None
    unknown = jinja2.meta.find_undeclared_variables(tree) - _TEMPLATE_NAMES - set(environment.globals)
    if unknown:
        raise DirectiveError(f"!infill: the template names {', '.join(sorted(unknown))}, "
                          "but only prefix, suffix and files are defined")


MAX_BRANCHES = 32


def _branches(args: str) -> int:
    """Return the N of `!branches N`; raise DirectiveError unless it is a whole number from 1 to MAX_BRANCHES."""
    text = trim_space(args)
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_BRANCHES:
        raise DirectiveError(f"!branches: expected a number of replies from 1 to {MAX_BRANCHES}, got {text!r}")
    return int(text)


def _prices(args: str) -> tuple[float, float, float]:
    """Return the prices of `!prices INPUT CACHED OUTPUT` (per million tokens); raise DirectiveError."""
    words = args.split()
    try:
        prices = tuple(float(word) for word in words)
    except ValueError:
        prices = ()
    if len(prices) != 3 or not all(0 <= price < float("inf") for price in prices):
        raise DirectiveError("!prices: expected three prices of 0 or more, per million input, cached input and "
                          f"output tokens, got {trim_space(args)!r}")
    return prices


def _trimmed_join(parts: list[str]) -> str:
    """Return "".join(PARTS).strip("\\r\\n") without a second copy of a big message."""
    start, end = 0, len(parts)
    while start < end and not parts[start].lstrip("\r\n"):
        start += 1
    while end > start and not parts[end - 1].rstrip("\r\n"):
        end -= 1
    if end - start == 1:
        return parts[start].strip("\r\n")
    if start == end:
        return ""
    return "".join([parts[start].lstrip("\r\n"), *parts[start + 1 : end - 1], parts[end - 1].rstrip("\r\n")])


def _prepend(args: str) -> str:
    if len(args) > 1 and args[0] == '"':
        try:
            decoded = parse_value(args)
        except ValueError:
            return args
        if isinstance(decoded, str):
            return decoded
    return args


def _stood_in(out: Buffer, headings: dict[int, tuple[bool, str | None]]) -> list[Message]:
    """Return OUT's messages as sent: the system prompt with the live summaries at its end, then the rest."""
    messages = out.messages
    if out.mode != CHAT:
        line = next(m.line for m in messages if m.role == "summary")
        raise DirectiveError("!summary: summaries stand in for messages of a chat; "
                             "a completion or an infill sends its text whole", "<stdin>", line)
    system = messages[0] if messages[0].role == "system" else None
    out.summaries, rest = summary_blocks.stand_in(messages[1 if system else 0 :], headings)
    live = [s.text for s in out.summaries if s.live]
    if system is None:
        return [Message("system", "\n\n".join(live)), *rest]
    return [Message("system", "\n\n".join([system.content, *live]), system.files, system.line), *rest]


def parse(text: str, sources: Sources, default_profile: str | None = None) -> Buffer:
    """Return the request that the buffer TEXT describes.

    DEFAULT_PROFILE is loaded after the buffer when the buffer loads none
    (`$ILLUME_PROFILE`, else llama.cpp); its text becomes a system prompt at
    the top of the conversation.
    """
    reader = _Reader(sources)
    reader.load("<stdin>", text, 0)
    reader.close_message("")
    out = reader.out
    messages = reader.messages
    split = reader.split  # loading the default profile below starts a fresh builder
    out.exclude = reader.exclude  # the default profile's own `!exclude` covers only its own lines

    if out.profile is None:
        name = default_profile or sources.env.get("ILLUME_PROFILE") or profiles.DEFAULT
        # The profile's text goes into a builder of its own, not the last message.
        reader._new_builder()
        reader.exclude, reader.excluding, reader.in_error = "", False, False
        reader.load_profile(name, 1)
        reader.close_message("")
        system = "\n\n".join(m.content for m in reader.messages)
        if system and out.mode == CHAT:
            if messages and messages[0].role == "system":
                messages[0] = Message("system", f"{system}\n\n{messages[0].content}", messages[0].files)
            else:
                messages.insert(0, Message("system", system))

    out.messages = messages
    if any(m.role == "summary" for m in messages):
        out.messages = _stood_in(out, reader.summary_headings)
    if out.mode == INFILL and not reader.template_at_split:
        out.fim_template = None  # stored after the hole: llama.cpp's /infill, as the original
    if out.mode == INFILL and not split:
        # !begin after !infill discarded the split: as in the original, the
        # first two messages left are the prefix and the suffix.
        out.infill_prefix = messages[0].content if messages else ""
        out.infill_suffix = messages[1].content if len(messages) > 1 else None
    return out
