"""Backends: each turns a Request into an iterator of reply text, and counts its tokens.

They never print and never choose an exit status; they raise the errors of
`illume.errors` (a prompt longer than the context: ContextTooLong). The
first item a backend yields is "" as soon as the request has been accepted,
so the caller can print its header (`!assistant`) before the first word
arrives. A backend class says whether its requests may run at once
(`concurrent`): `!branches` and `--batch` go by it. Its `counter` is the
model's own tokenizer, template and context (illume.tokens reads it), for
`!fit` and `!debug tokens`.
"""

# The URL scheme of the model run in this process (`!api embedded:`).
EMBEDDED = "embedded:"


def backend_class(url: str) -> type:
    """Return the class of the backend that serves URL."""
    if url.startswith(EMBEDDED):
        from illume.backends.embedded import EmbeddedBackend

        return EmbeddedBackend
    from illume.backends.http import HTTPBackend

    return HTTPBackend


def concurrent(url: str) -> bool:
    """Return whether requests to URL may run beside others (false for the embedded model)."""
    return backend_class(url).concurrent


def for_request(request, env, timeout):
    """Return the backend that serves REQUEST's URL."""
    from illume.backends.http import HTTPBackend

    kind = backend_class(request.url)
    return HTTPBackend(timeout=timeout, request=request) if kind is HTTPBackend else kind(env)


def counter_for(request, env, timeout):
    """Return the token counter of the model that serves REQUEST; raise illume.tokens.Uncountable when it has none."""
    from illume import buffer as buf

    if request.mode == buf.INFILL and not request.template:
        from illume.tokens import Uncountable

        raise Uncountable("no token counts for /infill requests: the server lays out the prefix, suffix and files")
    return backend_class(request.url).counter(request, env, timeout)
