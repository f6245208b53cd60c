"""Kernel TCP keepalive and ``TCP_USER_TIMEOUT``, per platform, reporting what was applied.

This package only re-exports. Each module has one job:

- :mod:`pulsewire.core.keepalive`: :class:`KernelKeepalive`, the request as a frozen,
  validated value (sans-I/O, so policies can carry it).
- :mod:`pulsewire.kernel.apply`: :func:`apply_keepalive` sets it on a socket, per
  platform, and returns a :class:`KeepaliveReport` of what the kernel took.
- :mod:`pulsewire.kernel.congestion`: reads and switches a socket's congestion control
  (``TCP_CONGESTION``), for the ``thin_stream_congestion`` step of :func:`apply_keepalive`.
- :mod:`pulsewire.kernel.host`: :class:`HostTcpFacts` reads this host's Linux TCP
  defaults and computes their worst-case detection times, for ``pulsewire kernel``.

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
  the given time (but see the two facts below).
- **``TCP_THIN_LINEAR_TIMEOUTS`` shortens the retransmission tail of a heartbeat.** A lost
  PING or PONG is retransmitted after 0.2, 0.4, 0.8, 1.7, 3.3 s ... (exponential backoff);
  with this Linux option, on a *thin* stream (fewer than four segments in flight), every
  0.2 s for the first seven retransmissions. See :mod:`pulsewire.core.keepalive`. Linux
  applies it only to thin streams, which a BBR stream never is: with
  ``thin_stream_congestion`` (``"reno"`` in :class:`~pulsewire.Policy`) a BBR socket is
  switched to that congestion control so that it applies, and the report says so.
- **A backstop** for a connection whose application heartbeat is not running.

Two facts about ``TCP_USER_TIMEOUT`` on Linux
---------------------------------------------
Both measured on Linux 6.18 between two network namespaces (``tests/faults`` and
``benchmarks/detection.py``), both visible in ``net/ipv4/tcp_timer.c``:

- **It is counted from the first retransmission, not from the write**
  (``tp->retrans_stamp``, set when the retransmission timer first resends the segment), so
  it fires about one RTO after the bound, and never earlier: at least 200 ms
  (``TCP_RTO_MIN``) on a fast link, more where the round trip is longer. A 2 s user
  timeout fired 2.29 s after a blackhole cut a connection writing every 100 ms, and
  2.44 s after a single unacknowledged segment was sent (the tail-loss probe went at
  0.21 s, the first timer-driven retransmission at 0.42 s; 0.42 + 2 s, plus a timer tick).
- **With keepalive probing, it replaces ``TCP_KEEPCNT``.** An idle connection is dropped
  at the first probe time at which the silence has lasted ``user_timeout`` and one probe
  is unanswered (``tcp_keepalive_timer``). A user timeout shorter than
  ``idle + interval * count`` therefore sends fewer probes than asked: with keepalive
  1/1/3 and a 3 s user timeout, two lost probes (or their answers) kill a live
  connection. On a link losing 10 % of packets each way that is a trap: 217-236 false
  deaths per connection-hour, against 30-49 for keepalive 1/1/3 alone (``docs/tuning.md``).
  A user timeout of at least ``idle + interval * count`` keeps the count: the drop then
  comes at the same probe as without it (1/1/3 with a 4 s user timeout: 43-66, as
  without). :meth:`pulsewire.Policy.kernel_options` raises the
  user timeout it adds to that bound, and :class:`KeepaliveReport` notes an explicit one
  that is shorter.
"""

from pulsewire.core.keepalive import (
    LINUX_MAX_KEEPCNT,
    LINUX_MAX_KEEPIDLE,
    NEVER_THIN_CONGESTION,
    KernelKeepalive,
)
from pulsewire.kernel.apply import (
    EVENT_OPTION_UNSUPPORTED,
    LINUX_TCP_RTO_MAX_MS,
    LINUX_TCP_THIN_LINEAR_TIMEOUTS,
    MACOS_DEFAULT_KEEPCNT,
    MACOS_DEFAULT_KEEPINTVL,
    MACOS_TCP_KEEPALIVE,
    WINDOWS_FIXED_KEEPCNT,
    WINDOWS_TCP_MAXRT,
    AppliedOption,
    KeepaliveReport,
    KeepaliveSocket,
    UnsupportedOption,
    apply_keepalive,
)
from pulsewire.kernel.congestion import LINUX_TCP_CONGESTION
from pulsewire.kernel.host import (
    TCP_RTO_MAX,
    TCP_RTO_MIN,
    TCP_TIMEOUT_INIT,
    HostTcpFacts,
    linux_retransmission_timeout,
)

__all__ = [
    "EVENT_OPTION_UNSUPPORTED",
    "LINUX_MAX_KEEPCNT",
    "LINUX_MAX_KEEPIDLE",
    "LINUX_TCP_CONGESTION",
    "LINUX_TCP_RTO_MAX_MS",
    "LINUX_TCP_THIN_LINEAR_TIMEOUTS",
    "MACOS_DEFAULT_KEEPCNT",
    "MACOS_DEFAULT_KEEPINTVL",
    "MACOS_TCP_KEEPALIVE",
    "NEVER_THIN_CONGESTION",
    "TCP_RTO_MAX",
    "TCP_RTO_MIN",
    "TCP_TIMEOUT_INIT",
    "WINDOWS_FIXED_KEEPCNT",
    "WINDOWS_TCP_MAXRT",
    "AppliedOption",
    "HostTcpFacts",
    "KeepaliveReport",
    "KeepaliveSocket",
    "KernelKeepalive",
    "UnsupportedOption",
    "apply_keepalive",
    "linux_retransmission_timeout",
]
