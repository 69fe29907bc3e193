"""The errors a user may see, each turned into an `!error` section by the CLI.

    IllumeError                 anything illume reports instead of a reply
    ├── BufferError             a line of the buffer or of a profile is wrong (NAME:LINE: ...)
    ├── SetupError              something outside the buffer is missing (model, package, template)
    ├── RequestError            the request could not be made or was refused
    │   └── HTTPStatusError     the server answered with a non-200 status
    └── StreamError             the reply broke off or carried an error

Backends raise these and nothing else; `cli.main` is the one place that
prints them and picks the exit status.
"""


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
        return f"{self.source}:{self.line}: {self.message}"


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
