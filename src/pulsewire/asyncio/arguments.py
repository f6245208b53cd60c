"""Up-front checks of the arguments the entry points share.

A bad argument is the caller's mistake: it is said at once, before any I/O, with the name
of the argument and what was given (``TypeError`` for a wrong type, ``ValueError`` for a
value out of range, :class:`~pulsewire.UsageError` for arguments that do not go together),
instead of surfacing later as an ``OverflowError`` from deep inside asyncio.
"""

from __future__ import annotations

import os
import random
import socket
import ssl as _ssl
from typing import Any

from pulsewire.core.frames import HEADER_SIZE, MESSAGE_OVERHEAD
from pulsewire.core.keepalive import SocketOptions
from pulsewire.core.policy import Limits, Policy, ServerLimits
from pulsewire.core.session import Session
from pulsewire.errors import PolicyError, UsageError

__all__ = [
    "check_host",
    "check_path",
    "check_port",
    "check_server_limits",
    "check_settings",
    "check_socket",
    "check_tls",
]

_RNG = random.Random(0)  # for the trial session of check_settings: never draws


def check_host(host: object) -> str:
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    return host


def check_port(port: object, *, allow_zero: bool = False) -> int:
    """A TCP port: 1-65535 (0 too when listening: the system picks one)."""
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, not {type(port).__name__}")
    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        raise ValueError(f"port must be in {low}-65535, not {port}")
    return port


def check_path(path: object) -> str:
    """A Unix socket path (``str`` or ``os.PathLike``; Linux's abstract names start with NUL)."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, not {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str) or not text:
        raise ValueError(f"path must be a non-empty text path, not {path!r}")
    return text


def check_socket(sock: object, *, connected: bool) -> socket.socket:
    """A stream socket; ``connected``: one that is connected to its peer already."""
    if not isinstance(sock, socket.socket):
        raise TypeError(f"sock must be a socket.socket, not {type(sock).__name__}")
    if sock.type != socket.SOCK_STREAM:
        raise ValueError(f"sock must be a SOCK_STREAM socket, not {sock.type!r}")
    if connected:
        try:
            sock.getpeername()
        except OSError:
            raise ValueError(
                "sock is not connected: connect it first, or pass host and port"
            ) from None
    return sock


def check_tls(ssl: Any, server_hostname: object, *, needs_hostname: bool) -> None:
    """``ssl`` is an ``SSLContext`` or None; ``server_hostname`` goes with it, and is needed
    when there is no host name to check the certificate against (a socket, a Unix path)."""
    if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
        raise TypeError(f"ssl must be an ssl.SSLContext or None, not {type(ssl).__name__}")
    if server_hostname is not None:
        if not isinstance(server_hostname, str):
            raise TypeError(f"server_hostname must be a str, not {type(server_hostname).__name__}")
        if ssl is None:
            raise UsageError("server_hostname= only means something with ssl=")
    elif ssl is not None and needs_hostname:
        raise UsageError(
            "ssl= here needs server_hostname=: the name the server's certificate must carry "
            "(there is no host name to check it against)"
        )


def check_settings(
    policy: Policy, limits: Limits, socket_options: SocketOptions, name: str
) -> None:
    """The values every connection is made with; ``name`` as the session will check it (a
    session that refused it in ``connection_made`` would leave the caller waiting)."""
    settings: tuple[tuple[object, type, str], ...] = (
        (policy, Policy, "policy"),
        (limits, Limits, "limits"),
        (socket_options, SocketOptions, "socket_options"),
        (name, str, "name"),
    )
    for value, kind, argument in settings:
        if not isinstance(value, kind):
            raise TypeError(f"{argument} must be a {kind.__name__}, not {type(value).__name__}")
    Session(policy, limits, now=0.0, name=name, rng=_RNG)


def check_server_limits(server_limits: object, limits: Limits) -> ServerLimits:
    """A server's limits, and that one connection filled to its window fits the budget."""
    if not isinstance(server_limits, ServerLimits):
        raise TypeError(f"server_limits must be a ServerLimits, not {type(server_limits).__name__}")
    budget = server_limits.inbound_budget
    one = limits.effective_receive_window + MESSAGE_OVERHEAD + HEADER_SIZE + limits.max_frame_size
    if budget is not None and budget < one:
        raise PolicyError(
            f"inbound_budget ({budget} bytes) must hold at least one connection's receive "
            f"window and frame ({one} bytes), or a peer within its limits would be shed"
        )
    return server_limits
