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
from typing import Final

import msgspec

from pulsewire.core.frames import MAX_WIRE_SECONDS, MESSAGE_OVERHEAD
from pulsewire.errors import PolicyError

__all__ = [
    "MIN_INTERVAL",
    "MIN_TIMEOUT",
    "Adaptive",
    "Evidence",
    "Limits",
    "Policy",
    "ServerLimits",
]

# What HELLO can carry (the bounds in ``frames.Hello``): a policy or limit beyond them would
# be rejected by every peer as a malformed HELLO, so it is rejected here, at construction.
_MAX_WIRE_SECONDS = MAX_WIRE_SECONDS
_MAX_WIRE_BYTES = 2**31

#: The shortest ``interval`` and ``min_peer_interval`` a policy takes, in seconds. More than
#: a hundred pings a second cost CPU and bandwidth and detect nothing sooner (the timeout
#: decides that); the asyncio driver's deadlines come in ticks of 1/128 s anyway.
MIN_INTERVAL: Final = 0.01
#: The shortest ``timeout`` (and ``adaptive.min_timeout``) a policy takes, in seconds. Below
#: it an ordinary pause of either side's event loop (a GC pass, a slow callback: the asyncio
#: driver forgives its own stalls only beyond 0.1 s) or one lost packet (TCP resends it
#: after 0.2 s at the earliest) would convict a live peer.
MIN_TIMEOUT: Final = 0.1


class Evidence(enum.Enum):
    """What counts as proof that the peer is alive."""

    ANY = "any"  #: any bytes from the peer (default): cheapest, busy links need no pings
    PONG = "pong"  #: only PONG answers: proves the peer's event loop runs, not just its kernel


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise PolicyError(f"{name} must be a positive number of seconds, got {value!r}")


def _check_floors(policy: Policy) -> None:
    """Refuse the implausible: timings so short that they convict live peers or only burn
    CPU (see :data:`MIN_TIMEOUT`, :data:`MIN_INTERVAL`), saying why and what to use."""
    floors = [("timeout", policy.timeout)]
    if policy.adaptive is not None:
        floors.append(("adaptive.min_timeout", policy.adaptive.min_timeout))
    for name, value in floors:
        if value < MIN_TIMEOUT:
            raise PolicyError(
                f"{name} {value!r} s is below pulsewire's floor of {MIN_TIMEOUT} s: an "
                "ordinary pause of either event loop (a GC pass, a slow callback) or one lost "
                "packet (TCP resends it after 0.2 s at the earliest) would convict a live "
                "peer; for the fastest safe detection use Policy.lan() (dead after 0.8 s) "
                "or, on a link without loss, Policy.for_detection(0.5)"
            )
    advice = {
        "interval": "use at least 0.01 s, typically a third of the timeout, as "
        "Policy.for_detection(seconds) chooses",
        "min_peer_interval": "accept pings from the peer at most every 0.01 s (the default "
        "is 0.05 s)",
    }
    for name, hint in advice.items():
        value = getattr(policy, name)
        if value < MIN_INTERVAL:
            raise PolicyError(
                f"{name} {value!r} s is below pulsewire's floor of {MIN_INTERVAL} s: more than "
                "a hundred pings a second cost CPU and bandwidth and detect nothing sooner "
                f"(the timeout decides how soon); {hint}"
            )


#: An adaptive initiator pings early by this share of ``jitter``, at least and at most:
#: the middle of a fixed leader's range.
ADAPTIVE_EARLY = (0.2, 0.8)


def adaptive_leader_delays(interval: float, jitter: float) -> tuple[float, float]:
    """The delays an adaptive initiator draws between its PINGs, as ``(start, width)`` in
    seconds: ``interval`` shortened by the ``ADAPTIVE_EARLY`` shares of ``jitter``
    (seconds). LivenessTracker draws from it; Policy.describe() states it."""
    least, most = ADAPTIVE_EARLY
    return interval - most * jitter, (most - least) * jitter


class Adaptive(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Adaptive detection: the timeout follows the response delays observed on the link.

    A response delay is the time from the first PING sent into a silence to the next
    evidence of life. The effective timeout is::

        clamp(interval + max(normal, tail), min_timeout, Policy.timeout)

    - ``normal = m + z * max(s, min_std)``, over the last ``window`` delays (mean ``m``,
      standard deviation ``s``): ``z`` is the normal quantile at which a live peer would be
      that late with probability ``10 ** -threshold`` (the phi of a phi-accrual detector).
      It covers the round trip and its jitter.
    - ``tail = top + (2**k - 1) * rto`` covers ``k`` TCP retransmissions in a row, the
      stepwise tail that a normal fit misses (a segment lost ``k`` times arrives
      ``2**k - 1`` RTOs late). A delay is *late* when it exceeds the mean ``b`` of the
      on-time delays by more than ``0.75 * rto_min``; ``rto = b + rto_min`` is the kernel's
      RTO and ``top = b + 3 * sb`` the slowest on-time answer. With ``r`` the share of late
      answers (weighted over about ``loss_memory`` answers, restarting from the window's
      share when the path visibly changes), ``k`` is the fewest retransmissions (at least
      one) with ``r ** (k + 1) <= 10 ** -tail_threshold``; at least one more than the
      slowest of the last five answers needed, at most ``tail_extra`` more than the
      slowest in the window needed; 1 when ``clean_after`` answers or more fill the window
      and none was late. See :class:`~pulsewire.core.estimators.ResponseEstimator`.

    ``Policy.timeout`` is the ceiling, and it is also the timeout until ``warmup`` delays
    have been observed: a connection is never convicted on too little evidence.

    Measured (``benchmarks/detection_quality.py``, simulated TCP with independent loss):
    on one known, steady path a well-chosen fixed timeout is as good or better (the tail
    model settles just above the same retransmission step, and its T_D tail is a step
    higher at times); with one policy for connections over different paths (a clean LAN,
    a WAN at 1 % loss, a jittery WAN at 10 %), it detected a crash in 1.1 s (median)
    instead of 3.1 s for the fixed timeout with the same false deaths (3.5 s), where the
    normal-only model (``tail_threshold=None``) made 16 times more false deaths (35 times
    more on the lossy path). On a path that turns lossy, the first minutes cost false
    deaths until a retransmission has been seen; a higher floor is the insurance.
    """

    min_timeout: float  #: the floor: never convict sooner than this
    threshold: float = 8.0  #: phi of the normal model: convict when a live answer is this unlikely
    min_std: float = 0.05  #: floor on the normal model's standard deviation, seconds
    window: int = 100  #: delays remembered
    warmup: int = 5  #: delays observed before the estimate replaces the ceiling
    #: phi of the retransmission tail: allow for ``k`` retransmissions in a row, ``k`` the
    #: fewest with ``r ** (k + 1) <= 10 ** -tail_threshold``; None: the normal model only
    tail_threshold: float | None = 3.0
    #: the transport's smallest retransmission timeout, seconds (Linux and RFC 6298 with
    #: Linux's floor: 0.2; Windows: 0.3): the step between on-time and retransmitted answers
    rto_min: float = 0.2
    #: answers over which the share of late ones is weighted (an exponential average)
    loss_memory: int = 1000
    #: retransmissions allowed beyond the most the window's slowest answer needed
    tail_extra: int = 2
    #: a window of at least this many answers, none late, is a clean link: room for one
    #: retransmission (None: as many as the share of late answers asks for)
    clean_after: int | None = None

    def __post_init__(self) -> None:
        _positive("min_timeout", self.min_timeout)
        _positive("min_std", self.min_std)
        if not (isinstance(self.threshold, int | float) and 0 < self.threshold <= 15):
            raise PolicyError(f"threshold (phi) must be in (0, 15], got {self.threshold!r}")
        _positive("rto_min", self.rto_min)
        if self.tail_threshold is not None and not (
            isinstance(self.tail_threshold, int | float) and 0 < self.tail_threshold <= 15
        ):
            raise PolicyError(
                f"tail_threshold (phi) must be in (0, 15] or None, got {self.tail_threshold!r}"
            )
        for name in ("window", "warmup", "loss_memory", "tail_extra"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise PolicyError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.clean_after is not None and not (
            isinstance(self.clean_after, int) and self.warmup <= self.clean_after <= self.window
        ):
            raise PolicyError(
                f"clean_after must be a whole number from warmup ({self.warmup}) to window "
                f"({self.window}), or None; got {self.clean_after!r}"
            )
        if self.warmup > self.window:
            raise PolicyError(
                f"warmup ({self.warmup}) cannot exceed window ({self.window}): the estimate "
                "would never be trusted"
            )


class Policy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How this side watches its peer: a frozen, validated value. DEAD after ``timeout``
    seconds without evidence of life.

    - When nothing has arrived, or nothing has been sent, for ``interval`` seconds (less
      0-``jitter`` of it, drawn per ping so that thousands of connections do not ping in
      lockstep), send a PING: a busy connection sends none. The responder waits
      ``interval`` *plus* 0-``jitter`` of it instead, so on an idle connection the
      initiator's PINGs do the work and the responder only answers. With ``adaptive``
      set, data does not replace pings (one exchange per interval, busy or idle), the
      initiator pings 0.2-0.8 ``jitter`` early and the responder learns the link from
      the echoes of its PONGs (``Feature.ECHO``); with a peer that does not echo, the
      sides ping in turns, each to learn from round trips of its own.
    - After ``suspect_after`` seconds of silence the peer is SUSPECT (pings continue).
    - After ``timeout`` seconds of silence the peer is DEAD with reason TIMEOUT: the worst
      case detection time of a dead peer is ``timeout`` after its last frame arrived.
    - With ``adaptive`` set, the timeout follows the link's observed response delays
      between ``adaptive.min_timeout`` and ``timeout`` (see :class:`Adaptive`).
    - ``progress_timeout``, when set, is how long a received message may wait unconsumed
      before this side reports, in its PONGs, that its application is stuck.

    What is set on the socket (``TCP_USER_TIMEOUT``, linear retransmission timeouts, kernel
    keepalive) is a separate value, :class:`~pulsewire.core.keepalive.SocketOptions`.
    Why the defaults are what they are, with the measurements: ``docs/tuning.md``.
    Unknown fields are rejected when a policy is loaded from JSON, TOML or msgpack.
    """

    interval: float = 1.0  #: ping an idle connection after this much silence, seconds
    timeout: float = 3.0  #: DEAD after this much silence: the worst-case detection time
    suspect_after: float | None = None  #: default: halfway between interval and timeout
    min_peer_interval: float = 0.05  #: the fastest the peer may ping us
    jitter: float = 0.25  #: each idle ping is sent up to this fraction of interval early
    evidence: Evidence = Evidence.ANY  #: what proves life: any bytes, or only PONGs
    handshake_timeout: float = 10.0  #: bound on connecting and the handshake, seconds
    close_timeout: float | None = None  #: wait for the peer's CLOSE; default: ``timeout``
    adaptive: Adaptive | None = None  #: adaptive timeout between a floor and ``timeout``
    progress_timeout: float | None = None  #: report our application stuck after this

    def __post_init__(self) -> None:
        for name in ("interval", "timeout", "min_peer_interval", "handshake_timeout"):
            _positive(name, getattr(self, name))
        _check_floors(self)
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

    # ------------------------------------------------------------------ presets

    @classmethod
    def auto(cls, *, min_timeout: float = 1.2) -> Policy:
        """The policy to use when you do not know the link: fast where it is clean, patient
        where it loses packets. Ping every second, busy or idle; adaptive between
        ``min_timeout`` (1.2 s) and 8 s.

        - A young connection: the 8 s ceiling until five answers have been timed, then
          room for three or four retransmissions in a row (2.4-4 s) until 30 have.
        - A clean link (30 answers, none late, about half a minute): 1.2 s, one interval and
          a fifth of a second for the answer: a dead or hung peer is found in about a
          second. Every answer that comes a retransmission late raises it at once.
        - A lossy link: room for as many retransmissions in a row as a live peer needs
          with probability below 10**-6 (``tail_threshold=6``), at most four more than the
          worst answer seen: at 10 % loss each way, about 7.4 s.

        One exchange per interval, the initiator pinging; each side learns from every
        exchange (the initiator from the answers to its PINGs, the responder from the echo
        of its PONGs), at about the idle CPU of ``Policy()`` (within a tenth at 10,000
        connections: 5 % more instructions per exchange); application data does not replace
        pings, so the timeout stays measured on busy connections. A link that turns lossy
        after a clean spell can cost a false death before the timeout rises (a late answer
        must be seen first: at 10 % loss, about one connection in ten), and so can two
        losses in a row on a link clean enough to have earned the floor (1 % loss: one in
        five to ten connection-hours). ``min_timeout=2.0`` trades a slower verdict on clean
        links (about 2 s) for room for two more retransmissions there. Measured against
        ``Policy()``, kernel keepalive and websockets in docs/detection.md; which to pick
        when: docs/tuning.md.
        """
        return cls(
            interval=1.0,
            timeout=8.0,
            adaptive=Adaptive(
                min_timeout=min_timeout,
                min_std=0.03,
                tail_threshold=6.0,
                tail_extra=4,
                clean_after=30,
            ),
        )

    @classmethod
    def lan(cls) -> Policy:
        """Sub-second detection on a local network: ping every 0.2 s, dead after 0.8 s.

        A LAN's round trip is well under a millisecond and loss is rare, so 0.8 s leaves
        room for one TCP retransmission (200 ms minimum RTO) and a ping that went out up to
        25 % early. 0.8 s is also the worst case: under 1 s for every failure.
        """
        return cls(interval=0.2, timeout=0.8, min_peer_interval=0.05, handshake_timeout=3.0)

    @classmethod
    def wan(cls) -> Policy:
        """Across the internet: ping every second; adaptive between 3 s and 10 s.

        Round trips of 20-300 ms with jitter and some loss. The adaptive timeout settles
        near its 3 s floor on a good path and rises toward the 10 s ceiling on a jittery or
        lossy one, where a fixed timeout would have to be set for the worst path up front.
        The retransmission tail (``tail_threshold=3``) is what makes it rise on a lossy
        path: in ``benchmarks/detection_quality.py``, on a jittery WAN losing 10 % of
        packets, it settled at 3.3-3.5 s with 0.7 false deaths an hour, where the
        normal-only estimate stayed at the 3 s floor with 7.4.
        """
        return cls(
            interval=1.0,
            timeout=10.0,
            adaptive=Adaptive(min_timeout=3.0, tail_threshold=3.0),
            handshake_timeout=15.0,
        )

    @classmethod
    def nat(cls, idle_timeout: float = 60.0) -> Policy:
        """Behind NATs and stateful firewalls that forget flows idle for ``idle_timeout`` s.

        Pings every third of the middlebox's idle timer, so the mapping survives two lost
        pings in a row; dead after four intervals. The common floor for carrier-grade NAT
        TCP mappings is in minutes, but home routers and mobile carriers are seen as low as
        30-60 s: the default 60 s gives a 20 s interval. Pass your middlebox's real timer.
        """
        _positive("idle_timeout", idle_timeout)
        interval = idle_timeout / 3
        return cls(interval=interval, timeout=4 * interval, handshake_timeout=15.0)

    @classmethod
    def mobile(cls) -> Policy:
        """Phones and lossy radio links: NAT-safe, loss-tolerant, sparing with the radio.

        Every wake-up of a cellular radio costs battery, so pings are every 20 s (below
        the 30-60 s NAT timers seen on mobile carriers, like :meth:`nat`); the adaptive
        timeout lies between 45 s and 2 minutes, because mobile links stall for seconds
        (handovers, radio sleep) without being dead.
        """
        return cls(
            interval=20.0,
            timeout=120.0,
            adaptive=Adaptive(min_timeout=45.0),
            handshake_timeout=30.0,
        )

    @classmethod
    def for_detection(cls, within: float, *, loss: float = 0.01) -> Policy:
        """The policy that convicts a dead peer within ``within`` seconds.

        ``loss`` is the packet loss you expect on the path (0.01 = 1 %). Each lost segment
        delays evidence by a TCP retransmission (0.2 s, then doubling), so the lossier the
        path, the more pings must fit into the timeout for one of them to get through in
        time: 3 per timeout below 2 % loss, 4 below 5 %, 5 beyond.
        """
        _positive("within", within)
        if not 0 <= loss < 1:
            raise PolicyError(f"loss must be a fraction in [0, 1), got {loss!r}")
        pings = 3 if loss < 0.02 else 4 if loss < 0.05 else 5
        interval = within / pings
        return cls(
            interval=interval,
            timeout=within,
            min_peer_interval=min(0.05, interval),
            handshake_timeout=max(within, 3.0),
        )

    def describe(self) -> str:
        """One paragraph: when this policy pings, suspects and convicts."""
        if self.adaptive is None:
            verdict = f"dead after {self.timeout:g} s of silence"
        else:
            verdict = (
                f"dead after an adaptive timeout between {self.adaptive.min_timeout:g} s and "
                f"{self.timeout:g} s (phi {self.adaptive.threshold:g}; {self.timeout:g} s "
                f"until {self.adaptive.warmup} response delays are known)"
            )
        evidence = "any bytes" if self.evidence is Evidence.ANY else "only PONGs"
        suspect = (
            f"{self.effective_suspect_after:g} s"
            if self.adaptive is None or self.suspect_after is not None
            else "halfway to the timeout"
        )
        if self.adaptive is None:
            early, late = self.interval * (1 - self.jitter), self.interval * (1 + self.jitter)
            pings = (
                f"Pings after {early:g}-{self.interval:g} s of silence "
                f"(a responder: {self.interval:g}-{late:g} s, so that the initiator leads)"
            )
        else:
            first, width = adaptive_leader_delays(self.interval, self.interval * self.jitter)
            pings = (
                f"Pings every {first:g}-{first + width:g} s, busy or idle (one exchange per "
                "interval: the initiator pings, and the responder learns from the echoes of "
                "its PONGs)"
            )
        return f"{pings}, suspect after {suspect}, {verdict}; evidence: {evidence}."

    # ------------------------------------------------------------------ derived values

    @property
    def effective_suspect_after(self) -> float:
        """``suspect_after``, or its default: halfway between ``interval`` and ``timeout``."""
        if self.suspect_after is not None:
            return self.suspect_after
        return self.interval + (self.timeout - self.interval) / 2

    @property
    def effective_close_timeout(self) -> float:
        """``close_timeout``, or its default: ``timeout``."""
        return self.timeout if self.close_timeout is None else self.close_timeout


class Limits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the peer may make this side hold, for how long, and how data is cut for sending.

    ``receive_window`` is the credit granted to the peer: the most bytes of DATA it may
    send that our application has not consumed yet. It bounds inbound memory while letting
    us keep reading the socket (so PING/PONG flow) when the application is slow.

    Deadlines on what the peer starts (every byte is evidence of life, so a peer that
    dribbles a frame or a message one byte at a time is never convicted of silence; these
    close it with ``CloseCode.TOO_SLOW`` instead):

    - a frame whose first bytes have arrived must be whole within ``frame_timeout``;
    - a message whose first chunk has arrived must, in every ``message_timeout`` seconds
      from then until it is whole, grow by at least ``min_message_rate *
      message_timeout`` bytes: a slow link that keeps moving is never cut off, however
      large the message; a peer that dribbles is, within two windows, however much it
      sent first. The windows stop while the peer has no credit left to send with:
      waiting for our application is not its fault.
    """

    max_frame_size: int = 64 * 1024  #: largest DATA frame payload accepted
    max_message_size: int = 4 * 1024 * 1024  #: largest message accepted
    receive_window: int | None = None  #: default: ``max_message_size``
    chunk_size: int = 16 * 1024  #: outgoing DATA is cut into frames of at most this size
    frame_timeout: float = 30.0  #: a started frame must be whole within this, seconds
    message_timeout: float = 30.0  #: a started message is checked every this many seconds ...
    min_message_rate: float = 1024.0  #: ... and must have grown by this many bytes a second

    def __post_init__(self) -> None:
        for name in ("max_frame_size", "max_message_size", "chunk_size"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value > 0):
                raise PolicyError(f"{name} must be a positive number of bytes, got {value!r}")
        _positive("frame_timeout", self.frame_timeout)
        _positive("message_timeout", self.message_timeout)
        if not (
            isinstance(self.min_message_rate, int | float)
            and math.isfinite(self.min_message_rate)
            and self.min_message_rate > 0
        ):
            raise PolicyError(
                "min_message_rate must be a positive number of bytes per second, "
                f"got {self.min_message_rate!r}"
            )
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
        """``receive_window``, or its default: ``max_message_size``."""
        return self.max_message_size if self.receive_window is None else self.receive_window


class ServerLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What one listening server holds for all its peers together (each connection is
    bounded by :class:`Limits`; this bounds their sum).

    - ``max_connections``: connections accepted and not yet dead. One more is refused:
      it is told ``CLOSE(OVERLOADED)`` right after its preamble and closed. ``None`` (the
      default): as many as the process may open files, less a reserve (the asyncio driver
      reads the soft ``RLIMIT_NOFILE`` when it starts listening: ``limit - max(64,
      limit // 16)``; no bound where there is no such limit).
    - ``inbound_budget``: bytes held for peers across every connection: frames and messages
      they have started, and messages the application has not consumed yet. Past it, the
      connection holding the most is closed with ``CLOSE(OVERLOADED)``, the largest
      incomplete frame or message first (that is what a slow sender makes us hold), until
      the total fits again. ``None``: no budget, only each connection's window.
    """

    #: connections accepted and not yet dead (None: from ``RLIMIT_NOFILE``, see above)
    max_connections: int | None = None
    #: bytes held for peers across every connection (None: no budget)
    inbound_budget: int | None = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("max_connections", "inbound_budget"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value > 0):
                raise PolicyError(f"{name} must be a positive whole number or None, got {value!r}")
