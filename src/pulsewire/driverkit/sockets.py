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

# Every socket of a listener gets the same options and, nearly always, the same report: a
# report of its own would cost each of 10,000 idle connections about 0.6 KiB. Equal
# reports are shared (they are frozen); the table is emptied when it is full.
_REPORTS_KEPT = 64
_reports: dict[KeepaliveReport, KeepaliveReport] = {}


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
    report = apply_keepalive(sock, request)
    shared = _reports.get(report)
    if shared is not None:
        return shared
    if len(_reports) >= _REPORTS_KEPT:
        _reports.clear()
    _reports[report] = report
    return report
