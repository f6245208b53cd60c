"""One direction of an in-memory connection: the bytes in flight and what becomes of them."""

from __future__ import annotations

import enum
from typing import final

from pulsewire.core.states import Reason

__all__ = ["Wire", "WireMode"]


class WireMode(enum.Enum):
    """What a :class:`Wire` does with the bytes written into it."""

    DELIVER = "deliver"  #: bytes reach the receiver at the next exchange
    HOLD = "hold"  #: bytes wait in the wire (a stalled path); delivered once set to DELIVER
    DROP = "drop"  #: bytes vanish (a blackhole: cable cut, firewall dropping everything)


@final
class Wire:
    """One direction of a :class:`~pulsewire.testing.SessionPair`.

    Set :attr:`mode` to decide what happens to bytes not yet delivered. When the sending
    session dies, its transport closes: the receiver then gets an end of stream (after an
    orderly death) or a reset (after an abort), in order behind the bytes, unless dropped.
    """

    def __init__(self) -> None:
        self.mode = WireMode.DELIVER  #: what happens to bytes not yet delivered
        self.in_flight = bytearray()  #: written, not yet delivered nor dropped
        self.end: Reason | None = None  #: EOF or RESET, delivered after the bytes
        self.closed = False  #: the sender's transport is closed; later writes are discarded
        self.delivered = 0  #: bytes handed to the receiver so far
        self.dropped = 0  #: bytes lost to DROP so far

    def write(self, data: bytes | bytearray) -> None:
        """The sender wrote ``data``; ignored once the wire is closed."""
        if not self.closed:
            self.in_flight += data

    def close(self, end: Reason) -> None:
        """The sender's transport closed with ``end`` (``Reason.EOF`` or ``Reason.RESET``)."""
        if not self.closed:
            self.closed = True
            self.end = end

    def take(self) -> tuple[bytes, Reason | None]:
        """Remove and return what the receiver may have now: bytes, then the end if any.

        Under HOLD nothing is taken; under DROP everything in flight is lost.
        """
        if self.mode is WireMode.HOLD:
            return b"", None
        data, end = bytes(self.in_flight), self.end
        self.in_flight.clear()
        self.end = None
        if self.mode is WireMode.DROP:
            self.dropped += len(data)
            return b"", None
        self.delivered += len(data)
        return data, end
