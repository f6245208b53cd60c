"""The socket options a driver sets on each TCP socket, and the constant limits of sending."""

from __future__ import annotations

import socket
from typing import Any

from pulsewire.core.keepalive import SocketOptions
from pulsewire.core.policy import Policy
from pulsewire.kernel import KeepaliveReport, apply_keepalive

__all__ = ["SEND_BUFFER_LIMIT", "apply_socket_options"]

#: ``send()`` returns once no more than this many bytes wait in user space.
SEND_BUFFER_LIMIT = 1024 * 1024


def apply_socket_options(
    sock: Any, options: SocketOptions, policy: Policy
) -> KeepaliveReport | None:
    """Set ``options`` on ``sock`` if it is a TCP socket; return what the kernel applied.

    ``None``: nothing was asked, or the socket is not TCP (Unix sockets, pipes and memory
    streams have no keepalive or user timeout). Raises :class:`~pulsewire.PolicyError`
    when strict options are not all available: the driver then fails the connection.
    """
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    request = options.resolve(policy.timeout)
    if request is None or sock.type != socket.SOCK_STREAM:
        return None
    return apply_keepalive(sock, request)
