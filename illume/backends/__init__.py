"""Backends: each turns a Request into an iterator of reply text, and nothing else.

They never print and never choose an exit status; they raise the errors of
`illume.errors`. The first item a backend yields is "" as soon as the
request has been accepted, so the caller can print its header (`!assistant`)
before the first word arrives.
"""


def for_request(request, env, timeout):
    """Return the backend that serves REQUEST's URL."""
    if request.url.startswith("embedded:"):
        from illume.backends.embedded import EmbeddedBackend

        return EmbeddedBackend(env)
    from illume.backends.http import HTTPBackend

    return HTTPBackend(timeout=timeout)
