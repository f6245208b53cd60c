"""A socket's congestion control (Linux ``TCP_CONGESTION``): read it, switch it, explain a refusal.

Linux applies ``TCP_THIN_LINEAR_TIMEOUTS`` only to a *thin* stream
(``tcp_stream_is_thin()``: fewer than four packets in flight and out of initial slow
start, which needs a slow-start threshold). Reno and cubic set one at the first loss;
BBR never does (:data:`~pulsewire.core.keepalive.NEVER_THIN_CONGESTION`), so a BBR
stream's lost segments back off exponentially whatever the option says. The
``thin_stream_congestion`` step of :func:`~pulsewire.kernel.apply_keepalive` uses these
helpers to switch such a socket to a congestion control that lets linear timeouts work.

The option takes and returns a name (bytes), not an int, so the socket is called through
``Any``: :class:`~pulsewire.kernel.KeepaliveSocket` types the integer options only.
"""

from __future__ import annotations

import errno
import os
from typing import Any, Final

__all__ = [
    "LINUX_TCP_CONGESTION",
    "REFUSED_ERRNOS",
    "read_congestion",
    "refusal_reason",
    "write_congestion",
]

#: Value of ``TCP_CONGESTION`` in Linux ``<linux/tcp.h>``, used when the ``socket`` module
#: lacks the name.
LINUX_TCP_CONGESTION: Final = 13
#: ``TCP_CA_NAME_MAX``: the buffer ``getsockopt(TCP_CONGESTION)`` fills, NUL-padded.
_NAME_BUFFER: Final = 16

#: Why ``setsockopt(TCP_CONGESTION)`` fails when the kernel will not switch (anything else,
#: such as a closed socket, propagates): ``tcp_set_congestion_control()`` in
#: ``net/ipv4/tcp_cong.c``, and ENOPROTOOPT (Winsock's 10042 too) from a kernel without it.
REFUSED_ERRNOS: Final = frozenset(
    {errno.ENOENT, errno.EPERM, errno.EACCES, errno.EBUSY, errno.ENOPROTOOPT, 10042}
)
_HINTS: Final = {
    errno.ENOENT: "it is not available here (see net.ipv4.tcp_available_congestion_control)",
    errno.EPERM: "it is not in net.ipv4.tcp_allowed_congestion_control and the process "
    "lacks CAP_NET_ADMIN",
}


def _names(socket_module: object) -> tuple[int, int]:
    level = getattr(socket_module, "IPPROTO_TCP", 6)
    optname = getattr(socket_module, "TCP_CONGESTION", LINUX_TCP_CONGESTION)
    return level, optname


def read_congestion(sock: Any, socket_module: object) -> str | None:
    """The socket's congestion control algorithm, or ``None`` when it cannot be read."""
    level, optname = _names(socket_module)
    try:
        raw = sock.getsockopt(level, optname, _NAME_BUFFER)
    except (OSError, TypeError, ValueError):
        return None
    if not isinstance(raw, bytes):
        return None
    return raw.split(b"\0", 1)[0].decode("ascii", "replace") or None


def write_congestion(sock: Any, name: str, socket_module: object) -> None:
    """Switch the socket to congestion control ``name``; ``OSError`` when the kernel refuses."""
    level, optname = _names(socket_module)
    sock.setsockopt(level, optname, name.encode("ascii"))


def refusal_reason(code: int | None, name: str, current: str) -> str:
    """The report's reason for a refused switch from ``current`` to ``name``."""
    cause = os.strerror(code) if code is not None else "no error code"
    hint = _HINTS.get(code) if code is not None else None
    return (
        f"the kernel refused {name!r} ({cause}){': ' + hint if hint else ''}; the socket "
        f"keeps {current!r}, under which TCP_THIN_LINEAR_TIMEOUTS has no effect"
    )
