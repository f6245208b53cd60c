"""Apply a :class:`~pulsewire.core.keepalive.KernelKeepalive` to one TCP socket, per platform.

:func:`apply_keepalive` sets the options on a connected TCP socket and returns a
:class:`KeepaliveReport` of what the kernel accepted (read back with ``getsockopt`` where
the platform allows), what the platform lacks, and the resulting worst-case detection
times. An option the platform lacks is never silently ignored: it is listed in every
report, and logged as a ``kernel.option_unsupported`` warning the first time it is met
in the process for that platform, or raises :class:`~pulsewire.errors.PolicyError` in
strict mode.

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
from typing import Final, Protocol

import msgspec

from pulsewire import logevents
from pulsewire._log import get_logger
from pulsewire.core.keepalive import NEVER_THIN_CONGESTION, UNIT_TOLERANCE, KernelKeepalive
from pulsewire.errors import PolicyError, UsageError
from pulsewire.kernel.congestion import (
    REFUSED_ERRNOS,
    read_congestion,
    refusal_reason,
    write_congestion,
)
from pulsewire.kernel.host import format_seconds, human_duration, linux_retransmission_timeout

__all__ = [
    "EVENT_OPTION_UNSUPPORTED",
    "LINUX_TCP_RTO_MAX_MS",
    "LINUX_TCP_THIN_LINEAR_TIMEOUTS",
    "MACOS_DEFAULT_KEEPCNT",
    "MACOS_DEFAULT_KEEPINTVL",
    "MACOS_TCP_KEEPALIVE",
    "WINDOWS_FIXED_KEEPCNT",
    "WINDOWS_TCP_MAXRT",
    "AppliedOption",
    "KeepaliveReport",
    "KeepaliveSocket",
    "UnsupportedOption",
    "apply_keepalive",
]

_logger = get_logger("pulsewire.kernel")

#: structlog event logged (level ``warning``) for an option the platform lacks, once per
#: process for each (platform, option): the report lists it on every call.
EVENT_OPTION_UNSUPPORTED: Final = logevents.KERNEL_OPTION_UNSUPPORTED

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
#: Value of ``TCP_MAXRT`` (seconds before unacknowledged data is abandoned) in Windows
#: ``<ws2ipdef.h>`` (``#define TCP_MAXRT 5``); used when the ``socket`` module does not
#: expose the name, which CPython does not.
WINDOWS_TCP_MAXRT: Final = 5

#: Value of ``TCP_THIN_LINEAR_TIMEOUTS`` in Linux ``<linux/tcp.h>`` (``#define
#: TCP_THIN_LINEAR_TIMEOUTS 16``); used when the ``socket`` module does not expose the name,
#: which CPython does not.
LINUX_TCP_THIN_LINEAR_TIMEOUTS: Final = 16
#: Value of ``TCP_RTO_MAX_MS`` in Linux ``<linux/tcp.h>`` (Linux 6.15 and later).
LINUX_TCP_RTO_MAX_MS: Final = 44
#: ``tcp_retries2``'s default: retransmissions of one segment before the kernel gives up.
_DEFAULT_RETRIES2: Final = 15

# ENOPROTOOPT as the kernel reports it: the errno module's value (92 on Linux, 42 on macOS)
# and Winsock's WSAENOPROTOOPT.
_NO_SUCH_OPTION_ERRNOS: Final = frozenset({errno.ENOPROTOOPT, 10042})

# (platform, option) pairs already logged as unsupported by this process. At 10,000
# connections a warning per socket is noise: the first one says it all. Two threads racing
# on the same pair may both log it once, which is harmless.
_warned: set[tuple[str, str]] = set()


def _forget_warnings() -> None:
    """Forget which options were logged as unsupported, so the next ones are logged again.

    For tests, which must see the first warning whatever ran before them.
    """
    _warned.clear()


class KeepaliveSocket(Protocol):
    """What :func:`apply_keepalive` needs from a socket (``socket.socket`` qualifies).

    On Windows the socket's ``ioctl`` method is used too when present. On Linux, with
    linear timeouts, ``getsockopt(level, TCP_CONGESTION, 16)`` is called too (it returns
    bytes), and ``thin_stream_congestion`` may call ``setsockopt`` with a bytes value.
    """

    def setsockopt(self, level: int, optname: int, value: int, /) -> None: ...

    def getsockopt(self, level: int, optname: int, /) -> int: ...


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
    #: what was passed to setsockopt/ioctl (a name for ``TCP_CONGESTION``)
    value: int | tuple[int, ...] | str
    unit: str  #: ``s``, ``ms``, ``probes``, ``on/off``, ``name`` or the ioctl tuple's layout
    read_back: int | str | None = None

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
      (Linux with ``TCP_USER_TIMEOUT``: see below). ``None`` when probing was not
      requested, or when a value in effect is unknown (an unsupported option on a platform
      whose default pulsewire does not know).
    - ``unacked_detection_time``: the bound on a connection with unacknowledged data:
      ``user_timeout`` as applied, or ``None``, meaning "the host's retransmission
      timeout" (on Linux see :meth:`~pulsewire.kernel.HostTcpFacts.unacked_detection_time`,
      ~924.6 s). Linux counts ``TCP_USER_TIMEOUT`` from the first retransmission, not from
      the write, so the connection is dropped about one RTO later than this (at least
      0.2 s; measured: 2.29-2.44 s for a 2 s user timeout on a sub-millisecond link).

    On Linux, when ``TCP_USER_TIMEOUT`` is set, the keepalive timer ignores ``TCP_KEEPCNT``:
    it drops the connection at the first probe time (``idle + k * interval``, ``k >= 1``)
    at which the silence has lasted ``user_timeout`` (``tcp_keepalive_timer`` in
    ``net/ipv4/tcp_timer.c``). ``idle_detection_time`` accounts for that: a
    ``user_timeout`` longer than ``idle + interval * count`` makes keepalive slower, and a
    shorter one makes it drop after fewer unanswered probes than ``count``, which on a
    lossy link convicts live peers; ``notes`` then says so.
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
            elif isinstance(opt.value, str):
                shown = f"{opt.option}={opt.value}"
            else:
                shown = f"{opt.option}={opt.value} {opt.unit}"
            if opt.read_back is not None and not opt.verified:
                shown += f" (reads back {opt.read_back})"
            lines.append(f"  applied      {shown}")
        for missing in self.unsupported:
            lines.append(f"  unsupported  {missing.option} ({missing.setting}): {missing.reason}")
        for note in self.notes:
            lines.append(f"  note         {note}")
        if not self.requested.probing:
            lines.append(
                "  idle dead peer: no keepalive probing requested (SO_KEEPALIVE left as it was)"
            )
        elif self.idle_detection_time is None:
            lines.append("  idle dead peer: detection time unknown (a value in effect is unknown)")
        else:
            lines.append(
                "  idle dead peer: dropped after at most "
                f"{human_duration(self.idle_detection_time)}"
            )
        if self.unacked_detection_time is None:
            lines.append("  unacknowledged data: the host's retransmission timeout applies")
        else:
            lines.append(
                "  unacknowledged data: dropped after "
                f"{human_duration(self.unacked_detection_time)} (TCP_USER_TIMEOUT)"
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
        units = nearest if abs(exact - nearest) < UNIT_TOLERANCE else math.ceil(exact)
        units = max(units, 1)
        if abs(exact - units) >= UNIT_TOLERANCE:
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

    def count_option(self, count: int, optname: int | None, reason: str) -> bool:
        if optname is None:
            self.lacks("TCP_KEEPCNT", "count", reason)
            return False
        self.add("TCP_KEEPCNT", "count", self.tcp_level(), optname, count, "probes")
        return True


class _Probes(msgspec.Struct, frozen=True):
    """The probing settings of a :class:`KernelKeepalive` that has them, typed as set."""

    idle: float
    interval: float
    count: int


def _probes(keepalive: KernelKeepalive) -> _Probes | None:
    """The probing settings, or ``None`` when probing is off (all three unset)."""
    idle, interval, count = keepalive.idle, keepalive.interval, keepalive.count
    if idle is None or interval is None or count is None:
        return None  # all None: KernelKeepalive allows nothing in between
    return _Probes(idle, interval, count)


def _plan_posix(plan: _Plan, *, linux: bool) -> None:
    """Linux, and other Unix systems that use the Linux option names (FreeBSD, ...)."""
    k = plan.keepalive
    missing = "the socket module does not expose it on this platform"
    probes = _probes(k)
    if probes is not None:
        plan.keepalive_on()
        plan.seconds_option(
            "TCP_KEEPIDLE", "idle", probes.idle, plan.const("TCP_KEEPIDLE"), missing
        )
        plan.seconds_option(
            "TCP_KEEPINTVL", "interval", probes.interval, plan.const("TCP_KEEPINTVL"), missing
        )
        plan.count_option(probes.count, plan.const("TCP_KEEPCNT"), missing)
    if k.user_timeout is not None:
        optname = plan.const("TCP_USER_TIMEOUT")
        if optname is None:
            plan.lacks("TCP_USER_TIMEOUT", "user_timeout", missing)
        else:
            value = plan.units("user_timeout", k.user_timeout, "TCP_USER_TIMEOUT", 1000)
            plan.add("TCP_USER_TIMEOUT", "user_timeout", plan.tcp_level(), optname, value, "ms")
            if linux and probes is not None:
                plan.notes.append(
                    "TCP_USER_TIMEOUT also replaces TCP_KEEPCNT on Linux: an idle connection "
                    "is dropped at the first probe once the silence reaches user_timeout"
                )
    if k.linear_timeouts:
        if linux:
            optname = plan.const("TCP_THIN_LINEAR_TIMEOUTS", LINUX_TCP_THIN_LINEAR_TIMEOUTS)
            assert optname is not None
            plan.add(
                "TCP_THIN_LINEAR_TIMEOUTS",
                "linear_timeouts",
                plan.tcp_level(),
                optname,
                1,
                "on/off",
            )
        else:
            _lacks_linear_timeouts(plan)
    if k.rto_max is not None:
        if linux:
            optname = plan.const("TCP_RTO_MAX_MS", LINUX_TCP_RTO_MAX_MS)
            assert optname is not None
            value = plan.units("rto_max", k.rto_max, "TCP_RTO_MAX_MS", 1000)
            plan.add("TCP_RTO_MAX_MS", "rto_max", plan.tcp_level(), optname, value, "ms")
        else:
            _lacks_rto_max(plan)


def _lacks_rto_max(plan: _Plan) -> None:
    plan.lacks(
        "TCP_RTO_MAX_MS",
        "rto_max",
        "a Linux-only option (6.15 and later); the retransmission timeout doubles up to the "
        "host's maximum (120 s on Linux)",
    )


def _lacks_linear_timeouts(plan: _Plan) -> None:
    plan.lacks(
        "TCP_THIN_LINEAR_TIMEOUTS",
        "linear_timeouts",
        "a Linux-only option; retransmissions back off exponentially (RTO doubling)",
    )


def _plan_darwin(plan: _Plan) -> None:
    k = plan.keepalive
    probes = _probes(k)
    if probes is not None:
        _plan_darwin_probes(plan, probes)
    if k.user_timeout is not None:
        plan.lacks(
            "TCP_USER_TIMEOUT",
            "user_timeout",
            "macOS has no TCP_USER_TIMEOUT; TCP_RXT_CONNDROPTIME is not equivalent (a private "
            "option counted from the first retransmission, with no effect on keepalive), so "
            "it is not substituted; the host's retransmission timeout applies",
        )
    if k.linear_timeouts:
        _lacks_linear_timeouts(plan)
    if k.rto_max is not None:
        _lacks_rto_max(plan)


def _plan_darwin_probes(plan: _Plan, probes: _Probes) -> None:
    plan.keepalive_on()
    plan.seconds_option(
        "TCP_KEEPALIVE",
        "idle",
        probes.idle,
        plan.const("TCP_KEEPALIVE", MACOS_TCP_KEEPALIVE),
        "",  # never lacking: the constant 0x10 stands in for a missing name
    )
    if not plan.seconds_option(
        "TCP_KEEPINTVL",
        "interval",
        probes.interval,
        plan.const("TCP_KEEPINTVL"),
        "the socket module does not expose it; the system's net.inet.tcp.keepintvl applies "
        f"(default {format_seconds(MACOS_DEFAULT_KEEPINTVL)} s)",
    ):
        plan.defaults["interval"] = MACOS_DEFAULT_KEEPINTVL
        plan.notes.append(
            "detection time assumes the macOS default interval of "
            f"{format_seconds(MACOS_DEFAULT_KEEPINTVL)} s"
        )
    if not plan.count_option(
        probes.count,
        plan.const("TCP_KEEPCNT"),
        "the socket module does not expose it; the system's net.inet.tcp.keepcnt applies "
        f"(default {MACOS_DEFAULT_KEEPCNT})",
    ):
        plan.defaults["count"] = MACOS_DEFAULT_KEEPCNT
        plan.notes.append(
            f"detection time assumes the macOS default count of {MACOS_DEFAULT_KEEPCNT} probes"
        )


def _plan_windows(plan: _Plan, sock: object) -> None:
    k = plan.keepalive
    probes = _probes(k)
    if probes is not None:
        _plan_windows_probes(plan, sock, probes)
    if k.user_timeout is not None:
        # Windows has no TCP_USER_TIMEOUT; TCP_MAXRT (Vista+, whole seconds) is its closest
        # equivalent. CPython does not expose the name, so its <ws2ipdef.h> value stands in,
        # as macOS's TCP_KEEPALIVE does above; a kernel that refuses it (WSAENOPROTOOPT) is
        # reported as unsupported when applying.
        maxrt = plan.const("TCP_MAXRT", WINDOWS_TCP_MAXRT)
        assert maxrt is not None
        value = plan.units("user_timeout", k.user_timeout, "TCP_MAXRT", 1)
        plan.add("TCP_MAXRT", "user_timeout", plan.tcp_level(), maxrt, value, "s")
    if k.linear_timeouts:
        _lacks_linear_timeouts(plan)
    if k.rto_max is not None:
        _lacks_rto_max(plan)


def _plan_windows_probes(plan: _Plan, sock: object, probes: _Probes) -> None:
    idle_opt = plan.const("TCP_KEEPIDLE")
    intvl_opt = plan.const("TCP_KEEPINTVL")
    if idle_opt is not None and intvl_opt is not None:
        # Windows 10 1709+: plain socket options, in whole seconds, readable back.
        plan.keepalive_on()
        plan.seconds_option("TCP_KEEPIDLE", "idle", probes.idle, idle_opt, "")
        plan.seconds_option("TCP_KEEPINTVL", "interval", probes.interval, intvl_opt, "")
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
            idle_ms = plan.units("idle", probes.idle, "SIO_KEEPALIVE_VALS", 1000)
            interval_ms = plan.units("interval", probes.interval, "SIO_KEEPALIVE_VALS", 1000)
            plan.ioctl = (1, idle_ms, interval_ms)
    if plan.const("TCP_KEEPCNT") is not None:
        plan.count_option(probes.count, plan.const("TCP_KEEPCNT"), "")
    elif probes.count == WINDOWS_FIXED_KEEPCNT:
        plan.notes.append(
            f"count {probes.count} is Windows' fixed probe count: nothing to set (TCP_KEEPCNT "
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
      ``TCP_KEEPCNT``, ``TCP_USER_TIMEOUT`` in milliseconds when ``user_timeout`` is
      set, and ``TCP_THIN_LINEAR_TIMEOUTS`` with ``linear_timeouts`` (the ``<linux/tcp.h>``
      value 16 when the module lacks the name, as CPython's does; Linux only: other Unix
      systems report it unsupported). With linear timeouts and ``thin_stream_congestion``,
      a socket whose congestion control never lets a stream count as thin (BBR) is
      switched to that one with ``TCP_CONGESTION``; a kernel that refuses (``ENOENT``:
      not available; ``EPERM``: not allowed to this process) lists it in
      ``report.unsupported`` instead of raising. Every option set is read back with
      ``getsockopt``; the notes say when the socket's congestion control leaves linear
      timeouts inert (BBR) or when ``TCP_USER_TIMEOUT`` cuts keepalive's probe count short.
    - **macOS** (``darwin``): ``SO_KEEPALIVE``, ``TCP_KEEPALIVE`` for the idle time (the
      constant ``0x10`` when the socket module lacks the name), ``TCP_KEEPINTVL`` and
      ``TCP_KEEPCNT`` where the module has them. There is no ``TCP_USER_TIMEOUT``: it is
      reported unsupported (``TCP_RXT_CONNDROPTIME`` is not an equivalent and is not used).
    - **Windows** (``win32``): ``SO_KEEPALIVE`` + ``TCP_KEEPIDLE``/``TCP_KEEPINTVL`` when
      the module exposes them (Windows 10 1709+), else
      ``sock.ioctl(SIO_KEEPALIVE_VALS, (1, idle_ms, interval_ms))``, which cannot be read
      back; ``TCP_KEEPCNT`` when exposed (1703+), else the count is fixed at 10 (asking
      for 10 is then satisfied, anything else is unsupported); ``user_timeout`` through
      ``TCP_MAXRT`` (whole seconds; the ``<ws2ipdef.h>`` value 5 when the module lacks
      the name, as CPython's does).

    ``linear_timeouts`` is Linux-only: macOS, Windows and the BSDs report
    ``TCP_THIN_LINEAR_TIMEOUTS`` unsupported (their retransmissions back off
    exponentially).

    When ``keepalive`` asks for no probing (``idle``, ``interval`` and ``count`` all
    ``None``), ``SO_KEEPALIVE`` and the probe options are not touched: only
    ``user_timeout`` is applied, and ``report.idle_detection_time`` is ``None``.

    An option the platform lacks (absent from ``socket_module``, or refused by the kernel
    with ``ENOPROTOOPT``) is listed in ``report.unsupported`` on every call, and logged as
    a ``kernel.option_unsupported`` warning the first time this process meets it for
    ``platform`` (at 10,000 connections a warning per socket is noise); with
    ``keepalive.strict`` it raises
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

    if is_linux:
        _switch_thin_stream_congestion(sock, plan, applied)
        plan.notes.extend(_linux_notes(sock, keepalive, applied, effective, socket_module))
    _warn_unsupported(platform, plan.unsupported)
    return KeepaliveReport(
        requested=keepalive,
        platform=platform,
        applied=tuple(applied),
        unsupported=tuple(plan.unsupported),
        notes=tuple(plan.notes),
        idle_detection_time=_idle_detection(effective, linux=is_linux),
        unacked_detection_time=_unacked_detection(effective),
    )


def _unacked_detection(effective: dict[str, float]) -> float | None:
    """The bound on unacknowledged data: the user timeout, else the retransmission limit
    under a capped RTO (``tcp_retries2`` at its default), else None (the host's)."""
    if "user_timeout" in effective:
        return effective["user_timeout"]
    if "rto_max" in effective:
        return linux_retransmission_timeout(_DEFAULT_RETRIES2, rto_max=effective["rto_max"])
    return None


def _warn_unsupported(platform: str, unsupported: list[UnsupportedOption]) -> None:
    """Log each unsupported option once per process per platform.

    One event per option: an option that carries several settings (``SIO_KEEPALIVE_VALS``
    for idle and interval) names them all in ``setting``, comma-separated.
    """
    by_option: dict[str, list[UnsupportedOption]] = {}
    for missing in unsupported:
        by_option.setdefault(missing.option, []).append(missing)
    for option, entries in by_option.items():
        key = (platform, option)
        if key in _warned:
            continue
        _warned.add(key)
        _logger.warning(
            EVENT_OPTION_UNSUPPORTED,
            option=option,
            setting=",".join(entry.setting for entry in entries),
            platform=platform,
            reason="; ".join(dict.fromkeys(entry.reason for entry in entries)),
        )


def _read_back(sock: KeepaliveSocket, step: _Step, notes: list[str]) -> int | None:
    try:
        value = sock.getsockopt(step.level, step.optname)
    except OSError as exc:
        notes.append(f"{step.option} could not be read back: {exc}")
        return None
    return value if isinstance(value, int) else None


def _linux_notes(
    sock: KeepaliveSocket,
    keepalive: KernelKeepalive,
    applied: list[AppliedOption],
    effective: dict[str, float],
    socket_module: object,
) -> list[str]:
    """What the values in effect mean on Linux, where they are known to surprise."""
    notes = []
    probes = _probes_sent(effective)
    if probes is not None and probes < effective["count"]:
        count = int(effective["count"])
        bound = effective["idle"] + effective["interval"] * count
        notes.append(
            f"TCP_USER_TIMEOUT ({format_seconds(effective['user_timeout'])} s) is shorter than "
            f"idle + interval * count ({format_seconds(bound)} s): an idle connection is "
            f"dropped after {probes} unanswered probe(s), not {count}, so on a lossy link "
            f"{probes} lost probe(s) in a row are a false death; a user_timeout of at least "
            f"{format_seconds(bound)} s keeps the count"
        )
    if keepalive.linear_timeouts and _linear_applied(applied):
        algorithm = read_congestion(sock, socket_module)
        if algorithm in NEVER_THIN_CONGESTION:
            notes.append(
                f"TCP_THIN_LINEAR_TIMEOUTS has no effect under congestion control "
                f"{algorithm!r}: it never sets a slow-start threshold, so Linux never counts "
                "the stream as thin and retransmissions still back off exponentially "
                "(cubic and reno do set one)"
            )
    return notes


def _linear_applied(applied: list[AppliedOption]) -> bool:
    return any(option.option == "TCP_THIN_LINEAR_TIMEOUTS" for option in applied)


def _switch_thin_stream_congestion(
    sock: KeepaliveSocket, plan: _Plan, applied: list[AppliedOption]
) -> None:
    """Linux: switch a never-thin (BBR) socket to ``thin_stream_congestion``, and say so.

    Only when linear timeouts were applied and the socket's congestion control is one of
    :data:`~pulsewire.core.keepalive.NEVER_THIN_CONGESTION`: a cubic or reno socket, or
    one whose congestion control cannot be read, is left alone. A refusal
    (:data:`~pulsewire.kernel.congestion.REFUSED_ERRNOS`) is reported as unsupported (in
    strict mode it raises); any other ``OSError`` propagates, as for every option.
    """
    wanted = plan.keepalive.thin_stream_congestion
    if wanted is None or not _linear_applied(applied):
        return
    current = read_congestion(sock, plan.sm)
    if current not in NEVER_THIN_CONGESTION:
        return
    assert current is not None
    try:
        write_congestion(sock, wanted, plan.sm)
    except OSError as exc:
        if exc.errno not in REFUSED_ERRNOS:
            raise
        reason = refusal_reason(exc.errno, wanted, current)
        if plan.keepalive.strict:
            raise PolicyError(
                f"TCP_CONGESTION (thin_stream_congestion) could not be applied on "
                f"{plan.platform}: {reason}; strict mode requires every option to be applied "
                "(the options before it were already set)"
            ) from exc
        plan.unsupported.append(
            UnsupportedOption(
                option="TCP_CONGESTION", setting="thin_stream_congestion", reason=reason
            )
        )
        return
    option = AppliedOption(
        option="TCP_CONGESTION",
        setting="thin_stream_congestion",
        value=wanted,
        unit="name",
        read_back=read_congestion(sock, plan.sm),
    )
    applied.append(option)
    if option.read_back is None:
        plan.notes.append("TCP_CONGESTION could not be read back")
    elif not option.verified:
        plan.notes.append(f"TCP_CONGESTION was set to {wanted} but reads back {option.read_back}")
    plan.notes.append(
        f"congestion control switched from {current!r} to {wanted!r} (thin_stream_congestion) "
        f"so that TCP_THIN_LINEAR_TIMEOUTS applies: Linux never counts a {current!r} stream "
        "as thin; thin_stream_congestion=None keeps it"
    )


def _probes_sent(effective: dict[str, float]) -> int | None:
    """Linux with TCP_USER_TIMEOUT: probes sent before an idle connection is dropped.

    ``tcp_keepalive_timer`` in ``net/ipv4/tcp_timer.c``: with ``TCP_USER_TIMEOUT`` set, the
    connection is dropped at the first timer expiry (``idle``, ``idle + interval``, ...)
    at which at least one probe is unanswered and the silence has reached the user
    timeout; ``TCP_KEEPCNT`` is not consulted. ``None`` without probing or user timeout.
    """
    try:
        idle, interval = effective["idle"], effective["interval"]
        user_timeout = effective["user_timeout"]
    except KeyError:
        return None
    if "count" not in effective:
        return None
    return max(1, math.ceil((user_timeout - idle) / interval - UNIT_TOLERANCE))


def _idle_detection(effective: dict[str, float], *, linux: bool) -> float | None:
    try:
        idle, interval, count = effective["idle"], effective["interval"], effective["count"]
    except KeyError:
        return None
    probes = _probes_sent(effective) if linux else None
    if probes is not None:
        return idle + interval * probes
    return idle + interval * count
