"""Where the gateway listens: said once the port is bound, and in one line when it cannot be."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)

_BIND_ERRORS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}


class CannotListen(Exception):
    """The port cannot be bound; the message says why and what to do."""


def is_bind_error(error: OSError) -> bool:
    return error.errno in _BIND_ERRORS


def cannot_listen(host: str, port: int, error: OSError) -> CannotListen:
    if error.errno == errno.EADDRINUSE:
        return CannotListen(
            f"port {port} on {host} is taken by another process; stop it or set PORT"
        )
    return CannotListen(f"cannot listen on {host}:{port}: {error.strerror}; check HOST and PORT")


def check_can_listen(host: str, port: int, *, reuse_port: bool) -> None:
    """Bind and let go, as the gateway will: a CannotListen before any worker starts."""
    try:
        socket.create_server((host, port), reuse_port=reuse_port).close()
    except OSError as error:
        if not is_bind_error(error):
            raise
        raise cannot_listen(host, port, error) from None


def announce_when_bound(host: str, port: int) -> Callable[..., None]:
    """For `web.run_app(print=...)`, which calls it once every site is bound and listening."""

    def announce(*_message: object) -> None:
        log.info("listening on %s:%d", host, port)

    return announce
