"""Policies and limits: immutable, comparable, printable values, validated at construction.

A :class:`Policy` says how this side watches its peer: how often it pings an idle
connection, when silence makes the peer SUSPECT, and when it makes it DEAD. :class:`Limits`
bounds what the peer may make us hold in memory. Both are ``msgspec.Struct``\\ s, so they
compare by value, hash, print as their constructor call, and serialise to JSON or msgpack
for configuration files.
"""

from __future__ import annotations

import enum
import math

import msgspec

from pulsewire.core.frames import MESSAGE_OVERHEAD
from pulsewire.errors import PolicyError

__all__ = ["Adaptive", "Evidence", "Limits", "Policy"]

# What HELLO can carry (the bounds in ``frames.Hello``): a policy or limit beyond them would
# be rejected by every peer as a malformed HELLO, so it is rejected here, at construction.
_MAX_WIRE_SECONDS = 86_400
_MAX_WIRE_BYTES = 2**31


class Evidence(enum.Enum):
    """What counts as proof that the peer is alive."""

    ANY = "any"  #: any bytes from the peer (default): cheapest, busy links need no pings
    PONG = "pong"  #: only PONG answers: proves the peer's event loop runs, not just its kernel


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise PolicyError(f"{name} must be a positive number of seconds, got {value!r}")


class Adaptive(msgspec.Struct, frozen=True, kw_only=True):
    """Adaptive detection: the timeout follows the response delays observed on the link.

    A response delay is the time from the first PING sent into a silence to the next
    evidence of life. Over the last ``window`` of them (mean ``m``, standard deviation
    ``s``), the effective timeout is::

        clamp(interval + m + z * max(s, min_std), min_timeout, Policy.timeout)

    where ``z`` is the normal quantile at which a live peer would be that late with
    probability ``10 ** -threshold`` (the phi of a phi-accrual detector: 8 means one
    mistake in 10^8 answers if the delays were normal; they are not — TCP retransmissions
    give them a long tail — which is what ``min_timeout`` is for). ``Policy.timeout`` is
    the ceiling, and it is also the timeout until ``warmup`` delays have been observed:
    a connection is never convicted on too little evidence.
    """

    min_timeout: float  #: the floor: never convict sooner than this
    threshold: float = 8.0  #: phi: convict when a live answer is this unlikely
    min_std: float = 0.05  #: floor on the standard deviation, seconds
    window: int = 100  #: delays remembered
    warmup: int = 5  #: delays observed before the estimate replaces the ceiling

    def __post_init__(self) -> None:
        _positive("min_timeout", self.min_timeout)
        _positive("min_std", self.min_std)
        if not (isinstance(self.threshold, int | float) and 0 < self.threshold <= 15):
            raise PolicyError(f"threshold (phi) must be in (0, 15], got {self.threshold!r}")
        for name in ("window", "warmup"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise PolicyError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.warmup > self.window:
            raise PolicyError(
                f"warmup ({self.warmup}) cannot exceed window ({self.window}): the estimate "
                "would never be trusted"
            )


class Policy(msgspec.Struct, frozen=True, kw_only=True):
    """A fixed liveness policy: DEAD after ``timeout`` seconds without evidence.

    - When nothing has arrived for ``interval`` seconds (less 0-``jitter`` of it, drawn
      per ping so that thousands of connections do not ping in lockstep), send a PING.
      A busy connection therefore sends no pings at all.
    - After ``suspect_after`` seconds of silence the peer is SUSPECT (pings continue).
    - After ``timeout`` seconds of silence the peer is DEAD with reason TIMEOUT.

    Worst-case detection time of a dead peer is ``timeout`` after its last frame arrived.

    With ``adaptive`` set, the timeout follows the link's observed response delays between
    ``adaptive.min_timeout`` and ``timeout`` (see :class:`Adaptive`).

    ``tcp_user_timeout`` (default on) also sets the socket's ``TCP_USER_TIMEOUT`` to
    ``timeout`` where the platform has it, so that data written to a blackholed peer is
    given up by the kernel within the same bound instead of after ~15 minutes of
    retransmissions. ``progress_timeout``, when set, is how long a received message may
    wait unconsumed before this side reports, in its PONGs, that its application is stuck.
    """

    interval: float = 1.0
    timeout: float = 5.0
    suspect_after: float | None = None  #: default: halfway between interval and timeout
    min_peer_interval: float = 0.05  #: the fastest the peer may ping us
    jitter: float = 0.25  #: each idle ping is sent up to this fraction of interval early
    evidence: Evidence = Evidence.ANY
    handshake_timeout: float = 10.0
    close_timeout: float | None = None  #: wait for the peer's CLOSE; default: ``timeout``
    adaptive: Adaptive | None = None  #: adaptive timeout between a floor and ``timeout``
    tcp_user_timeout: bool = True  #: set TCP_USER_TIMEOUT to ``timeout`` on the socket
    progress_timeout: float | None = None  #: report our application stuck after this

    def __post_init__(self) -> None:
        for name in ("interval", "timeout", "min_peer_interval", "handshake_timeout"):
            _positive(name, getattr(self, name))
        for name in ("timeout", "min_peer_interval"):
            if getattr(self, name) > _MAX_WIRE_SECONDS:
                raise PolicyError(
                    f"{name} must be at most {_MAX_WIRE_SECONDS} s (one day), "
                    f"got {getattr(self, name)!r}"
                )
        if self.timeout <= self.interval:
            raise PolicyError(
                f"timeout ({self.timeout} s) must be longer than interval ({self.interval} s): "
                "the peer needs at least one ping interval to answer before it is convicted"
            )
        if self.suspect_after is not None:
            _positive("suspect_after", self.suspect_after)
            if not self.suspect_after < self.timeout:
                raise PolicyError(
                    f"suspect_after ({self.suspect_after} s) must be shorter than "
                    f"timeout ({self.timeout} s)"
                )
        if self.close_timeout is not None:
            _positive("close_timeout", self.close_timeout)
        if self.progress_timeout is not None:
            _positive("progress_timeout", self.progress_timeout)
        if self.adaptive is not None:
            floor = self.adaptive.min_timeout
            if not self.interval < floor <= self.timeout:
                raise PolicyError(
                    f"adaptive.min_timeout ({floor} s) must lie between interval "
                    f"({self.interval} s) and timeout ({self.timeout} s, the ceiling)"
                )
            if self.suspect_after is not None and not self.suspect_after < floor:
                raise PolicyError(
                    f"suspect_after ({self.suspect_after} s) must be shorter than "
                    f"adaptive.min_timeout ({floor} s)"
                )
        if not 0 <= self.jitter <= 0.5:
            raise PolicyError(
                f"jitter must be a fraction in [0, 0.5], got {self.jitter!r}: peers treat "
                "pings closer than half the negotiated interval as abuse"
            )

    @property
    def effective_suspect_after(self) -> float:
        if self.suspect_after is not None:
            return self.suspect_after
        return self.interval + (self.timeout - self.interval) / 2

    @property
    def effective_close_timeout(self) -> float:
        return self.timeout if self.close_timeout is None else self.close_timeout


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """What the peer may make this side hold, and how data is cut for sending.

    ``receive_window`` is the credit granted to the peer: the most bytes of DATA it may
    send that our application has not consumed yet. It bounds inbound memory while letting
    us keep reading the socket (so PING/PONG flow) when the application is slow.
    """

    max_frame_size: int = 64 * 1024  #: largest DATA frame payload accepted
    max_message_size: int = 4 * 1024 * 1024  #: largest message accepted
    receive_window: int | None = None  #: default: ``max_message_size``
    chunk_size: int = 16 * 1024  #: outgoing DATA is cut into frames of at most this size

    def __post_init__(self) -> None:
        for name in ("max_frame_size", "max_message_size", "chunk_size"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value > 0):
                raise PolicyError(f"{name} must be a positive number of bytes, got {value!r}")
        if self.receive_window is not None and self.receive_window < self.max_message_size:
            raise PolicyError(
                f"receive_window ({self.receive_window}) must be at least max_message_size "
                f"({self.max_message_size}), or a whole message could never be delivered"
            )
        wire_limits = (
            ("max_frame_size", self.max_frame_size, _MAX_WIRE_BYTES),
            ("max_message_size", self.max_message_size, _MAX_WIRE_BYTES - MESSAGE_OVERHEAD),
            ("receive_window", self.effective_receive_window, _MAX_WIRE_BYTES - MESSAGE_OVERHEAD),
        )
        for name, value, limit in wire_limits:
            if value > limit:
                raise PolicyError(f"{name} must be at most {limit} bytes, got {value!r}")

    @property
    def effective_receive_window(self) -> int:
        return self.max_message_size if self.receive_window is None else self.receive_window
