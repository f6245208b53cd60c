"""Per-connection state as anyio typed attributes."""

from __future__ import annotations

from anyio import TypedAttributeSet, typed_attribute

from pulsewire.core.events import Death
from pulsewire.core.policy import Policy
from pulsewire.core.session import Negotiated
from pulsewire.core.states import State
from pulsewire.kernel import KeepaliveReport

__all__ = ["PulsewireAttribute"]


class PulsewireAttribute(TypedAttributeSet):
    """What ``connection.extra(...)`` answers about a pulsewire connection.

    Read at the time of the call, like the properties of the same names. The wrapped
    stream's own attributes pass through (``SocketAttribute.raw_socket``,
    ``TLSAttribute.peer_certificate``, ...)::

        rtt = connection.extra(PulsewireAttribute.rtt)
        sock = connection.extra(anyio.abc.SocketAttribute.raw_socket)
    """

    #: Smoothed round-trip time in seconds; ``None`` before the first PONG.
    rtt: float | None = typed_attribute()
    #: HANDSHAKE, ALIVE, SUSPECT, CLOSING or DEAD.
    state: State = typed_attribute()
    #: Why the connection died; ``None`` while it lives.
    death: Death | None = typed_attribute()
    #: The intervals the handshake settled, and the peer's HELLO (``None`` before).
    negotiated: Negotiated | None = typed_attribute()
    #: This side's policy.
    policy: Policy = typed_attribute()
    #: What the kernel applied of the socket options (``None``: nothing asked, or not TCP).
    kernel_report: KeepaliveReport | None = typed_attribute()
