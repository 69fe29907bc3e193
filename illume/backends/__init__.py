"""Backends: each turns a Request into an iterator of reply text, and nothing else.

They never print and never choose an exit status; they raise the errors of
`illume.errors`. The first item a backend yields is "" as soon as the
request has been accepted, so the caller can print its header (`!assistant`)
before the first word arrives. A backend class says whether its requests may
run at once (`concurrent`): `!branches` and `--batch` go by it.
"""


def backend_class(url: str) -> type:
    """Return the class of the backend that serves URL."""
    if url.startswith("embedded:"):
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
