"""Events the session hands to its driver, and the ``Death`` record every death carries."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import msgspec

from pulsewire.core.states import Reason

__all__ = [
    "Death",
    "Died",
    "Event",
    "HandshakeCompleted",
    "MessageReceived",
    "PingAnswered",
    "Recovered",
    "Source",
    "SuspectCause",
    "Suspected",
]


class Source(enum.Enum):
    """Who established the verdict."""

    HEARTBEAT = "heartbeat"  #: pulsewire's own deadline expired
    KERNEL = "kernel"  #: the kernel reported it (RST, ETIMEDOUT, ICMP unreachable, FIN)
    PEER = "peer"  #: the peer said so with a CLOSE frame
    LOCAL = "local"  #: this side closed, or found the peer's bytes malformed


@dataclass(frozen=True, slots=True)
class Death:
    """Why and how a connection died, and what became of the messages sent on it.

    Messages passed to ``send()`` are numbered from 0 in the order of the calls. At the
    death every one of them is in exactly one of three ranges, in this order:

    - ``range(0, delivered)``: the peer had them. Its application had consumed them at
      its last report (PING, PONG and CREDIT carry the count when the peer announces
      ``Feature.PROGRESS``/``Feature.RECEIPTS``), or its CLOSE said its pulsewire had
      received them (``Feature.RECEIPTS``: an orderly close accounts for all of them).
    - :attr:`in_doubt`: handed to the kernel, with no word from the peer: it may or may
      not have them (they were in a socket buffer, on the wire, or in the peer's queue).
    - :attr:`unsent_range`: never handed whole to the kernel (still queued, or in the
      transport's buffer when it was dropped): the peer cannot have them. Their bytes are
      in :attr:`unsent`, ready to send again on another connection.

    ``pulsewire.core`` counts what it hands to its driver as handed to the kernel unless
    the driver reports otherwise; the asyncio driver does report what its transport still
    holds (the *Delivery* page of the documentation says where that reading is exact and
    where it is not).
    """

    reason: Reason  #: why: TIMEOUT, RESET, EOF, UNREACHABLE, PROTOCOL_ERROR, LOCAL_CLOSE
    source: Source  #: who established it: the heartbeat, the kernel, the peer, this side
    silence: float  #: seconds since the last evidence of life when the verdict fell
    last_rtt: float | None  #: last measured round-trip time, seconds
    close_code: int | None = None  #: the CLOSE code sent or received, if any
    close_reason: str = ""  #: the reason text of that CLOSE
    error: Exception | None = None  #: the ProtocolError or OSError behind the verdict
    messages_sent: int = 0  #: messages passed to ``send()`` on this connection
    delivered: int = 0  #: messages ``0 .. delivered - 1`` reached the peer (see above)
    #: the last messages passed to ``send()``, never handed whole to the kernel, in order
    unsent: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def unsent_range(self) -> range:
        """The numbers of the messages in :attr:`unsent`."""
        return range(self.messages_sent - len(self.unsent), self.messages_sent)

    @property
    def in_doubt(self) -> range:
        """The numbers of the messages handed to the kernel that the peer never confirmed."""
        return range(self.delivered, self.messages_sent - len(self.unsent))

    @property
    def undelivered(self) -> int:
        """Messages not known to have reached the peer: in doubt, or unsent."""
        return self.messages_sent - self.delivered

    @property
    def clean(self) -> bool:
        """True when the connection ended by an orderly CLOSE exchange with code NORMAL."""
        return (
            self.close_code == 1000
            and self.reason in (Reason.EOF, Reason.LOCAL_CLOSE)
            and self.error is None  # e.g. the peer never answered our CLOSE
        )

    def describe(self) -> str:
        """One line: ``timeout (heartbeat) after 3.001 s of silence, last RTT 0.4 ms``."""
        rtt = "n/a" if self.last_rtt is None else f"{self.last_rtt * 1000:.1f} ms"
        text = (
            f"{self.reason.value} ({self.source.value}) after {self.silence:.3f} s "
            f"of silence, last RTT {rtt}"
        )
        if self.close_code is not None:
            text += f", close code {self.close_code}"
            if self.close_reason:
                text += f" {self.close_reason!r}"
        if self.error is not None:
            text += f": {self.error}"
        loss = self.describe_loss()
        if loss:
            text += f"; {loss}"
        return text

    def describe_loss(self) -> str:
        """What was not delivered, in words (empty when every message was)."""
        if not self.undelivered:
            return ""
        parts = []
        if self.unsent:
            parts.append(f"{len(self.unsent)} never sent (death.unsent)")
        if self.in_doubt:
            parts.append(f"{len(self.in_doubt)} unconfirmed (death.in_doubt)")
        return f"of {self.messages_sent} messages sent, " + " and ".join(parts)


class HandshakeCompleted(msgspec.Struct, frozen=True):
    """Both HELLOs are exchanged and the intervals are negotiated."""

    peer_name: str
    ping_interval: float  #: how often this side pings an idle connection
    peer_ping_interval: float  #: how often the peer will ping us at most


class MessageReceived(msgspec.Struct, frozen=True, gc=False):
    """A whole application message arrived (reassembled from its chunks)."""

    data: bytes


class SuspectCause(enum.Enum):
    SILENCE = "silence"  #: silent for longer than ``suspect_after``
    PEER_STUCK = "peer_stuck"  #: the peer's PONG says its application is not progressing


class PingAnswered(msgspec.Struct, frozen=True):
    """The PING sent by ``Session.send_ping`` was answered, after ``rtt`` seconds."""

    seq: int
    rtt: float


class Suspected(msgspec.Struct, frozen=True):
    """The peer is SUSPECT: silent past ``suspect_after``, or its application is stuck."""

    silence: float
    cause: SuspectCause = SuspectCause.SILENCE


class Recovered(msgspec.Struct, frozen=True):
    """Evidence arrived from a SUSPECT peer: it is ALIVE again."""

    silence: float  #: how long it had been silent


class Died(msgspec.Struct, frozen=True):
    """The connection is DEAD; the driver must stop I/O (abort if ``abort`` is true)."""

    death: Death
    abort: bool  #: true when the peer is presumed unresponsive: drop, do not flush


Event = HandshakeCompleted | MessageReceived | PingAnswered | Suspected | Recovered | Died
