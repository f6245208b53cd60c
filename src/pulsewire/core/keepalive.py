"""What pulsewire asks of the kernel for each TCP socket: frozen, validated values.

- :class:`SocketOptions` is what a user passes to ``connect``/``serve``: the socket options
  that go with the heartbeat (``TCP_USER_TIMEOUT``, linear retransmission timeouts, kernel
  keepalive probing, an opt-in congestion control switch). It is apart from
  :class:`~pulsewire.core.policy.Policy`, which says how the heartbeat watches the peer.
- :class:`KernelKeepalive` is the resolved request for one socket, in the kernel's terms.

This module only says what is asked for and whether it can work at all; it touches no
socket. :func:`pulsewire.kernel.apply_keepalive` applies a :class:`KernelKeepalive` per
platform and reports what the kernel took.

Three independent mechanisms can be asked for, in any combination:

- **keepalive probing** (``idle``, ``interval``, ``count``, all set or all ``None``):
  ``SO_KEEPALIVE`` and its timers; the kernel probes an idle connection and drops it when
  the probes go unanswered. With all three ``None``, ``SO_KEEPALIVE`` is not touched.
- **a bound on unacknowledged data** (``user_timeout``): ``TCP_USER_TIMEOUT`` (Windows:
  ``TCP_MAXRT``), the longest that written data may stay unacknowledged.
- **linear retransmission timeouts for thin streams** (``linear_timeouts``): Linux's
  ``TCP_THIN_LINEAR_TIMEOUTS``. A heartbeat keeps fewer than four segments in flight, which
  Linux calls a *thin stream*; with this option the first retransmissions of a lost segment
  (the tail-loss probe and six RTO-driven ones) are spaced one RTO apart instead of doubling.
  Measured on a sub-millisecond link (Linux 6.18): retransmissions 0.2, 0.4, 0.6 ... 1.7 s
  after the send, against 0.2, 0.4, 0.8, 1.7, 3.3, 6.8 s. A run of losses then delays
  evidence of life far less. Linux counts a stream as thin only once its congestion
  control has set a slow-start threshold, which BBR never does: under BBR the option is
  accepted and reads back, but changes nothing. ``thin_stream_congestion`` therefore
  switches a BBR socket (:data:`NEVER_THIN_CONGESTION`) to a congestion control that does
  set one (``TCP_CONGESTION``; ``"reno"`` in :class:`~pulsewire.Policy`), so that the
  linear timeouts apply; :func:`~pulsewire.kernel.apply_keepalive` reports the switch, or,
  when the kernel refuses it, that linear timeouts stay inert.
"""

from __future__ import annotations

import math
from typing import Any, Final

import msgspec

from pulsewire.errors import PolicyError

__all__ = [
    "CONGESTION_NAME_MAX",
    "LINUX_MAX_KEEPCNT",
    "LINUX_MAX_KEEPIDLE",
    "NEVER_THIN_CONGESTION",
    "RTO_MAX_RANGE",
    "KernelKeepalive",
    "SocketOptions",
]

#: Linux ``MAX_TCP_KEEPIDLE`` / ``MAX_TCP_KEEPINTVL`` (seconds): the largest value accepted.
LINUX_MAX_KEEPIDLE: Final = 32767
#: Linux ``MAX_TCP_KEEPCNT``: the largest probe count accepted.
LINUX_MAX_KEEPCNT: Final = 127
#: Largest ``TCP_USER_TIMEOUT`` in seconds: Linux takes an ``int`` of milliseconds.
_MAX_USER_TIMEOUT: Final = (2**31 - 1) // 1000
#: The range Linux accepts for ``TCP_RTO_MAX_MS``, in seconds (1 s to ``TCP_RTO_MAX``).
RTO_MAX_RANGE: Final = (1.0, 120.0)

#: Congestion controls under which Linux never counts a stream as thin, so that
#: ``TCP_THIN_LINEAR_TIMEOUTS`` has no effect: ``tcp_stream_is_thin()`` requires a
#: slow-start threshold (``snd_ssthresh`` below ``TCP_INFINITE_SSTHRESH``), which reno and
#: cubic set at the first loss and BBR never does (measured on Linux 6.18).
NEVER_THIN_CONGESTION: Final = frozenset({"bbr"})
#: Longest congestion control name, in bytes: Linux ``TCP_CA_NAME_MAX`` (16) less the NUL.
CONGESTION_NAME_MAX: Final = 15

# Shared with pulsewire.kernel (not in __all__): a float that is this close to a whole
# number of units counts as that whole number (2.3 s * 1000 is 2299.9999999999995 ms).
UNIT_TOLERANCE: Final = 1e-6


def is_number(value: object) -> bool:
    """True for an ``int`` or ``float`` that is not a ``bool`` (shared with pulsewire.kernel)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_thin_stream_congestion(value: object, field: str = "thin_stream_congestion") -> None:
    """Validate a congestion control name given as ``field``.

    ``None``, or a congestion control name as Linux takes it in ``TCP_CONGESTION``: 1 to
    15 printable ASCII characters without spaces, and not one under which a stream never
    counts as thin (switching to it would change nothing).
    """
    if value is None:
        return
    if not (
        isinstance(value, str)
        and 1 <= len(value) <= CONGESTION_NAME_MAX
        and value.isascii()
        and value.isprintable()
        and not any(char.isspace() for char in value)
    ):
        raise PolicyError(
            f"{field} must be a congestion control name (1 to "
            f"{CONGESTION_NAME_MAX} printable ASCII characters, no spaces, as Linux's "
            f"TCP_CONGESTION takes it) or None, got {value!r}"
        )
    if value in NEVER_THIN_CONGESTION:
        raise PolicyError(
            f"{field} {value!r} never lets a stream count as thin, so linear "
            "timeouts would still do nothing: name one that sets a slow-start threshold, "
            "such as 'reno' or 'cubic', or None to leave congestion control alone"
        )


def check_rto_max(value: Any) -> None:
    """Validate an ``rto_max`` in seconds (shared with :class:`SocketOptions`)."""
    low, high = RTO_MAX_RANGE
    if not (is_number(value) and math.isfinite(value) and low <= value <= high):
        raise PolicyError(
            f"rto_max must be between {low:g} and {high:g} seconds (the range Linux accepts "
            f"for TCP_RTO_MAX_MS), or None, got {value!r}"
        )


def is_whole(value: float, scale: int = 1) -> bool:
    """True when ``value * scale`` is a whole number, within :data:`UNIT_TOLERANCE`."""
    exact = value * scale
    return abs(exact - round(exact)) < UNIT_TOLERANCE


class KernelKeepalive(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Kernel keepalive settings for one TCP connection: a frozen, validated value.

    - ``idle``: seconds without any received segment before the first probe.
    - ``interval``: seconds between unanswered probes.
    - ``count``: unanswered probes after which the kernel drops the connection.
    - ``user_timeout``: ``TCP_USER_TIMEOUT`` in seconds, the longest that written data may
      stay unacknowledged before the kernel drops the connection; ``None`` leaves the
      option unset (the host's retransmission limit applies). Linux takes milliseconds.
    - ``linear_timeouts``: turn on Linux's ``TCP_THIN_LINEAR_TIMEOUTS`` (see the module
      docstring); ``False`` leaves it as it is. Linux-only: elsewhere it is reported
      unsupported.
    - ``thin_stream_congestion``: with ``linear_timeouts``, a socket whose congestion
      control never lets a stream count as thin (:data:`NEVER_THIN_CONGESTION`: BBR) is
      switched to this one (``TCP_CONGESTION``, Linux only), so that the linear timeouts
      apply; any other socket (cubic, reno, ...) is left alone. ``None`` (the default)
      never touches congestion control.
      A kernel that refuses the switch (the algorithm is not available, or not in
      ``net.ipv4.tcp_allowed_congestion_control`` for an unprivileged process) is
      reported, not raised, except in strict mode.
    - ``rto_max``: Linux's ``TCP_RTO_MAX_MS`` (Linux 6.15 and later), in seconds, 1 to
      120: the retransmission timeout stops doubling here, so a segment lost again and
      again is retried at least this often, and unacknowledged data is given up after
      ``tcp_retries2`` retransmissions in far less time (about 14.4 s at 1 s, against
      924.6 s with the kernel's 120 s). ``None`` leaves it alone. A kernel without it
      reports it unsupported.
    - ``strict``: every option must be applied exactly, on every platform. Fractional
      ``idle``/``interval`` (the keepalive socket options take whole seconds) or a
      ``user_timeout`` finer than a millisecond are rejected here; an option the platform
      lacks, or one it can only take rounded, makes :func:`~pulsewire.kernel.apply_keepalive`
      raise :class:`~pulsewire.errors.PolicyError` instead of reporting it.

    Keepalive probing is optional: ``idle``, ``interval`` and ``count`` are all set
    (probing on) or all ``None`` (probing off: ``SO_KEEPALIVE`` is not touched and only
    ``user_timeout`` and ``linear_timeouts`` are applied). At least one of the three
    mechanisms must be asked for.

    In the default mode fractional values are rounded up per platform by
    :func:`~pulsewire.kernel.apply_keepalive`, and the report says so.

    Bounds: ``idle`` and ``interval`` at most 32767 s and ``count`` 1 to 127 (Linux's
    limits, the tightest of the supported platforms); ``user_timeout`` positive and at most
    2147483 s (an ``int`` of milliseconds).
    """

    idle: float | None = None
    interval: float | None = None
    count: int | None = None
    user_timeout: float | None = None
    strict: bool = False
    linear_timeouts: bool = False
    thin_stream_congestion: str | None = None
    rto_max: float | None = None

    def __post_init__(self) -> None:
        for name in ("idle", "interval"):
            value = getattr(self, name)
            if value is not None:
                self._check_probe_time(name, value)
        if self.count is not None:
            self._check_count(self.count)
        if self.user_timeout is not None:
            self._check_user_timeout(self.user_timeout)
        if self.rto_max is not None:
            check_rto_max(self.rto_max)
        for name in ("strict", "linear_timeouts"):
            if not isinstance(getattr(self, name), bool):
                raise PolicyError(f"{name} must be True or False, got {getattr(self, name)!r}")
        check_thin_stream_congestion(self.thin_stream_congestion)
        given = [value is not None for value in (self.idle, self.interval, self.count)]
        if any(given) and not all(given):
            raise PolicyError(
                "idle, interval and count must be all set (keepalive probing on) or all None "
                f"(probing off), got idle={self.idle!r}, interval={self.interval!r}, "
                f"count={self.count!r}"
            )
        if (
            not any(given)
            and self.user_timeout is None
            and not self.linear_timeouts
            and self.rto_max is None
        ):
            raise PolicyError(
                "nothing to apply: set idle, interval and count (keepalive probing), "
                "user_timeout (TCP_USER_TIMEOUT), linear_timeouts, rto_max, or a combination"
            )

    # The checks take Any: msgspec does not check types in __init__, anything may arrive.

    def _check_probe_time(self, name: str, value: Any) -> None:
        if not (is_number(value) and math.isfinite(value) and value > 0):
            raise PolicyError(f"{name} must be a positive number of seconds, got {value!r}")
        if value > LINUX_MAX_KEEPIDLE:
            raise PolicyError(
                f"{name} must be at most {LINUX_MAX_KEEPIDLE} s (the largest value Linux "
                f"accepts for TCP_KEEP{'IDLE' if name == 'idle' else 'INTVL'}), "
                f"got {value!r}"
            )
        if self.strict and not (is_whole(value) and value >= 1):
            raise PolicyError(
                f"{name} must be a whole number of seconds >= 1 in strict mode "
                f"(keepalive socket options take whole seconds), got {value!r}; "
                "without strict it is rounded up and the report says so"
            )

    def _check_count(self, count: Any) -> None:
        if not (isinstance(count, int) and not isinstance(count, bool)):
            raise PolicyError(f"count must be a whole number of probes, got {count!r}")
        if not 1 <= count <= LINUX_MAX_KEEPCNT:
            raise PolicyError(
                f"count must be between 1 and {LINUX_MAX_KEEPCNT} probes (Linux's limit "
                f"for TCP_KEEPCNT), got {count!r}"
            )

    def _check_user_timeout(self, value: Any) -> None:
        if not (is_number(value) and math.isfinite(value)):
            raise PolicyError(f"user_timeout must be a number of seconds or None, got {value!r}")
        if value == 0:
            raise PolicyError(
                "user_timeout must be positive; use None to leave TCP_USER_TIMEOUT unset "
                "(the kernel reads 0 as 'use the system default')"
            )
        if value < 0:
            raise PolicyError(f"user_timeout must be positive, got {value!r}")
        if value > _MAX_USER_TIMEOUT:
            raise PolicyError(
                f"user_timeout must be at most {_MAX_USER_TIMEOUT} s (TCP_USER_TIMEOUT "
                f"is an int of milliseconds), got {value!r}"
            )
        if self.strict and not is_whole(value, 1000):
            raise PolicyError(
                f"user_timeout must be a whole number of milliseconds in strict mode "
                f"(TCP_USER_TIMEOUT takes milliseconds), got {value!r} s"
            )

    @property
    def probing(self) -> bool:
        """True when keepalive probing is asked for (``idle``, ``interval``, ``count`` set)."""
        return self.idle is not None

    @property
    def nominal_detection_time(self) -> float | None:
        """``idle + interval * count``: how long an idle dead peer goes unnoticed, as asked.

        ``None`` when probing is off. The platform may round or replace these values;
        :class:`~pulsewire.kernel.KeepaliveReport` gives the time that results from what
        was actually applied.
        """
        if self.idle is None or self.interval is None or self.count is None:
            return None
        return self.idle + self.interval * self.count

    @property
    def whole_second_detection_time(self) -> int | None:
        """``idle + interval * count`` with ``idle`` and ``interval`` rounded up to whole seconds.

        The socket options take whole seconds (at least 1), so this is what Linux and macOS
        apply. ``None`` when probing is off.
        """
        if self.idle is None or self.interval is None or self.count is None:
            return None
        return _whole_seconds(self.idle) + _whole_seconds(self.interval) * self.count


def _whole_seconds(value: float) -> int:
    """``value`` rounded up to a whole number of seconds, at least 1 (as applied)."""
    return max(1, math.ceil(value - UNIT_TOLERANCE))


class SocketOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The kernel side of each TCP connection, set by the driver beside the heartbeat.

    - ``rto_max`` (default 1 s): Linux's ``TCP_RTO_MAX_MS`` (6.15 and later), the kernel
      backstop. The retransmission timeout stops doubling at 1 s, so data written to a
      vanished peer is given up by the kernel after about 15 s (``tcp_retries2``
      retransmissions) even when the heartbeat is not running (a blocked event loop), and
      a lost heartbeat is retried at least every second. ``None`` leaves it alone; a
      kernel without it reports it unsupported (the bound is then the host's, ~15 min).
    - ``user_timeout``: ``TCP_USER_TIMEOUT``, the longest written data may stay
      unacknowledged before the kernel drops the connection. Off by default: Linux can
      fire it on a *live* connection after local transmit failures (a host firewall or
      rate limit dropping outgoing packets), against a probe timestamp left over from an
      earlier episode, whatever its value (measured in ``docs/tuning.md``). ``True``:
      derived from the policy's timeout, see :meth:`resolve`; ``False``: left unset; a
      number: that many seconds.
    - ``linear_timeouts`` (default on): Linux's ``TCP_THIN_LINEAR_TIMEOUTS``, so a lost
      PING or PONG is retransmitted every RTO instead of after a doubling RTO; inert under
      BBR (see the module docstring). Reported unsupported off Linux.
    - ``congestion``: opt-in. With linear timeouts, a socket whose congestion control
      never lets them apply (BBR) is switched to this one (``"reno"``, say). ``None``
      (default) never touches congestion control.
    - ``keepalive``: kernel keepalive probing on top (a :class:`KernelKeepalive` with
      ``idle``, ``interval`` and ``count``), to keep middleboxes warm below the
      application or as a second opinion. Its own ``user_timeout``, if set, wins.
    - ``strict``: every option must be applied exactly, or the connection fails.

    What each connection got is on ``Connection.kernel_report``. The measurements behind
    the defaults are in ``docs/tuning.md``.
    """

    user_timeout: bool | float = False
    linear_timeouts: bool = True
    rto_max: float | None = 1.0
    congestion: str | None = None
    keepalive: KernelKeepalive | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        for name in ("linear_timeouts", "strict"):
            if not isinstance(getattr(self, name), bool):
                raise PolicyError(f"{name} must be True or False, got {getattr(self, name)!r}")
        timeout = self.user_timeout
        if not isinstance(timeout, bool) and not (
            is_number(timeout) and math.isfinite(timeout) and timeout > 0
        ):
            raise PolicyError(
                "user_timeout must be True (derived from the policy), False (unset) or a "
                f"positive number of seconds, got {timeout!r}"
            )
        check_thin_stream_congestion(self.congestion, "congestion")
        if self.rto_max is not None:
            check_rto_max(self.rto_max)
        if self.keepalive is not None and not self.keepalive.probing:
            raise PolicyError(
                "keepalive must ask for probing (idle, interval and count); set user_timeout "
                "and linear_timeouts here instead"
            )

    def resolve(self, heartbeat_timeout: float) -> KernelKeepalive | None:
        """The request for one socket of a connection whose policy convicts after
        ``heartbeat_timeout`` seconds of silence at most; None when nothing is to be set.

        A derived user timeout (``user_timeout=True``) is ``heartbeat_timeout``: written
        data that the peer never acknowledges is given up within the heartbeat's own bound
        (Linux counts it from the first retransmission, so about one RTO later). With
        keepalive probing it is raised to the probing's own bound, ``idle + interval *
        count`` in whole seconds: Linux lets the user timeout replace ``TCP_KEEPCNT``, and a
        shorter one would drop an idle connection after fewer unanswered probes than asked.
        """
        probing = self.keepalive
        user_timeout: float | None
        if probing is not None and probing.user_timeout is not None:
            user_timeout = probing.user_timeout
        elif self.user_timeout is True:
            bound = probing.whole_second_detection_time if probing is not None else None
            user_timeout = max(heartbeat_timeout, bound or 0)
        elif self.user_timeout is False:
            user_timeout = None
        else:
            user_timeout = self.user_timeout
        linear = self.linear_timeouts or (probing is not None and probing.linear_timeouts)
        rto_max = self.rto_max if probing is None or probing.rto_max is None else probing.rto_max
        if probing is None and user_timeout is None and not linear and rto_max is None:
            return None
        return KernelKeepalive(
            idle=None if probing is None else probing.idle,
            interval=None if probing is None else probing.interval,
            count=None if probing is None else probing.count,
            user_timeout=user_timeout,
            linear_timeouts=linear,
            thin_stream_congestion=self.congestion if linear else None,
            rto_max=rto_max,
            strict=self.strict or (probing is not None and probing.strict),
        )
