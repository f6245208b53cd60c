"""Frozen snapshots of a session's counters and RTT figures."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from pulsewire.core.states import State

__all__ = ["SessionStats"]


class SessionStats(msgspec.Struct, frozen=True, kw_only=True):
    """What one connection has done so far. Durations in seconds."""

    #: The names of the fields that only ever grow (for code that sums or diffs them).
    COUNTERS: ClassVar[tuple[str, ...]] = (
        "messages_sent",
        "messages_written",
        "messages_received",
        "messages_consumed",
        "bytes_out",
        "bytes_in",
        "pings_sent",
        "pings_received",
        "pongs_received",
        "pings_refused",
    )

    state: State  #: where the connection stands
    silence: float  #: time since the last evidence of life
    rtt_last: float | None  #: the latest round-trip time (None: no PONG yet)
    rtt_smoothed: float | None  #: the smoothed round-trip time (RFC 6298 SRTT)
    rtt_variance: float | None  #: its mean deviation (RFC 6298 RTTVAR)
    rtt_min: float | None  #: the shortest round trip seen
    rtt_max: float | None  #: the longest round trip seen
    rtt_p50: float | None  #: over the last 32 samples
    rtt_p99: float | None  #: over the last 32 samples
    timeout: float  #: the timeout in force (adaptive policies move it)
    peer_stuck_for: float  #: the peer's last report of its application being stuck, s
    pending_send_bytes: int  #: DATA bytes accepted by send() and not yet handed out
    messages_sent: int  #: passed to send() (numbered from 0: see ``Death``)
    #: of those, handed whole to the kernel (as far as the driver reports: see ``Death``);
    #: not a count of what the peer received: that is ``peer_consumed``
    messages_written: int
    messages_received: int  #: received whole from the peer
    messages_consumed: int  #: received messages the application has taken
    #: of the messages sent, how many the peer's application had consumed at its latest
    #: report (None: the peer does not report it)
    peer_consumed: int | None
    bytes_out: int  #: every byte handed to the transport, framing included
    bytes_in: int  #: every byte received from the peer, framing included
    pings_sent: int  #: PINGs this side sent
    pings_received: int  #: PINGs the peer sent (each answered with a PONG)
    pongs_received: int  #: answers to this side's PINGs (one RTT sample each)
    pings_refused: int  #: pings beyond the abuse limit (the connection is then closed)
