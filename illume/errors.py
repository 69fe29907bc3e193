"""The errors a user may see, each turned into an `!error` section by the CLI.

    IllumeError                 anything illume reports instead of a reply
    ├── DirectiveError          a line of the buffer or of a profile is wrong (NAME:LINE: ...)
    ├── DocumentError           a `!context`, `!reddit` or `!github` document cannot be read
    ├── TemplateError           a FIM template cannot be found or rendered
    ├── SetupError              something outside the buffer is missing (model, package, template)
    ├── RequestError            the request could not be made or was refused
    │   ├── HTTPStatusError     the server answered with a non-200 status
    │   └── ContextTooLong      the prompt does not fit the model's context
    └── StreamError             the reply broke off or carried an error

    Interrupted                 SIGINT or SIGTERM arrived (a BaseException)

Backends raise these and nothing else; `cli.run` is the one place that
prints them (through `illume.output`) and picks the `Exit` status, and
`batch` reports them per file.
"""

from enum import IntEnum

from illume.names import shown


class Exit(IntEnum):
    """The exit statuses: 128 + the signal's number after an interrupt, as a shell reports it."""

    OK = 0
    ERROR = 1
    SIGINT = 130
    SIGTERM = 143


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; `status` is the status to exit with.

    A BaseException, as KeyboardInterrupt is: the broad `except Exception`
    around code that is not ours (a Jinja template, tree-sitter) must let it
    through, so an interrupt always ends in `!note interrupted`.
    """

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


class IllumeError(Exception):
    """A failure explained in one readable sentence."""


class DirectiveError(IllumeError):
    """A directive that cannot be carried out, located by source name and line."""

    def __init__(self, message: str, source: str | None = None, line: int | None = None):
        self.message = message
        self.source = source
        self.line = line
        super().__init__(self.__str__())

    def located(self, source: str, line: int) -> "DirectiveError":
        """Return this error with its location prepended, as the original does when nesting."""
        return DirectiveError(str(self), source, line)

    def __str__(self) -> str:
        if self.source is None:
            return self.message
        return f"{shown(self.source)}:{self.line}: {self.message}"


class DocumentError(IllumeError):
    """A document could not be read or understood (illume.documents)."""


class TemplateError(IllumeError):
    """A FIM template could not be found or rendered (illume.templates)."""


class SetupError(IllumeError):
    """Something illume needs outside the buffer is missing or broken."""


class RequestError(IllumeError):
    """The request could not be sent or was not answered."""


class HTTPStatusError(RequestError):
    """The server answered with a status other than 200."""

    def __init__(self, status: int, body: str, retry_after: float | None = None):
        self.status = status
        self.body = body
        self.retry_after = retry_after
        super().__init__(f"HTTP {status}: {body}")


class ContextTooLong(RequestError):
    """The prompt does not fit the model's context, even cut as `!fit` may.

    Raised by a backend that refuses the prompt (llama-server's
    exceed_context_size_error, the embedded model before it evaluates), and
    by `illume.counting` with the explanation that names the biggest parts.
    PROMPT and CONTEXT are the token counts, None where the refusal gave none.
    """

    def __init__(self, message: str, prompt: int | None = None, context: int | None = None):
        super().__init__(message)
        self.prompt = prompt
        self.context = context


class StreamError(IllumeError):
    """The reply stream broke off or reported an error after it began."""
