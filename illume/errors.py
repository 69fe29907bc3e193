"""The errors a user may see, each turned into an `!error` section by the CLI.

    IllumeError                 anything illume reports instead of a reply
    ├── BufferError             a line of the buffer or of a profile is wrong (NAME:LINE: ...)
    ├── SetupError              something outside the buffer is missing (model, package, template)
    ├── RequestError            the request could not be made or was refused
    │   └── HTTPStatusError     the server answered with a non-200 status
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


class BufferError(IllumeError):
    """A directive that cannot be carried out, located by source name and line."""

    def __init__(self, message: str, source: str | None = None, line: int | None = None):
        self.message = message
        self.source = source
        self.line = line
        super().__init__(self.__str__())

    def located(self, source: str, line: int) -> "BufferError":
        """Return this error with its location prepended, as the original does when nesting."""
        return BufferError(str(self), source, line)

    def __str__(self) -> str:
        if self.source is None:
            return self.message
        return f"{shown(self.source)}:{self.line}: {self.message}"


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


class StreamError(IllumeError):
    """The reply stream broke off or reported an error after it began."""
