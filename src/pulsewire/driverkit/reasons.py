"""The transport's error mapped to a death reason; peer addresses formatted for logs."""

from __future__ import annotations

import errno
import ssl
from typing import Any

from pulsewire.core.events import Source
from pulsewire.core.states import Reason

__all__ = ["format_address", "reason_for_error"]

_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}
_RESET = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ECONNREFUSED}


def reason_for_error(error: BaseException | None) -> tuple[Reason, Source]:
    """Map what the transport reported to a death reason: the kernel is the source.

    ``None`` (a clean end of stream) is EOF. A TLS stream that ends without its
    close_notify is EOF as well: a killed peer's kernel closes the socket with a FIN, and
    only the TLS layer knows the goodbye was not said.
    """
    if error is None or isinstance(error, ssl.SSLEOFError) or _unexpected_tls_eof(error):
        return Reason.EOF, Source.KERNEL
    code = getattr(error, "errno", None)
    if isinstance(error, ConnectionResetError | BrokenPipeError) or code in _RESET:
        return Reason.RESET, Source.KERNEL
    if code in _UNREACHABLE:
        return Reason.UNREACHABLE, Source.KERNEL
    if isinstance(error, TimeoutError) or code == errno.ETIMEDOUT:
        return Reason.TIMEOUT, Source.KERNEL
    return Reason.RESET, Source.KERNEL


def _unexpected_tls_eof(error: BaseException) -> bool:
    return isinstance(error, ssl.SSLError) and "UNEXPECTED_EOF" in str(error)


def format_address(address: Any) -> str:
    """``host:port`` (``[host]:port`` for IPv6), ``unix:PATH`` (``unix:@NAME`` for Linux's
    abstract names), or ``?``."""
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0]
        return f"[{host}]:{address[1]}" if ":" in str(host) else f"{host}:{address[1]}"
    if isinstance(address, bytes):
        address = address.decode(errors="replace")
    if isinstance(address, str) and address:
        return "unix:@" + address[1:] if address[0] == "\0" else "unix:" + address
    return "?"
