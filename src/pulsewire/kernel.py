"""Kernel TCP keepalive and ``TCP_USER_TIMEOUT``, per platform, reporting what was applied.

Why kernel keepalive alone is not enough
----------------------------------------
TCP keepalive is a *keepalive* (traffic that keeps middleboxes' state), not a *heartbeat*
(proof that the peer application is alive):

- **The kernel answers the probes, not the process.** A peer process that is frozen
  (SIGSTOP, a debugger, a deadlock, an event loop blocked by a synchronous call or a long GC
  pause) still has a kernel that ACKs every probe, so its connection looks healthy forever.
  Only an application-level PING answered by the peer's own event loop (pulsewire's PONG
  evidence) proves that the peer still runs.
- **Whole seconds.** Linux, macOS and the BSDs take ``TCP_KEEPIDLE``/``TCP_KEEPINTVL`` in
  whole seconds (Linux: 1 to 32767), so sub-second detection is impossible; Windows'
  ``SIO_KEEPALIVE_VALS`` takes milliseconds but fixes the probe count at 10 before
  Windows 10 1703.
- **Different on every platform**, with defaults measured in hours: Linux probes an idle
  connection after 7200 s and gives up after 9 probes 75 s apart, 2 h 11 min 15 s in all,
  and only when the application turned ``SO_KEEPALIVE`` on at all (it is off by default).
- **Idle connections only.** Keepalive probes are sent only while nothing is in flight.
  Once data is unacknowledged the retransmission timer rules instead: about 15 minutes on
  Linux with ``tcp_retries2=15`` (see :func:`linux_retransmission_timeout`).
- **No reason.** The application learns of the death only as ``ETIMEDOUT`` on its next
  read or write, with no RTT, no silence duration, and no distinction from a reset.

When it helps
-------------
- **NAT and firewall idle timers.** A NAT, stateful firewall or load balancer drops a
  mapping that carried no packet for a while (minutes, on many devices). Kernel probes keep
  the mapping alive at no cost to the application, and keep doing so while a process is
  busy or its own pings are spaced out.
- **``TCP_USER_TIMEOUT`` bounds writes to a blackholed peer.** Without it, data written to
  a peer that vanished (cable cut, host powered off, a firewall silently dropping packets)
  is retransmitted for ~15 minutes before the write fails. With it, Linux gives up after
  the given time. On Linux it also replaces ``TCP_KEEPCNT`` while keepalive runs (see
  :meth:`KeepaliveReport.idle_detection_time`).
- **A backstop** for a connection whose application heartbeat is not running.

This module sets these options on a connected TCP socket with :func:`apply_keepalive` and
returns a :class:`KeepaliveReport` of what the kernel accepted (read back with
``getsockopt`` where the platform allows), what the platform lacks, and the resulting
worst-case detection times. An option the platform lacks is never silently ignored: it is
listed in the report and logged as ``kernel.option_unsupported``, or raises
:class:`~pulsewire.errors.PolicyError` in strict mode. :class:`HostTcpFacts` reads the
host's Linux defaults and computes what they mean, for ``pulsewire kernel``.

Rounding rule: every socket-option interface takes whole seconds (``TCP_USER_TIMEOUT``
whole milliseconds). In the default mode a fractional value is **rounded up** (waiting a
little longer is safe, declaring a live peer dead early is not) and the report's ``notes``
say so. With ``strict=True`` a value that the platform cannot take exactly is an error:
fractional ``idle``/``interval`` are rejected when the :class:`KernelKeepalive` is built,
and a platform-specific loss of precision (Windows ``TCP_MAXRT`` takes whole seconds) is
rejected by :func:`apply_keepalive` before any option is set.
"""

from __future__ import annotations

import errno
import math
import os
import socket
import sys
from typing import Any, Final, Protocol

import msgspec
import structlog

from pulsewire import logevents
from pulsewire.errors import PolicyError, UsageError

__all__ = [
    "EVENT_OPTION_UNSUPPORTED",
    "LINUX_MAX_KEEPCNT",
    "LINUX_MAX_KEEPIDLE",
    "MACOS_DEFAULT_KEEPCNT",
    "MACOS_DEFAULT_KEEPINTVL",
    "MACOS_TCP_KEEPALIVE",
    "TCP_RTO_MAX",
    "TCP_RTO_MIN",
    "TCP_TIMEOUT_INIT",
    "WINDOWS_FIXED_KEEPCNT",
    "AppliedOption",
    "HostTcpFacts",
    "KeepaliveReport",
    "KeepaliveSocket",
    "KernelKeepalive",
    "UnsupportedOption",
    "apply_keepalive",
    "linux_retransmission_timeout",
]

_logger = structlog.get_logger("pulsewire.kernel")

#: structlog event logged (level ``warning``) for each option the platform lacks.
EVENT_OPTION_UNSUPPORTED: Final = logevents.KERNEL_OPTION_UNSUPPORTED

#: Linux ``MAX_TCP_KEEPIDLE`` / ``MAX_TCP_KEEPINTVL`` (seconds): the largest value accepted.
LINUX_MAX_KEEPIDLE: Final = 32767
#: Linux ``MAX_TCP_KEEPCNT``: the largest probe count accepted.
LINUX_MAX_KEEPCNT: Final = 127
#: Largest ``TCP_USER_TIMEOUT`` in seconds: Linux takes an ``int`` of milliseconds.
_MAX_USER_TIMEOUT: Final = (2**31 - 1) // 1000

#: Value of ``TCP_KEEPALIVE`` (idle time, seconds) in macOS ``<netinet/tcp.h>``; used when
#: the ``socket`` module does not expose the name (CPython added it in 3.10).
MACOS_TCP_KEEPALIVE: Final = 0x10
#: macOS defaults used to compute detection times when the interval or count cannot be set
#: (sysctl ``net.inet.tcp.keepintvl`` = 75000 ms, ``net.inet.tcp.keepcnt`` = 8).
MACOS_DEFAULT_KEEPINTVL: Final = 75.0
MACOS_DEFAULT_KEEPCNT: Final = 8
#: Windows Vista and later send exactly 10 keepalive probes unless ``TCP_KEEPCNT`` is set
#: (a socket option since Windows 10 1703).
WINDOWS_FIXED_KEEPCNT: Final = 10

#: Linux ``TCP_RTO_MIN`` (seconds): the RTO that ``tcp_model_timeout`` assumes at the start.
TCP_RTO_MIN: Final = 0.2
#: Linux ``TCP_RTO_MAX`` (seconds): the retransmission timeout stops doubling here.
#: Tunable per host since Linux 6.15 (``net.ipv4.tcp_rto_max_ms``).
TCP_RTO_MAX: Final = 120.0
#: Linux ``TCP_TIMEOUT_INIT`` (seconds): the initial RTO of a SYN.
TCP_TIMEOUT_INIT: Final = 1.0

# ENOPROTOOPT as the kernel reports it: the errno module's value (92 on Linux, 42 on macOS)
# and Winsock's WSAENOPROTOOPT.
_NO_SUCH_OPTION_ERRNOS: Final = frozenset({errno.ENOPROTOOPT, 10042})
# A float that is this close to a whole number of units counts as that whole number
# (2.3 s * 1000 is 2299.9999999999995 ms).
_UNIT_TOLERANCE: Final = 1e-6


class KeepaliveSocket(Protocol):
    """What :func:`apply_keepalive` needs from a socket (``socket.socket`` qualifies).

    On Windows the socket's ``ioctl`` method is used too when present.
    """

    def setsockopt(self, level: int, optname: int, value: int, /) -> None: ...

    def getsockopt(self, level: int, optname: int, /) -> int: ...


# --------------------------------------------------------------------------------------
# The requested settings
# --------------------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _whole(value: float, scale: int = 1) -> bool:
    exact = value * scale
    return abs(exact - round(exact)) < _UNIT_TOLERANCE


class KernelKeepalive(msgspec.Struct, frozen=True, kw_only=True):
    """Kernel keepalive settings for one TCP connection: a frozen, validated value.

    - ``idle``: seconds without any received segment before the first probe.
    - ``interval``: seconds between unanswered probes.
    - ``count``: unanswered probes after which the kernel drops the connection.
    - ``user_timeout``: ``TCP_USER_TIMEOUT`` in seconds, the longest that written data may
      stay unacknowledged before the kernel drops the connection; ``None`` leaves the
      option unset (the host's retransmission limit applies). Linux takes milliseconds.
    - ``strict``: every option must be applied exactly, on every platform. Fractional
      ``idle``/``interval`` (the keepalive socket options take whole seconds) or a
      ``user_timeout`` finer than a millisecond are rejected here; an option the platform
      lacks, or one it can only take rounded, makes :func:`apply_keepalive` raise
      :class:`~pulsewire.errors.PolicyError` instead of reporting it.

    In the default mode fractional values are rounded up per platform by
    :func:`apply_keepalive`, and the report says so.

    Bounds: ``idle`` and ``interval`` at most 32767 s and ``count`` 1 to 127 (Linux's
    limits, the tightest of the supported platforms); ``user_timeout`` positive and at most
    2147483 s (an ``int`` of milliseconds).
    """

    idle: float
    interval: float
    count: int
    user_timeout: float | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        for name in ("idle", "interval"):
            value = getattr(self, name)
            if not (_is_number(value) and math.isfinite(value) and value > 0):
                raise PolicyError(f"{name} must be a positive number of seconds, got {value!r}")
            if value > LINUX_MAX_KEEPIDLE:
                raise PolicyError(
                    f"{name} must be at most {LINUX_MAX_KEEPIDLE} s (the largest value Linux "
                    f"accepts for TCP_KEEP{'IDLE' if name == 'idle' else 'INTVL'}), "
                    f"got {value!r}"
                )
            if self.strict and not (_whole(value) and value >= 1):
                raise PolicyError(
                    f"{name} must be a whole number of seconds >= 1 in strict mode "
                    f"(keepalive socket options take whole seconds), got {value!r}; "
                    "without strict it is rounded up and the report says so"
                )
        if not (isinstance(self.count, int) and not isinstance(self.count, bool)):
            raise PolicyError(f"count must be a whole number of probes, got {self.count!r}")
        if not 1 <= self.count <= LINUX_MAX_KEEPCNT:
            raise PolicyError(
                f"count must be between 1 and {LINUX_MAX_KEEPCNT} probes (Linux's limit "
                f"for TCP_KEEPCNT), got {self.count!r}"
            )
        if self.user_timeout is not None:
            value = self.user_timeout
            if not (_is_number(value) and math.isfinite(value)):
                raise PolicyError(
                    f"user_timeout must be a number of seconds or None, got {value!r}"
                )
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
            if self.strict and not _whole(value, 1000):
                raise PolicyError(
                    f"user_timeout must be a whole number of milliseconds in strict mode "
                    f"(TCP_USER_TIMEOUT takes milliseconds), got {value!r} s"
                )
        if not isinstance(self.strict, bool):
            raise PolicyError(f"strict must be True or False, got {self.strict!r}")

    @property
    def nominal_detection_time(self) -> float:
        """``idle + interval * count``: how long an idle dead peer goes unnoticed, as asked.

        The platform may round or replace these values; :class:`KeepaliveReport` gives the
        time that results from what was actually applied.
        """
        return self.idle + self.interval * self.count


# --------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------


class AppliedOption(msgspec.Struct, frozen=True, kw_only=True):
    """One option that was set: in the kernel's own unit, and as read back.

    ``read_back`` is ``None`` when the platform offers no way to read the option back
    (``SIO_KEEPALIVE_VALS``) or ``getsockopt`` failed; ``notes`` of the report say which.
    """

    option: str  #: the kernel's name: ``TCP_KEEPIDLE``, ``SIO_KEEPALIVE_VALS``, ...
    setting: str  #: which ``KernelKeepalive`` field it carries (``keepalive`` for on/off)
    value: int | tuple[int, ...]  #: what was passed to setsockopt/ioctl
    unit: str  #: ``s``, ``ms``, ``probes``, ``on/off`` or the ioctl tuple's layout
    read_back: int | None = None

    @property
    def verified(self) -> bool:
        """True when the value read back equals the value set (on/off compares truth)."""
        if self.read_back is None:
            return False
        if self.unit == "on/off":
            return bool(self.read_back) == bool(self.value)
        return self.read_back == self.value


class UnsupportedOption(msgspec.Struct, frozen=True, kw_only=True):
    """An option the platform lacks, so the setting it carries was not applied."""

    option: str  #: the kernel's name, e.g. ``TCP_USER_TIMEOUT``
    setting: str  #: the ``KernelKeepalive`` field it would carry
    reason: str  #: why, and what happens instead


class KeepaliveReport(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`apply_keepalive` did to one socket: printable, suitable for logging.

    - ``requested``: the settings asked for.
    - ``platform``: the ``sys.platform`` string they were applied for.
    - ``applied``: every option that was set, in order, with its read-back value.
    - ``unsupported``: every option the platform lacks (never silently dropped).
    - ``notes``: roundings, assumed platform defaults, read-back mismatches, semantics.
    - ``idle_detection_time``: worst-case seconds before the kernel drops an idle
      connection to a dead peer: ``idle + interval * count`` from the values in effect
      (Linux with ``TCP_USER_TIMEOUT``: see below). ``None`` when a value in effect is
      unknown (an unsupported option on a platform whose default pulsewire does not know).
    - ``unacked_detection_time``: the bound on a connection with unacknowledged data:
      ``user_timeout`` as applied, or ``None``, meaning "the host's retransmission
      timeout" (on Linux see :meth:`HostTcpFacts.unacked_detection_time`, ~924.6 s).

    On Linux, when ``TCP_USER_TIMEOUT`` is set, the keepalive timer ignores ``TCP_KEEPCNT``:
    it drops the connection at the first probe time (``idle + k * interval``, ``k >= 1``)
    at which the silence has lasted ``user_timeout`` (``tcp_keepalive_timer`` in
    ``net/ipv4/tcp_timer.c``). ``idle_detection_time`` accounts for that, so a
    ``user_timeout`` longer than ``idle + interval * count`` makes keepalive slower.
    """

    requested: KernelKeepalive
    platform: str
    applied: tuple[AppliedOption, ...] = ()
    unsupported: tuple[UnsupportedOption, ...] = ()
    notes: tuple[str, ...] = ()
    idle_detection_time: float | None = None
    unacked_detection_time: float | None = None

    @property
    def complete(self) -> bool:
        """True when every requested setting was applied (nothing unsupported)."""
        return not self.unsupported

    def describe(self) -> str:
        """A few human-readable lines: what was applied, what is missing, what it means."""
        lines = [f"kernel keepalive on {self.platform}:"]
        for opt in self.applied:
            if isinstance(opt.value, tuple):
                shown = f"{opt.option}{opt.value} ({opt.unit})"
            elif opt.unit == "on/off":
                shown = f"{opt.option}={'on' if opt.value else 'off'}"
            else:
                shown = f"{opt.option}={opt.value} {opt.unit}"
            if opt.read_back is not None and not opt.verified:
                shown += f" (reads back {opt.read_back})"
            lines.append(f"  applied      {shown}")
        for missing in self.unsupported:
            lines.append(f"  unsupported  {missing.option} ({missing.setting}): {missing.reason}")
        for note in self.notes:
            lines.append(f"  note         {note}")
        if self.idle_detection_time is None:
            lines.append("  idle dead peer: detection time unknown (a value in effect is unknown)")
        else:
            lines.append(
                "  idle dead peer: dropped after at most "
                f"{_human_duration(self.idle_detection_time)}"
            )
        if self.unacked_detection_time is None:
            lines.append("  unacknowledged data: the host's retransmission timeout applies")
        else:
            lines.append(
                "  unacknowledged data: dropped after "
                f"{_human_duration(self.unacked_detection_time)} (TCP_USER_TIMEOUT)"
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Applying
# --------------------------------------------------------------------------------------


class _Step(msgspec.Struct, frozen=True):
    option: str
    setting: str
    level: int
    optname: int
    value: int
    unit: str
    scale: float  # seconds per unit, to turn the read-back value into seconds (0: not time)


class _Plan:
    """Collects the steps for one platform before the socket is touched.

    Strict mode fails here, before any option is set, whenever the platform's lack of an
    option or its units are known in advance.
    """

    def __init__(self, keepalive: KernelKeepalive, platform: str, socket_module: object) -> None:
        self.keepalive = keepalive
        self.platform = platform
        self.sm = socket_module
        self.steps: list[_Step] = []
        self.ioctl: tuple[int, int, int] | None = None
        self.unsupported: list[UnsupportedOption] = []
        self.notes: list[str] = []
        # Values in effect, in seconds / probes, when they are not read back from a step.
        self.defaults: dict[str, float] = {}

    def const(self, name: str, fallback: int | None = None) -> int | None:
        value = getattr(self.sm, name, fallback)
        return value if isinstance(value, int) else fallback

    def units(self, setting: str, seconds: float, option: str, per_second: int) -> int:
        """``seconds`` in whole kernel units (seconds or ms), rounded up, at least 1."""
        exact = seconds * per_second
        nearest = round(exact)
        units = nearest if abs(exact - nearest) < _UNIT_TOLERANCE else math.ceil(exact)
        units = max(units, 1)
        if abs(exact - units) >= _UNIT_TOLERANCE:
            unit_name = "seconds" if per_second == 1 else "milliseconds"
            unit = "s" if per_second == 1 else "ms"
            if self.keepalive.strict:
                raise PolicyError(
                    f"{setting}={seconds!r} s cannot be applied exactly on {self.platform}: "
                    f"{option} takes whole {unit_name} (at least 1), and strict mode forbids "
                    f"rounding it up to {units} {unit}"
                )
            self.notes.append(
                f"{setting} {seconds:.9g} s rounded up to {units} {unit}: "
                f"{option} takes whole {unit_name} (at least 1)"
            )
        return units

    def add(
        self, option: str, setting: str, level: int, optname: int, value: int, unit: str
    ) -> None:
        scale = {"s": 1.0, "ms": 0.001}.get(unit, 0.0)
        self.steps.append(_Step(option, setting, level, optname, value, unit, scale))

    def lacks(self, option: str, setting: str, reason: str) -> None:
        if self.keepalive.strict:
            raise PolicyError(
                f"{option} ({setting}) is not supported on {self.platform}: {reason}; "
                "strict mode requires every option to be applied"
            )
        self.unsupported.append(UnsupportedOption(option=option, setting=setting, reason=reason))

    def tcp_level(self) -> int:
        level = self.const("IPPROTO_TCP", 6)
        assert level is not None
        return level

    def keepalive_on(self) -> None:
        sol = self.const("SOL_SOCKET")
        opt = self.const("SO_KEEPALIVE")
        if sol is None or opt is None:
            self.lacks("SO_KEEPALIVE", "keepalive", "the socket module has no SO_KEEPALIVE")
            return
        self.add("SO_KEEPALIVE", "keepalive", sol, opt, 1, "on/off")

    def seconds_option(
        self, option: str, setting: str, seconds: float, optname: int | None, reason: str
    ) -> bool:
        if optname is None:
            self.lacks(option, setting, reason)
            return False
        value = self.units(setting, seconds, option, 1)
        self.add(option, setting, self.tcp_level(), optname, value, "s")
        return True

    def count_option(self, optname: int | None, reason: str) -> bool:
        if optname is None:
            self.lacks("TCP_KEEPCNT", "count", reason)
            return False
        self.add("TCP_KEEPCNT", "count", self.tcp_level(), optname, self.keepalive.count, "probes")
        return True


def _plan_posix(plan: _Plan, *, linux: bool) -> None:
    """Linux, and other Unix systems that use the Linux option names (FreeBSD, ...)."""
    k = plan.keepalive
    missing = "the socket module does not expose it on this platform"
    plan.keepalive_on()
    plan.seconds_option("TCP_KEEPIDLE", "idle", k.idle, plan.const("TCP_KEEPIDLE"), missing)
    plan.seconds_option(
        "TCP_KEEPINTVL", "interval", k.interval, plan.const("TCP_KEEPINTVL"), missing
    )
    plan.count_option(plan.const("TCP_KEEPCNT"), missing)
    if k.user_timeout is not None:
        optname = plan.const("TCP_USER_TIMEOUT")
        if optname is None:
            plan.lacks("TCP_USER_TIMEOUT", "user_timeout", missing)
        else:
            value = plan.units("user_timeout", k.user_timeout, "TCP_USER_TIMEOUT", 1000)
            plan.add("TCP_USER_TIMEOUT", "user_timeout", plan.tcp_level(), optname, value, "ms")
            if linux:
                plan.notes.append(
                    "TCP_USER_TIMEOUT also replaces TCP_KEEPCNT on Linux: an idle connection "
                    "is dropped at the first probe once the silence reaches user_timeout"
                )


def _plan_darwin(plan: _Plan) -> None:
    k = plan.keepalive
    plan.keepalive_on()
    plan.seconds_option(
        "TCP_KEEPALIVE",
        "idle",
        k.idle,
        plan.const("TCP_KEEPALIVE", MACOS_TCP_KEEPALIVE),
        "",  # never lacking: the constant 0x10 stands in for a missing name
    )
    if not plan.seconds_option(
        "TCP_KEEPINTVL",
        "interval",
        k.interval,
        plan.const("TCP_KEEPINTVL"),
        "the socket module does not expose it; the system's net.inet.tcp.keepintvl applies "
        f"(default {_fmt(MACOS_DEFAULT_KEEPINTVL)} s)",
    ):
        plan.defaults["interval"] = MACOS_DEFAULT_KEEPINTVL
        plan.notes.append(
            "detection time assumes the macOS default interval of "
            f"{_fmt(MACOS_DEFAULT_KEEPINTVL)} s"
        )
    if not plan.count_option(
        plan.const("TCP_KEEPCNT"),
        "the socket module does not expose it; the system's net.inet.tcp.keepcnt applies "
        f"(default {MACOS_DEFAULT_KEEPCNT})",
    ):
        plan.defaults["count"] = MACOS_DEFAULT_KEEPCNT
        plan.notes.append(
            f"detection time assumes the macOS default count of {MACOS_DEFAULT_KEEPCNT} probes"
        )
    if k.user_timeout is not None:
        plan.lacks(
            "TCP_USER_TIMEOUT",
            "user_timeout",
            "macOS has no TCP_USER_TIMEOUT; TCP_RXT_CONNDROPTIME is not equivalent (a private "
            "option counted from the first retransmission, with no effect on keepalive), so "
            "it is not substituted; the host's retransmission timeout applies",
        )


def _plan_windows(plan: _Plan, sock: object) -> None:
    k = plan.keepalive
    idle_opt = plan.const("TCP_KEEPIDLE")
    intvl_opt = plan.const("TCP_KEEPINTVL")
    if idle_opt is not None and intvl_opt is not None:
        # Windows 10 1709+: plain socket options, in whole seconds, readable back.
        plan.keepalive_on()
        plan.seconds_option("TCP_KEEPIDLE", "idle", k.idle, idle_opt, "")
        plan.seconds_option("TCP_KEEPINTVL", "interval", k.interval, intvl_opt, "")
    else:
        # Vista+: one ioctl turns keepalive on and sets idle and interval in milliseconds.
        code = plan.const("SIO_KEEPALIVE_VALS")
        if code is None or not callable(getattr(sock, "ioctl", None)):
            for setting in ("idle", "interval"):
                plan.lacks(
                    "SIO_KEEPALIVE_VALS",
                    setting,
                    "neither TCP_KEEPIDLE/TCP_KEEPINTVL nor the SIO_KEEPALIVE_VALS ioctl is "
                    "available",
                )
        else:
            idle_ms = plan.units("idle", k.idle, "SIO_KEEPALIVE_VALS", 1000)
            interval_ms = plan.units("interval", k.interval, "SIO_KEEPALIVE_VALS", 1000)
            plan.ioctl = (1, idle_ms, interval_ms)
    if plan.const("TCP_KEEPCNT") is not None:
        plan.count_option(plan.const("TCP_KEEPCNT"), "")
    elif k.count == WINDOWS_FIXED_KEEPCNT:
        plan.notes.append(
            f"count {k.count} is Windows' fixed probe count: nothing to set (TCP_KEEPCNT "
            "needs Windows 10 1703+)"
        )
        plan.defaults["count"] = WINDOWS_FIXED_KEEPCNT
    else:
        plan.lacks(
            "TCP_KEEPCNT",
            "count",
            f"this Windows sends exactly {WINDOWS_FIXED_KEEPCNT} probes; TCP_KEEPCNT needs "
            "Windows 10 1703+",
        )
        plan.defaults["count"] = WINDOWS_FIXED_KEEPCNT
    if k.user_timeout is not None:
        maxrt = plan.const("TCP_MAXRT")
        if maxrt is None:
            plan.lacks(
                "TCP_USER_TIMEOUT",
                "user_timeout",
                "Windows has no TCP_USER_TIMEOUT, and the socket module does not expose its "
                "closest equivalent TCP_MAXRT (seconds); the host's retransmission limit "
                "applies",
            )
        else:
            value = plan.units("user_timeout", k.user_timeout, "TCP_MAXRT", 1)
            plan.add("TCP_MAXRT", "user_timeout", plan.tcp_level(), maxrt, value, "s")


def _check_socket(sock: object, socket_module: object) -> None:
    """Refuse sockets that are known not to be TCP (fake sockets without attributes pass)."""
    stream = getattr(socket_module, "SOCK_STREAM", None)
    kind = getattr(sock, "type", None)
    if stream is not None and isinstance(kind, int) and kind != stream:
        raise UsageError(f"apply_keepalive needs a TCP (SOCK_STREAM) socket, got type {kind!r}")
    families = {
        getattr(socket_module, name)
        for name in ("AF_INET", "AF_INET6")
        if isinstance(getattr(socket_module, name, None), int)
    }
    family = getattr(sock, "family", None)
    if families and isinstance(family, int) and family not in families:
        raise UsageError(f"apply_keepalive needs an IPv4 or IPv6 TCP socket, got family {family!r}")


def apply_keepalive(
    sock: KeepaliveSocket,
    keepalive: KernelKeepalive,
    *,
    platform: str = sys.platform,
    socket_module: object = socket,
) -> KeepaliveReport:
    """Apply ``keepalive`` to a connected TCP socket and report what the kernel took.

    Per platform (``platform`` is a ``sys.platform`` string):

    - **Linux** (and other Unix systems using the same names, such as FreeBSD):
      ``SO_KEEPALIVE``, ``TCP_KEEPIDLE``, ``TCP_KEEPINTVL`` (whole seconds),
      ``TCP_KEEPCNT``, and ``TCP_USER_TIMEOUT`` in milliseconds when ``user_timeout`` is
      set. Every option is read back with ``getsockopt``.
    - **macOS** (``darwin``): ``SO_KEEPALIVE``, ``TCP_KEEPALIVE`` for the idle time (the
      constant ``0x10`` when the socket module lacks the name), ``TCP_KEEPINTVL`` and
      ``TCP_KEEPCNT`` where the module has them. There is no ``TCP_USER_TIMEOUT``: it is
      reported unsupported (``TCP_RXT_CONNDROPTIME`` is not an equivalent and is not used).
    - **Windows** (``win32``): ``SO_KEEPALIVE`` + ``TCP_KEEPIDLE``/``TCP_KEEPINTVL`` when
      the module exposes them (Windows 10 1709+), else
      ``sock.ioctl(SIO_KEEPALIVE_VALS, (1, idle_ms, interval_ms))``, which cannot be read
      back; ``TCP_KEEPCNT`` when exposed (1703+), else the count is fixed at 10 (asking
      for 10 is then satisfied, anything else is unsupported); ``user_timeout`` through
      ``TCP_MAXRT`` (whole seconds) when the module exposes it, else unsupported.

    An option the platform lacks (absent from ``socket_module``, or refused by the kernel
    with ``ENOPROTOOPT``) is listed in ``report.unsupported`` and logged as a
    ``kernel.option_unsupported`` warning; with ``keepalive.strict`` it raises
    :class:`~pulsewire.errors.PolicyError` naming the option and the platform instead
    (before touching the socket, except for a kernel refusal found while applying).
    A read-back value that differs from the one set is recorded in ``report.notes``.

    Raises :class:`~pulsewire.errors.UsageError` for a socket that is not IPv4/IPv6
    ``SOCK_STREAM``, and lets any other ``OSError`` from the socket propagate (a closed
    socket, for example).
    """
    _check_socket(sock, socket_module)
    plan = _Plan(keepalive, platform, socket_module)
    is_linux = platform.startswith("linux")
    if platform == "darwin":
        _plan_darwin(plan)
    elif platform == "win32":
        _plan_windows(plan, sock)
    else:
        _plan_posix(plan, linux=is_linux)

    applied: list[AppliedOption] = []
    effective: dict[str, float] = dict(plan.defaults)
    if plan.ioctl is not None:
        ioctl = getattr(sock, "ioctl", None)
        assert callable(ioctl)  # checked by _plan_windows
        ioctl(plan.const("SIO_KEEPALIVE_VALS"), plan.ioctl)
        applied.append(
            AppliedOption(
                option="SIO_KEEPALIVE_VALS",
                setting="idle,interval",
                value=plan.ioctl,
                unit="on/off, idle ms, interval ms",
            )
        )
        effective["idle"] = plan.ioctl[1] / 1000
        effective["interval"] = plan.ioctl[2] / 1000
        plan.notes.append("SIO_KEEPALIVE_VALS cannot be read back: values are as set")

    for step in plan.steps:
        try:
            sock.setsockopt(step.level, step.optname, step.value)
        except OSError as exc:
            if exc.errno not in _NO_SUCH_OPTION_ERRNOS:
                raise
            reason = f"the kernel refused it ({os.strerror(exc.errno)})"
            if keepalive.strict:
                raise PolicyError(
                    f"{step.option} ({step.setting}) is not supported on {platform}: {reason}; "
                    "strict mode requires every option to be applied (options before it were "
                    "already set)"
                ) from exc
            plan.unsupported.append(
                UnsupportedOption(option=step.option, setting=step.setting, reason=reason)
            )
            continue
        read_back = _read_back(sock, step, plan.notes)
        option = AppliedOption(
            option=step.option,
            setting=step.setting,
            value=step.value,
            unit=step.unit,
            read_back=read_back,
        )
        if read_back is not None and not option.verified:
            plan.notes.append(f"{step.option} was set to {step.value} but reads back {read_back}")
        applied.append(option)
        in_effect = step.value if read_back is None else read_back
        if step.scale:
            effective[step.setting] = in_effect * step.scale
        elif step.setting == "count":
            effective["count"] = in_effect

    for missing in plan.unsupported:
        _logger.warning(
            EVENT_OPTION_UNSUPPORTED,
            option=missing.option,
            setting=missing.setting,
            platform=platform,
            reason=missing.reason,
        )

    return KeepaliveReport(
        requested=keepalive,
        platform=platform,
        applied=tuple(applied),
        unsupported=tuple(plan.unsupported),
        notes=tuple(plan.notes),
        idle_detection_time=_idle_detection(effective, linux=is_linux),
        unacked_detection_time=effective.get("user_timeout"),
    )


def _read_back(sock: KeepaliveSocket, step: _Step, notes: list[str]) -> int | None:
    try:
        value = sock.getsockopt(step.level, step.optname)
    except OSError as exc:
        notes.append(f"{step.option} could not be read back: {exc}")
        return None
    return value if isinstance(value, int) else None


def _idle_detection(effective: dict[str, float], *, linux: bool) -> float | None:
    try:
        idle, interval, count = effective["idle"], effective["interval"], effective["count"]
    except KeyError:
        return None
    user_timeout = effective.get("user_timeout")
    if linux and user_timeout is not None:
        # tcp_keepalive_timer: with TCP_USER_TIMEOUT set, drop at the first timer expiry
        # (idle, idle + interval, ...) after at least one probe when the silence has
        # reached user_timeout; TCP_KEEPCNT is not consulted.
        probes = max(1, math.ceil((user_timeout - idle) / interval - _UNIT_TOLERANCE))
        return idle + interval * probes
    return idle + interval * count


# --------------------------------------------------------------------------------------
# Host facts (Linux sysctls)
# --------------------------------------------------------------------------------------


def linux_retransmission_timeout(
    retries: int, *, rto_base: float = TCP_RTO_MIN, rto_max: float = TCP_RTO_MAX
) -> float:
    """Seconds after which Linux abandons unacknowledged data, for ``retries`` (tcp_retries2).

    Linux does not count retransmissions: ``retransmits_timed_out()`` in
    ``net/ipv4/tcp_timer.c`` converts the retry limit to a time with
    ``tcp_model_timeout()``, assuming the RTO starts at ``rto_base`` (``TCP_RTO_MIN`` =
    0.2 s for data, ``TCP_TIMEOUT_INIT`` = 1 s for a SYN) and doubles per retransmission
    (RFC 6298 section 5.5 exponential backoff) up to ``rto_max`` (``TCP_RTO_MAX`` = 120 s)::

        T = sum(min(rto_base * 2**i, rto_max) for i in 0..retries)

    which the kernel writes in closed form with ``n = ilog2(rto_max / rto_base)`` (9 for
    data, 6 for a SYN)::

        T = (2**(retries + 1) - 1) * rto_base                             if retries <= n
        T = (2**(n + 1) - 1) * rto_base + (retries - n) * rto_max          otherwise

    With the default ``tcp_retries2 = 15``: 1023 * 0.2 + 6 * 120 = 924.6 s (15.4 min), the
    number in the kernel's ip-sysctl documentation. With ``tcp_syn_retries = 6`` and
    ``rto_base=1``: 127 s. The kernel checks this bound when a retransmission timer fires,
    so it gives up at the first RTO expiry at or after ``T`` (later by up to one RTO when
    the real RTO, driven by the measured RTT, is larger than the model's).
    """
    if not (isinstance(retries, int) and not isinstance(retries, bool) and retries >= 0):
        raise PolicyError(f"retries must be a whole number >= 0, got {retries!r}")
    if not (_is_number(rto_base) and math.isfinite(rto_base) and rto_base > 0):
        raise PolicyError(f"rto_base must be a positive number of seconds, got {rto_base!r}")
    if not (_is_number(rto_max) and math.isfinite(rto_max) and rto_max >= rto_base):
        raise PolicyError(
            f"rto_max must be a number of seconds >= rto_base ({rto_base!r}), got {rto_max!r}"
        )
    base_ms = round(rto_base * 1000)
    max_ms = round(rto_max * 1000)
    linear_from = (max_ms // base_ms).bit_length() - 1  # ilog2
    if retries <= linear_from:
        total_ms = ((2 << retries) - 1) * base_ms
    else:
        total_ms = ((2 << linear_from) - 1) * base_ms + (retries - linear_from) * max_ms
    return total_ms / 1000


_SYSCTL_DIR: Final = ("sys", "net", "ipv4")
_SYSCTLS: Final = (
    ("keepalive_time", "tcp_keepalive_time"),
    ("keepalive_intvl", "tcp_keepalive_intvl"),
    ("keepalive_probes", "tcp_keepalive_probes"),
    ("retries2", "tcp_retries2"),
    ("syn_retries", "tcp_syn_retries"),
)


class HostTcpFacts(msgspec.Struct, frozen=True, kw_only=True):
    """This host's Linux TCP defaults (``/proc/sys/net/ipv4``) and what they imply.

    These apply to every socket that does not override them; note that a socket has no
    keepalive at all unless ``SO_KEEPALIVE`` is turned on. Each value is ``None`` when its
    file is missing or unreadable (``missing`` names them): always so off Linux, where
    ``platform`` tells which system was read. The sysctls are per network namespace: a
    container reads its own.
    """

    platform: str
    proc_root: str
    keepalive_time: int | None = None  #: seconds idle before the first probe (7200)
    keepalive_intvl: int | None = None  #: seconds between probes (75)
    keepalive_probes: int | None = None  #: unanswered probes before the drop (9)
    retries2: int | None = None  #: retransmission limit for established connections (15)
    syn_retries: int | None = None  #: SYN retransmissions for connect() (6)
    rto_max: float | None = None  #: tcp_rto_max_ms / 1000 (Linux 6.15+); None: 120 s
    missing: tuple[str, ...] = ()  #: files that could not be read or parsed

    @classmethod
    def read(cls, proc_root: str = "/proc", *, platform: str = sys.platform) -> HostTcpFacts:
        """Read the sysctls under ``{proc_root}/sys/net/ipv4``; never raises for a missing file."""
        directory = os.path.join(proc_root, *_SYSCTL_DIR)
        values: dict[str, Any] = {}
        missing: list[str] = []
        for field, filename in _SYSCTLS:
            value = _read_int(os.path.join(directory, filename))
            if value is None:
                missing.append(filename)
            values[field] = value
        rto_max_ms = _read_int(os.path.join(directory, "tcp_rto_max_ms"))
        return cls(
            platform=platform,
            proc_root=proc_root,
            rto_max=None if rto_max_ms is None or rto_max_ms <= 0 else rto_max_ms / 1000,
            missing=tuple(missing),
            **values,
        )

    def idle_detection_time(self) -> int | None:
        """``tcp_keepalive_time + tcp_keepalive_intvl * tcp_keepalive_probes`` in seconds.

        The worst case for an idle connection with ``SO_KEEPALIVE`` on and no per-socket
        override: 7200 + 75 * 9 = 7875 s (2 h 11 min 15 s) with the defaults. ``None`` when
        a value is missing.
        """
        if None in (self.keepalive_time, self.keepalive_intvl, self.keepalive_probes):
            return None
        assert self.keepalive_time is not None
        assert self.keepalive_intvl is not None
        assert self.keepalive_probes is not None
        return self.keepalive_time + self.keepalive_intvl * self.keepalive_probes

    def unacked_detection_time(self) -> float | None:
        """Seconds before unacknowledged data is abandoned: ``tcp_retries2`` as a time.

        See :func:`linux_retransmission_timeout` for the formula (``tcp_model_timeout`` in
        ``net/ipv4/tcp_timer.c``): about 924.6 s (15.4 min) with ``tcp_retries2 = 15``.
        ``None`` when ``tcp_retries2`` is missing.
        """
        if self.retries2 is None:
            return None
        return linux_retransmission_timeout(self.retries2, rto_max=self._rto_max)

    def connect_timeout(self) -> float | None:
        """Seconds before ``connect()`` to a silent host fails: ``tcp_syn_retries`` as a time.

        The same model with the SYN's initial RTO of 1 s (``TCP_TIMEOUT_INIT``): 127 s with
        the default ``tcp_syn_retries = 6``. ``None`` when the value is missing.
        """
        if self.syn_retries is None:
            return None
        return linux_retransmission_timeout(
            self.syn_retries, rto_base=TCP_TIMEOUT_INIT, rto_max=self._rto_max
        )

    @property
    def _rto_max(self) -> float:
        return TCP_RTO_MAX if self.rto_max is None else self.rto_max

    def describe(self) -> str:
        """A human-readable summary of these facts and their worst-case detection times."""
        where = os.path.join(self.proc_root, *_SYSCTL_DIR)
        if len(self.missing) == len(_SYSCTLS):
            return (
                f"TCP facts for {self.platform}: none could be read from {where} "
                "(Linux sysctls; not available on this system)"
            )
        lines = [f"TCP facts for {self.platform} (from {where}):"]
        idle = self.idle_detection_time()
        if idle is None:
            lines.append("  keepalive: unknown (missing values)")
        else:
            lines.append(
                f"  keepalive: first probe after {self.keepalive_time} s idle, then "
                f"{self.keepalive_probes} probes every {self.keepalive_intvl} s"
            )
            lines.append(
                "    an idle connection with SO_KEEPALIVE on notices a dead peer after at "
                f"most {_human_duration(idle)}"
            )
            lines.append(
                "    without SO_KEEPALIVE (off by default) an idle connection never notices"
            )
        unacked = self.unacked_detection_time()
        if unacked is None:
            lines.append("  retransmissions: unknown (tcp_retries2 missing)")
        else:
            lines.append(
                f"  retransmissions: tcp_retries2 = {self.retries2} (RTO from "
                f"{_fmt(TCP_RTO_MIN)} s doubling up to {_fmt(self._rto_max)} s)"
            )
            lines.append(
                "    unacknowledged data to a dead peer is abandoned after about "
                f"{_human_duration(unacked)} (unless TCP_USER_TIMEOUT is set)"
            )
        connect = self.connect_timeout()
        if connect is None:
            lines.append("  connect: unknown (tcp_syn_retries missing)")
        else:
            lines.append(
                f"  connect: tcp_syn_retries = {self.syn_retries}: a connection attempt to a "
                f"silent host fails after {_human_duration(connect)}"
            )
        if self.missing:
            lines.append(f"  missing: {', '.join(self.missing)}")
        return "\n".join(lines)


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        value = int(text.split()[0])
    except (ValueError, IndexError):
        return None
    return value if value >= 0 else None


def _fmt(seconds: float) -> str:
    """Seconds without float noise: ``7875``, ``924.6``, ``0.25``."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def _human_duration(seconds: float) -> str:
    """``7875`` -> ``"7875 s (2 h 11 min 15 s)"``; under a minute just ``"25 s"``."""
    plain = f"{_fmt(seconds)} s"
    if seconds < 60:
        return plain
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{int(hours)} h")
    if minutes:
        parts.append(f"{int(minutes)} min")
    secs = round(secs, 3)
    if secs:
        parts.append(f"{_fmt(secs)} s")
    return f"{plain} ({' '.join(parts)})"
