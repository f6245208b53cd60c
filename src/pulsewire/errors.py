"""The one exception hierarchy of pulsewire.

Errors are split by who is at fault: the local user misusing the API, the remote
peer breaking the protocol, or the connection being gone::

    PulsewireError
     ├── PolicyError            a policy or limit is invalid (local misuse, raised at construction)
     ├── UsageError             the API was called in a way it does not support (local misuse)
     ├── ProtocolError          the peer broke the wire protocol (carries a close code)
     │    └── HandshakeError    bad magic or version, incompatible proposals (also a ConnectError)
     ├── ConnectError           connect() failed: refused, unreachable, timed out, handshake failed
     │    ├── HandshakeError    (see above: the peer is not a compatible pulsewire peer)
     │    └── TLSError          TLS failed: a certificate was refused (by either side), or the
     │                          two sides share no TLS version or cipher
     └── ConnectionClosedError  the connection is dead; carries the ``Death`` record
          ├── PeerDeadError     the peer died, vanished, reset or closed (reason != LOCAL_CLOSE)
          └── LocalClosedError  you closed it (``close()`` or ``abort()`` was called)

A peer's misbehaviour never escapes to the user as a ``ProtocolError``: the session closes
the connection with the matching close code and reports ``Death(PROTOCOL_ERROR)``; the
``ProtocolError`` is kept on ``Death.error`` for diagnosis.

This module sits below everything else in pulsewire and imports none of it at run time
(the one name it mentions, ``Death``, is for type checkers only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # types only: the core imports this module, never the reverse
    from pulsewire.core.events import Death
    from pulsewire.core.states import Reason

__all__ = [
    "ConnectError",
    "ConnectionClosedError",
    "HandshakeError",
    "LocalClosedError",
    "PeerDeadError",
    "PolicyError",
    "ProtocolError",
    "PulsewireError",
    "TLSError",
    "UsageError",
]


class PulsewireError(Exception):
    """Root of every exception pulsewire raises on purpose."""


class PolicyError(PulsewireError, ValueError):
    """A policy or limit was constructed with values that cannot work together."""


class UsageError(PulsewireError, RuntimeError):
    """The local code used the API in a way it does not support."""


#: The close code of a generic protocol violation (``CloseCode.PROTOCOL_ERROR``).
PROTOCOL_ERROR_CODE: Final = 1002
#: The close code of an orderly close (``CloseCode.NORMAL``).
NORMAL_CODE: Final = 1000


class ProtocolError(PulsewireError):
    """The peer sent bytes that break the wire protocol.

    ``code`` is the close code (a ``CloseCode``) the session sends to the peer before closing.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        #: The ``CloseCode`` sent to the peer (``PROTOCOL_ERROR`` unless more precise).
        self.code: int = PROTOCOL_ERROR_CODE if code is None else code


class ConnectError(PulsewireError):
    """``connect()`` failed: refused, unreachable, timed out, or the handshake failed."""


class HandshakeError(ProtocolError, ConnectError):
    """The handshake failed: wrong magic or version, or incompatible proposals.

    Also raised when the peer accepted the connection but sent no pulsewire greeting within
    the handshake timeout (``code`` is then ``CloseCode.HANDSHAKE_TIMEOUT``), and when it
    closed during the handshake (``code`` is the peer's close code).
    """


class TLSError(ConnectError):
    """TLS could not be set up: a certificate was refused, or no common version or cipher.

    The message names the cause, for example ``certificate verify failed: Hostname
    mismatch, certificate is not valid for 'example.org'``; the ``ssl.SSLError`` behind it
    is the ``__cause__``. Retrying does not help until a certificate or a context changes.
    """


class ConnectionClosedError(PulsewireError):
    """The connection is dead; ``death`` says why, with the last RTT and the silence."""

    def __init__(self, death: Death) -> None:
        super().__init__(self._message(death))
        #: The ``Death`` record: reason, source, silence, last RTT, close code.
        self.death = death

    @staticmethod
    def _message(death: Death) -> str:
        return death.describe()

    @property
    def reason(self) -> Reason:
        """The ``Reason`` of the death (shortcut for ``self.death.reason``)."""
        return self.death.reason


class PeerDeadError(ConnectionClosedError):
    """The peer is gone: timed out, reset, closed, unreachable or broke the protocol."""


class LocalClosedError(ConnectionClosedError):
    """The connection was closed by this side: ``close()`` or ``abort()`` was called.

    The message says so (what the caller did, not the silence that followed); ``death``
    keeps the record all the same.
    """

    @staticmethod
    def _message(death: Death) -> str:
        if death.close_code is None:
            text = "the connection was closed by this side (abort() was called)"
        else:
            code = "" if death.close_code == NORMAL_CODE else f" with code {death.close_code}"
            text = f"the connection was closed by this side (close() was called{code})"
            if death.error is not None:  # e.g. the peer never answered our CLOSE
                text += f"; {death.error}"
        loss = death.describe_loss()
        return f"{text}; {loss}" if loss else text
