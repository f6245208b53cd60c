"""Read this host's TCP facts and say what they mean: :class:`HostTcpFacts`.

:class:`HostTcpFacts` reads the Linux sysctls that govern every socket which does not
override them (keepalive timers, retransmission and SYN retry limits), and
:func:`linux_retransmission_timeout` turns a retry limit into the time after which Linux
gives up, as the kernel itself computes it. These feed ``pulsewire kernel``. The duration
formatting shared with :mod:`pulsewire.kernel.apply` lives here too.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any, Final

import msgspec

from pulsewire.core.keepalive import NEVER_THIN_CONGESTION, is_number
from pulsewire.errors import PolicyError

__all__ = [
    "TCP_RTO_MAX",
    "TCP_RTO_MIN",
    "TCP_TIMEOUT_INIT",
    "HostTcpFacts",
    "linux_retransmission_timeout",
]

#: Linux ``TCP_RTO_MIN`` (seconds): the RTO that ``tcp_model_timeout`` assumes at the start.
TCP_RTO_MIN: Final = 0.2
#: Linux ``TCP_RTO_MAX`` (seconds): the retransmission timeout stops doubling here.
#: Tunable per host since Linux 6.15 (``net.ipv4.tcp_rto_max_ms``).
TCP_RTO_MAX: Final = 120.0
#: Linux ``TCP_TIMEOUT_INIT`` (seconds): the initial RTO of a SYN.
TCP_TIMEOUT_INIT: Final = 1.0


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
    if not (is_number(rto_base) and math.isfinite(rto_base) and rto_base > 0):
        raise PolicyError(f"rto_base must be a positive number of seconds, got {rto_base!r}")
    if not (is_number(rto_max) and math.isfinite(rto_max) and rto_max >= rto_base):
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

    platform: str  #: the ``sys.platform`` that was read
    proc_root: str  #: where the sysctls were read (``/proc``)
    keepalive_time: int | None = None  #: seconds idle before the first probe (7200)
    keepalive_intvl: int | None = None  #: seconds between probes (75)
    keepalive_probes: int | None = None  #: unanswered probes before the drop (9)
    retries2: int | None = None  #: retransmission limit for established connections (15)
    syn_retries: int | None = None  #: SYN retransmissions for connect() (6)
    rto_max: float | None = None  #: tcp_rto_max_ms / 1000 (Linux 6.15+); None: 120 s
    missing: tuple[str, ...] = ()  #: files that could not be read or parsed
    #: tcp_congestion_control: new sockets' congestion control (None: unreadable)
    congestion_control: str | None = None
    #: tcp_allowed_congestion_control: what an unprivileged socket may switch to
    allowed_congestion_control: tuple[str, ...] | None = None

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
        congestion = _read_words(os.path.join(directory, "tcp_congestion_control"))
        allowed = _read_words(os.path.join(directory, "tcp_allowed_congestion_control"))
        return cls(
            platform=platform,
            proc_root=proc_root,
            rto_max=None if rto_max_ms is None or rto_max_ms <= 0 else rto_max_ms / 1000,
            missing=tuple(missing),
            congestion_control=congestion[0] if congestion else None,
            allowed_congestion_control=allowed,
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
                f"most {human_duration(idle)}"
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
                f"{format_seconds(TCP_RTO_MIN)} s doubling up to {format_seconds(self._rto_max)} s)"
            )
            lines.append(
                "    unacknowledged data to a dead peer is abandoned after about "
                f"{human_duration(unacked)} (unless TCP_USER_TIMEOUT is set)"
            )
        connect = self.connect_timeout()
        if connect is None:
            lines.append("  connect: unknown (tcp_syn_retries missing)")
        else:
            lines.append(
                f"  connect: tcp_syn_retries = {self.syn_retries}: a connection attempt to a "
                f"silent host fails after {human_duration(connect)}"
            )
        if self.congestion_control is not None:
            thin = (
                "never counts as thin: TCP_THIN_LINEAR_TIMEOUTS has no effect under it"
                if self.congestion_control in NEVER_THIN_CONGESTION
                else "lets a heartbeat count as thin: TCP_THIN_LINEAR_TIMEOUTS applies"
            )
            lines.append(f"  congestion control: {self.congestion_control} ({thin})")
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


def _read_words(path: str) -> tuple[str, ...] | None:
    """The whitespace-separated ASCII words of a sysctl file, or None if unreadable."""
    try:
        with open(path, encoding="ascii") as file:
            return tuple(file.read().split())
    except (OSError, UnicodeDecodeError):
        return None


def format_seconds(seconds: float) -> str:
    """Seconds without float noise (shared with apply.py): ``7875``, ``924.6``, ``0.25``."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def human_duration(seconds: float) -> str:
    """``7875`` -> ``"7875 s (2 h 11 min 15 s)"``; under a minute just ``"25 s"``."""
    plain = f"{format_seconds(seconds)} s"
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
        parts.append(f"{format_seconds(secs)} s")
    return f"{plain} ({' '.join(parts)})"
