"""Tests for pulsewire.kernel.apply: per-platform application, the report, the warnings.

Linux is exercised on real loopback sockets and read back with getsockopt; macOS and
Windows through a fake socket module and a fake socket that record every call.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Iterator, MutableMapping
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
import structlog

from pulsewire import SocketOptions
from pulsewire.errors import PolicyError, UsageError
from pulsewire.kernel import (
    EVENT_OPTION_UNSUPPORTED,
    LINUX_TCP_CONGESTION,
    LINUX_TCP_RTO_MAX_MS,
    LINUX_TCP_THIN_LINEAR_TIMEOUTS,
    MACOS_TCP_KEEPALIVE,
    WINDOWS_TCP_MAXRT,
    KeepaliveReport,
    KernelKeepalive,
    apply_keepalive,
)
from pulsewire.kernel.apply import _forget_warnings
from pulsewire.kernel.host import linux_retransmission_timeout

on_linux = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="real-socket keepalive options are Linux-only",
)

SOL_SOCKET = 0xFFFF
SO_KEEPALIVE = 0x0008
IPPROTO_TCP = 6


@pytest.fixture(autouse=True)
def fresh_warnings() -> Iterator[None]:
    """Each test sees the first ``kernel.option_unsupported`` warning, whatever ran before."""
    _forget_warnings()
    yield
    _forget_warnings()


# --------------------------------------------------------------------------------------
# Fakes
# --------------------------------------------------------------------------------------


class FakeSocket:
    """Records setsockopt/getsockopt/ioctl calls; getsockopt returns what was set."""

    def __init__(
        self,
        *,
        with_ioctl: bool = False,
        refuse: dict[tuple[int, int], int] | None = None,
        unreadable: set[tuple[int, int]] | None = None,
        read_as: dict[tuple[int, int], int] | None = None,
    ) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.options: dict[tuple[int, int], int] = {}
        self.refuse = refuse or {}
        self.unreadable = unreadable or set()
        self.read_as = read_as or {}
        if with_ioctl:
            self.ioctl = self._ioctl

    def setsockopt(self, level: int, optname: int, value: int) -> None:
        self.calls.append(("setsockopt", level, optname, value))
        if (level, optname) in self.refuse:
            code = self.refuse[(level, optname)]
            raise OSError(code, "refused by the fake kernel")
        self.options[(level, optname)] = value

    def getsockopt(self, level: int, optname: int) -> int:
        self.calls.append(("getsockopt", level, optname))
        if (level, optname) in self.unreadable:
            raise OSError(errno.EINVAL, "cannot read back")
        return self.read_as.get((level, optname), self.options[(level, optname)])

    def _ioctl(self, code: int, value: tuple[int, int, int]) -> None:
        self.calls.append(("ioctl", code, value))

    def sets(self) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] != "getsockopt"]


def fake_module(**constants: int) -> SimpleNamespace:
    base = {"SOL_SOCKET": SOL_SOCKET, "SO_KEEPALIVE": SO_KEEPALIVE, "IPPROTO_TCP": IPPROTO_TCP}
    return SimpleNamespace(**base, **constants)


def macos_module(**overrides: int | None) -> SimpleNamespace:
    constants: dict[str, int | None] = {
        "TCP_KEEPALIVE": 0x10,
        "TCP_KEEPINTVL": 0x101,
        "TCP_KEEPCNT": 0x102,
        **overrides,
    }
    return fake_module(**{k: v for k, v in constants.items() if v is not None})


WIN_SIO_KEEPALIVE_VALS = 0x98000004
WIN_TCP_KEEPIDLE = 3
WIN_TCP_KEEPCNT = 16
WIN_TCP_KEEPINTVL = 17
WIN_TCP_MAXRT = 5

KA = KernelKeepalive(idle=10, interval=5, count=3)


def unsupported_events(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == EVENT_OPTION_UNSUPPORTED]


# --------------------------------------------------------------------------------------
# Linux: real sockets on loopback
# --------------------------------------------------------------------------------------


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname(), timeout=5)
        server, _ = listener.accept()
        try:
            yield client, server
        finally:
            client.close()
            server.close()


def linux_read(sock: socket.socket) -> dict[str, int]:
    tcp = socket.IPPROTO_TCP
    return {
        "SO_KEEPALIVE": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        "TCP_KEEPIDLE": sock.getsockopt(tcp, socket.TCP_KEEPIDLE),
        "TCP_KEEPINTVL": sock.getsockopt(tcp, socket.TCP_KEEPINTVL),
        "TCP_KEEPCNT": sock.getsockopt(tcp, socket.TCP_KEEPCNT),
        "TCP_USER_TIMEOUT": sock.getsockopt(tcp, socket.TCP_USER_TIMEOUT),
    }


@on_linux
def test_linux_applies_and_reads_back(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = tcp_pair
    ka = KernelKeepalive(idle=10, interval=5, count=3, user_timeout=30)
    with structlog.testing.capture_logs() as logs:
        report = apply_keepalive(client, ka)
    assert linux_read(client) == {
        "SO_KEEPALIVE": 1,
        "TCP_KEEPIDLE": 10,
        "TCP_KEEPINTVL": 5,
        "TCP_KEEPCNT": 3,
        "TCP_USER_TIMEOUT": 30_000,
    }
    assert [(o.option, o.value, o.unit, o.read_back) for o in report.applied] == [
        ("SO_KEEPALIVE", 1, "on/off", 1),
        ("TCP_KEEPIDLE", 10, "s", 10),
        ("TCP_KEEPINTVL", 5, "s", 5),
        ("TCP_KEEPCNT", 3, "probes", 3),
        ("TCP_USER_TIMEOUT", 30_000, "ms", 30_000),
    ]
    assert all(option.verified for option in report.applied)
    assert report.complete
    assert report.unsupported == ()
    assert report.platform == sys.platform
    assert report.requested == ka
    # TCP_USER_TIMEOUT replaces TCP_KEEPCNT on Linux: 10 + 5k >= 30 -> k = 4 probes.
    assert report.idle_detection_time == 30
    assert report.unacked_detection_time == 30
    assert unsupported_events(logs) == []
    assert "unacknowledged data: dropped after 30 s (TCP_USER_TIMEOUT)" in report.describe()
    # The other end is untouched.
    assert server.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


@on_linux
def test_linux_without_user_timeout_leaves_it_unset(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, _ = tcp_pair
    report = apply_keepalive(client, KA)
    assert linux_read(client)["TCP_USER_TIMEOUT"] == 0
    assert "TCP_USER_TIMEOUT" not in [o.option for o in report.applied]
    assert report.idle_detection_time == 25
    assert report.unacked_detection_time is None
    assert "unacknowledged data: the host's retransmission timeout applies" in report.describe()


@on_linux
def test_linux_user_timeout_shorter_than_keepalive(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, _ = tcp_pair
    report = apply_keepalive(client, KernelKeepalive(idle=10, interval=5, count=9, user_timeout=3))
    # Dropped at the first probe timer after one probe: idle + interval.
    assert report.idle_detection_time == 15
    assert report.unacked_detection_time == 3


@on_linux
def test_linux_rounds_fractions_up_and_says_so(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, _ = tcp_pair
    ka = KernelKeepalive(idle=1.5, interval=0.3, count=2, user_timeout=2.0004)
    report = apply_keepalive(client, ka)
    read = linux_read(client)
    assert (read["TCP_KEEPIDLE"], read["TCP_KEEPINTVL"], read["TCP_USER_TIMEOUT"]) == (2, 1, 2001)
    assert report.notes[:3] == (
        "idle 1.5 s rounded up to 2 s: TCP_KEEPIDLE takes whole seconds (at least 1)",
        "interval 0.3 s rounded up to 1 s: TCP_KEEPINTVL takes whole seconds (at least 1)",
        "user_timeout 2.0004 s rounded up to 2001 ms: TCP_USER_TIMEOUT takes whole "
        "milliseconds (at least 1)",
    )
    assert report.unacked_detection_time == pytest.approx(2.001)


@on_linux
def test_linux_exact_float_values_are_not_rounded(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, _ = tcp_pair
    # 2.3 * 1000 is 2299.9999999999995 and 1.1 * 1000 is 1100.0000000000002 in floats.
    report = apply_keepalive(
        client, KernelKeepalive(idle=4.0, interval=1, count=1, user_timeout=1.1)
    )
    assert linux_read(client)["TCP_USER_TIMEOUT"] == 1100
    assert not any("rounded" in note for note in report.notes)
    apply_keepalive(client, KernelKeepalive(idle=4, interval=1, count=1, user_timeout=2.3))
    assert linux_read(client)["TCP_USER_TIMEOUT"] == 2300


@on_linux
def test_linux_strict_applies_exact_values(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, _ = tcp_pair
    ka = KernelKeepalive(idle=7, interval=2, count=4, user_timeout=0.25, strict=True)
    report = apply_keepalive(client, ka)
    assert report.complete
    assert linux_read(client)["TCP_USER_TIMEOUT"] == 250


@on_linux
def test_linux_refuses_non_tcp_sockets() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        pytest.raises(UsageError, match=r"needs a TCP \(SOCK_STREAM\) socket"),
    ):
        apply_keepalive(udp, KA)
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix,
        pytest.raises(UsageError, match="needs an IPv4 or IPv6 TCP socket"),
    ):
        apply_keepalive(unix, KA)


@on_linux
def test_linux_closed_socket_raises_oserror(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, _ = tcp_pair
    client.close()
    with pytest.raises(OSError, match="Bad file descriptor"):
        apply_keepalive(client, KA)


@on_linux
def test_linux_user_timeout_alone_leaves_keepalive_off(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, _ = tcp_pair
    before = linux_read(client)
    with structlog.testing.capture_logs() as logs:
        report = apply_keepalive(client, KernelKeepalive(user_timeout=5))
    after = linux_read(client)
    assert after["SO_KEEPALIVE"] == 0
    assert after["TCP_USER_TIMEOUT"] == 5000
    # The probe timers are not touched either: still the host's defaults.
    for name in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"):
        assert after[name] == before[name]
    assert [(o.option, o.value, o.unit, o.read_back) for o in report.applied] == [
        ("TCP_USER_TIMEOUT", 5000, "ms", 5000)
    ]
    assert report.complete
    assert report.notes == ()  # no "replaces TCP_KEEPCNT" note: there is no keepalive
    assert report.idle_detection_time is None
    assert report.unacked_detection_time == 5
    assert unsupported_events(logs) == []
    assert report.describe().splitlines() == [
        f"kernel keepalive on {sys.platform}:",
        "  applied      TCP_USER_TIMEOUT=5000 ms",
        "  idle dead peer: no keepalive probing requested (SO_KEEPALIVE left as it was)",
        "  unacknowledged data: dropped after 5 s (TCP_USER_TIMEOUT)",
    ]


@on_linux
def test_linux_user_timeout_alone_does_not_turn_keepalive_off(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, _ = tcp_pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    apply_keepalive(client, KernelKeepalive(user_timeout=5))
    assert client.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1


def test_report_is_printable_and_encodable() -> None:
    sock = FakeSocket()
    module = fake_module(TCP_KEEPIDLE=4, TCP_KEEPINTVL=5, TCP_KEEPCNT=6, TCP_USER_TIMEOUT=18)
    report = apply_keepalive(sock, KA, platform="linux", socket_module=module)
    assert repr(report).startswith("KeepaliveReport(requested=KernelKeepalive(idle=10")
    decoded = msgspec.json.decode(msgspec.json.encode(report), type=KeepaliveReport)
    assert decoded == report
    assert report.describe().splitlines() == [
        "kernel keepalive on linux:",
        "  applied      SO_KEEPALIVE=on",
        "  applied      TCP_KEEPIDLE=10 s",
        "  applied      TCP_KEEPINTVL=5 s",
        "  applied      TCP_KEEPCNT=3 probes",
        "  idle dead peer: dropped after at most 25 s",
        "  unacknowledged data: the host's retransmission timeout applies",
    ]


# --------------------------------------------------------------------------------------
# Other Unix systems (same names as Linux, maybe fewer options)
# --------------------------------------------------------------------------------------


def test_unix_without_user_timeout_reports_it() -> None:
    sock = FakeSocket()
    module = fake_module(TCP_KEEPIDLE=256, TCP_KEEPINTVL=512, TCP_KEEPCNT=1024)
    ka = KernelKeepalive(idle=10, interval=5, count=3, user_timeout=30)
    with structlog.testing.capture_logs() as logs:
        report = apply_keepalive(sock, ka, platform="freebsd14", socket_module=module)
    assert sock.sets() == [
        ("setsockopt", SOL_SOCKET, SO_KEEPALIVE, 1),
        ("setsockopt", IPPROTO_TCP, 256, 10),
        ("setsockopt", IPPROTO_TCP, 512, 5),
        ("setsockopt", IPPROTO_TCP, 1024, 3),
    ]
    assert [(u.option, u.setting) for u in report.unsupported] == [
        ("TCP_USER_TIMEOUT", "user_timeout")
    ]
    assert not report.complete
    assert report.idle_detection_time == 25  # user_timeout does not apply off Linux
    assert report.unacked_detection_time is None
    assert unsupported_events(logs) == [
        {
            "event": EVENT_OPTION_UNSUPPORTED,
            "log_level": "warning",
            "option": "TCP_USER_TIMEOUT",
            "setting": "user_timeout",
            "platform": "freebsd14",
            "reason": "the socket module does not expose it on this platform",
        }
    ]


def test_module_without_so_keepalive_reports_it() -> None:
    module = SimpleNamespace(IPPROTO_TCP=6, TCP_KEEPIDLE=4, TCP_KEEPINTVL=5, TCP_KEEPCNT=6)
    report = apply_keepalive(FakeSocket(), KA, platform="linux", socket_module=module)
    assert [(u.option, u.setting) for u in report.unsupported] == [("SO_KEEPALIVE", "keepalive")]
    assert [o.option for o in report.applied] == ["TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"]


def test_unix_missing_idle_makes_detection_unknown() -> None:
    report = apply_keepalive(
        FakeSocket(), KA, platform="sunos5", socket_module=fake_module(TCP_KEEPCNT=9)
    )
    assert {u.option for u in report.unsupported} == {"TCP_KEEPIDLE", "TCP_KEEPINTVL"}
    assert report.idle_detection_time is None
    assert "detection time unknown" in report.describe()


def test_kernel_refusal_is_reported() -> None:
    sock = FakeSocket(refuse={(IPPROTO_TCP, 18): errno.ENOPROTOOPT})
    module = fake_module(TCP_KEEPIDLE=4, TCP_KEEPINTVL=5, TCP_KEEPCNT=6, TCP_USER_TIMEOUT=18)
    ka = KernelKeepalive(idle=10, interval=5, count=3, user_timeout=30)
    with structlog.testing.capture_logs() as logs:
        report = apply_keepalive(sock, ka, platform="linux", socket_module=module)
    [missing] = report.unsupported
    assert missing.option == "TCP_USER_TIMEOUT"
    assert missing.reason.startswith("the kernel refused it (")
    assert report.unacked_detection_time is None
    assert report.idle_detection_time == 25
    assert [event["option"] for event in unsupported_events(logs)] == ["TCP_USER_TIMEOUT"]


def test_kernel_refusal_in_strict_mode_raises() -> None:
    sock = FakeSocket(refuse={(IPPROTO_TCP, 6): errno.ENOPROTOOPT})
    module = fake_module(TCP_KEEPIDLE=4, TCP_KEEPINTVL=5, TCP_KEEPCNT=6)
    ka = KernelKeepalive(idle=10, interval=5, count=3, strict=True)
    with pytest.raises(PolicyError, match=r"TCP_KEEPCNT \(count\) is not supported on linux"):
        apply_keepalive(sock, ka, platform="linux", socket_module=module)


def test_other_socket_errors_propagate() -> None:
    sock = FakeSocket(refuse={(IPPROTO_TCP, 4): errno.EINVAL})
    module = fake_module(TCP_KEEPIDLE=4, TCP_KEEPINTVL=5, TCP_KEEPCNT=6)
    with pytest.raises(OSError, match="refused by the fake kernel") as info:
        apply_keepalive(sock, KA, platform="linux", socket_module=module)
    assert info.value.errno == errno.EINVAL


def test_read_back_problems_are_noted() -> None:
    sock = FakeSocket(unreadable={(IPPROTO_TCP, 5)}, read_as={(IPPROTO_TCP, 4): 20})
    module = fake_module(TCP_KEEPIDLE=4, TCP_KEEPINTVL=5, TCP_KEEPCNT=6)
    report = apply_keepalive(sock, KA, platform="linux", socket_module=module)
    by_name = {o.option: o for o in report.applied}
    assert by_name["TCP_KEEPIDLE"].read_back == 20
    assert not by_name["TCP_KEEPIDLE"].verified
    assert by_name["TCP_KEEPINTVL"].read_back is None
    assert not by_name["TCP_KEEPINTVL"].verified
    assert "TCP_KEEPIDLE was set to 10 but reads back 20" in report.notes
    assert any(note.startswith("TCP_KEEPINTVL could not be read back") for note in report.notes)
    # Detection uses what the kernel reports: 20 + 5 * 3.
    assert report.idle_detection_time == 35
    assert "TCP_KEEPIDLE=10 s (reads back 20)" in report.describe()


# --------------------------------------------------------------------------------------
# macOS
# --------------------------------------------------------------------------------------


def test_macos_exact_calls() -> None:
    sock = FakeSocket(read_as={(SOL_SOCKET, SO_KEEPALIVE): SO_KEEPALIVE})  # BSD returns 8
    report = apply_keepalive(sock, KA, platform="darwin", socket_module=macos_module())
    assert sock.sets() == [
        ("setsockopt", SOL_SOCKET, SO_KEEPALIVE, 1),
        ("setsockopt", IPPROTO_TCP, 0x10, 10),
        ("setsockopt", IPPROTO_TCP, 0x101, 5),
        ("setsockopt", IPPROTO_TCP, 0x102, 3),
    ]
    assert [o.option for o in report.applied] == [
        "SO_KEEPALIVE",
        "TCP_KEEPALIVE",
        "TCP_KEEPINTVL",
        "TCP_KEEPCNT",
    ]
    assert all(o.verified for o in report.applied)
    assert report.complete
    assert report.idle_detection_time == 25


def test_macos_uses_the_constant_when_the_module_lacks_tcp_keepalive() -> None:
    sock = FakeSocket()
    module = macos_module(TCP_KEEPALIVE=None)
    apply_keepalive(sock, KA, platform="darwin", socket_module=module)
    assert ("setsockopt", IPPROTO_TCP, MACOS_TCP_KEEPALIVE, 10) in sock.calls
    assert MACOS_TCP_KEEPALIVE == 0x10


def test_macos_user_timeout_is_unsupported_and_logged() -> None:
    sock = FakeSocket()
    ka = KernelKeepalive(idle=10, interval=5, count=3, user_timeout=30)
    with structlog.testing.capture_logs() as logs:
        report = apply_keepalive(sock, ka, platform="darwin", socket_module=macos_module())
    [missing] = report.unsupported
    assert (missing.option, missing.setting) == ("TCP_USER_TIMEOUT", "user_timeout")
    assert "TCP_RXT_CONNDROPTIME is not equivalent" in missing.reason
    assert report.unacked_detection_time is None
    assert report.idle_detection_time == 25  # no Linux user_timeout rule on macOS
    assert len(sock.sets()) == 4  # nothing set for user_timeout
    [event] = unsupported_events(logs)
    assert event["log_level"] == "warning"
    assert event["option"] == "TCP_USER_TIMEOUT"
    assert event["platform"] == "darwin"
    assert "unsupported  TCP_USER_TIMEOUT (user_timeout)" in report.describe()


def test_macos_missing_interval_and_count_use_defaults() -> None:
    sock = FakeSocket()
    module = macos_module(TCP_KEEPINTVL=None, TCP_KEEPCNT=None)
    with structlog.testing.capture_logs() as logs:
        report = apply_keepalive(sock, KA, platform="darwin", socket_module=module)
    assert sock.sets() == [
        ("setsockopt", SOL_SOCKET, SO_KEEPALIVE, 1),
        ("setsockopt", IPPROTO_TCP, 0x10, 10),
    ]
    assert [u.option for u in report.unsupported] == ["TCP_KEEPINTVL", "TCP_KEEPCNT"]
    assert "net.inet.tcp.keepintvl" in report.unsupported[0].reason
    assert report.idle_detection_time == 10 + 75 * 8
    assert [e["option"] for e in unsupported_events(logs)] == ["TCP_KEEPINTVL", "TCP_KEEPCNT"]


def test_macos_strict_raises_before_touching_the_socket() -> None:
    sock = FakeSocket()
    ka = KernelKeepalive(idle=10, interval=5, count=3, user_timeout=30, strict=True)
    with (
        structlog.testing.capture_logs() as logs,
        pytest.raises(
            PolicyError, match=r"TCP_USER_TIMEOUT \(user_timeout\) is not supported on darwin"
        ),
    ):
        apply_keepalive(sock, ka, platform="darwin", socket_module=macos_module())
    assert sock.calls == []
    assert logs == []


# --------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------


def test_windows_ioctl_with_fixed_count() -> None:
    sock = FakeSocket(with_ioctl=True)
    module = fake_module(SIO_KEEPALIVE_VALS=WIN_SIO_KEEPALIVE_VALS)
    ka = KernelKeepalive(idle=10, interval=5, count=10)
    with structlog.testing.capture_logs() as logs:
        report = apply_keepalive(sock, ka, platform="win32", socket_module=module)
    assert sock.calls == [("ioctl", WIN_SIO_KEEPALIVE_VALS, (1, 10_000, 5_000))]
    [applied] = report.applied
    assert applied.option == "SIO_KEEPALIVE_VALS"
    assert applied.value == (1, 10_000, 5_000)
    assert applied.read_back is None
    assert report.complete  # asking for Windows' own fixed count is satisfied
    assert any("fixed probe count" in note for note in report.notes)
    assert "SIO_KEEPALIVE_VALS cannot be read back: values are as set" in report.notes
    assert report.idle_detection_time == 60
    assert unsupported_events(logs) == []
    assert (
        "applied      SIO_KEEPALIVE_VALS(1, 10000, 5000) (on/off, idle ms, interval ms)"
        in report.describe()
    )


def test_windows_ioctl_takes_milliseconds() -> None:
    sock = FakeSocket(with_ioctl=True)
    module = fake_module(SIO_KEEPALIVE_VALS=WIN_SIO_KEEPALIVE_VALS)
    ka = KernelKeepalive(idle=0.25, interval=1.5, count=10)
    report = apply_keepalive(sock, ka, platform="win32", socket_module=module)
    assert sock.calls == [("ioctl", WIN_SIO_KEEPALIVE_VALS, (1, 250, 1500))]
    assert not any("rounded" in note for note in report.notes)
    assert report.idle_detection_time == pytest.approx(0.25 + 1.5 * 10)


def test_windows_count_unsupported_before_1703() -> None:
    sock = FakeSocket(with_ioctl=True)
    module = fake_module(SIO_KEEPALIVE_VALS=WIN_SIO_KEEPALIVE_VALS)
    ka = KernelKeepalive(idle=10, interval=5, count=3, user_timeout=30)
    with structlog.testing.capture_logs() as logs:
        report = apply_keepalive(sock, ka, platform="win32", socket_module=module)
    assert sock.sets() == [
        ("ioctl", WIN_SIO_KEEPALIVE_VALS, (1, 10_000, 5_000)),
        ("setsockopt", IPPROTO_TCP, WIN_TCP_MAXRT, 30),  # the <ws2ipdef.h> value
    ]
    [missing] = report.unsupported
    assert (missing.option, missing.setting) == ("TCP_KEEPCNT", "count")
    assert "exactly 10 probes" in missing.reason
    assert report.idle_detection_time == 10 + 5 * 10
    assert report.unacked_detection_time == 30
    [event] = unsupported_events(logs)
    assert (event["option"], event["platform"]) == ("TCP_KEEPCNT", "win32")


def test_windows_maxrt_falls_back_to_its_header_value() -> None:
    # CPython's socket module has no TCP_MAXRT on Windows: <ws2ipdef.h> defines it as 5.
    assert WINDOWS_TCP_MAXRT == 5
    sock = FakeSocket(with_ioctl=True)
    module = fake_module(SIO_KEEPALIVE_VALS=WIN_SIO_KEEPALIVE_VALS)
    ka = KernelKeepalive(idle=10, interval=5, count=10, user_timeout=12)
    report = apply_keepalive(sock, ka, platform="win32", socket_module=module)
    [maxrt] = [o for o in report.applied if o.option == "TCP_MAXRT"]
    assert (maxrt.setting, maxrt.value, maxrt.unit) == ("user_timeout", 12, "s")
    assert maxrt.verified
    assert report.complete
    assert report.unacked_detection_time == 12
    # A module that does expose the name is used as it is.
    sock = FakeSocket(with_ioctl=True)
    module = fake_module(SIO_KEEPALIVE_VALS=WIN_SIO_KEEPALIVE_VALS, TCP_MAXRT=99)
    apply_keepalive(sock, ka, platform="win32", socket_module=module)
    assert ("setsockopt", IPPROTO_TCP, 99, 12) in sock.calls


def test_windows_maxrt_refused_by_the_kernel_is_reported() -> None:
    sock = FakeSocket(with_ioctl=True, refuse={(IPPROTO_TCP, WIN_TCP_MAXRT): 10042})
    module = fake_module(SIO_KEEPALIVE_VALS=WIN_SIO_KEEPALIVE_VALS)
    ka = KernelKeepalive(idle=10, interval=5, count=10, user_timeout=30)
    with structlog.testing.capture_logs() as logs:
        report = apply_keepalive(sock, ka, platform="win32", socket_module=module)
    [missing] = report.unsupported
    assert (missing.option, missing.setting) == ("TCP_MAXRT", "user_timeout")
    assert missing.reason.startswith("the kernel refused it (")
    assert report.unacked_detection_time is None
    assert [e["option"] for e in unsupported_events(logs)] == ["TCP_MAXRT"]


def test_windows_1703_sets_count_as_a_socket_option() -> None:
    sock = FakeSocket(with_ioctl=True)
    module = fake_module(SIO_KEEPALIVE_VALS=WIN_SIO_KEEPALIVE_VALS, TCP_KEEPCNT=WIN_TCP_KEEPCNT)
    report = apply_keepalive(sock, KA, platform="win32", socket_module=module)
    assert sock.sets() == [
        ("ioctl", WIN_SIO_KEEPALIVE_VALS, (1, 10_000, 5_000)),
        ("setsockopt", IPPROTO_TCP, WIN_TCP_KEEPCNT, 3),
    ]
    assert report.complete
    assert report.idle_detection_time == 25


def test_windows_1709_prefers_socket_options() -> None:
    sock = FakeSocket(with_ioctl=True)
    module = fake_module(
        SIO_KEEPALIVE_VALS=WIN_SIO_KEEPALIVE_VALS,
        TCP_KEEPIDLE=WIN_TCP_KEEPIDLE,
        TCP_KEEPINTVL=WIN_TCP_KEEPINTVL,
        TCP_KEEPCNT=WIN_TCP_KEEPCNT,
        TCP_MAXRT=WIN_TCP_MAXRT,
    )
    ka = KernelKeepalive(idle=10, interval=5, count=3, user_timeout=30)
    report = apply_keepalive(sock, ka, platform="win32", socket_module=module)
    assert sock.sets() == [
        ("setsockopt", SOL_SOCKET, SO_KEEPALIVE, 1),
        ("setsockopt", IPPROTO_TCP, WIN_TCP_KEEPIDLE, 10),
        ("setsockopt", IPPROTO_TCP, WIN_TCP_KEEPINTVL, 5),
        ("setsockopt", IPPROTO_TCP, WIN_TCP_KEEPCNT, 3),
        ("setsockopt", IPPROTO_TCP, WIN_TCP_MAXRT, 30),
    ]
    assert all(o.verified for o in report.applied)
    assert report.complete
    assert report.idle_detection_time == 25
    assert report.unacked_detection_time == 30


def test_windows_maxrt_rounds_up_to_seconds() -> None:
    sock = FakeSocket(with_ioctl=True)
    module = fake_module(SIO_KEEPALIVE_VALS=WIN_SIO_KEEPALIVE_VALS, TCP_MAXRT=WIN_TCP_MAXRT)
    ka = KernelKeepalive(idle=10, interval=5, count=10, user_timeout=1.5)
    report = apply_keepalive(sock, ka, platform="win32", socket_module=module)
    assert ("setsockopt", IPPROTO_TCP, WIN_TCP_MAXRT, 2) in sock.calls
    assert "user_timeout 1.5 s rounded up to 2 s: TCP_MAXRT takes whole seconds (at least 1)" in (
        report.notes
    )
    assert report.unacked_detection_time == 2


def test_windows_strict_maxrt_rounding_is_an_error() -> None:
    sock = FakeSocket(with_ioctl=True)
    module = fake_module(SIO_KEEPALIVE_VALS=WIN_SIO_KEEPALIVE_VALS, TCP_MAXRT=WIN_TCP_MAXRT)
    ka = KernelKeepalive(idle=10, interval=5, count=10, user_timeout=1.5, strict=True)
    with pytest.raises(
        PolicyError,
        match=r"user_timeout=1.5 s cannot be applied exactly on win32: TCP_MAXRT takes whole",
    ):
        apply_keepalive(sock, ka, platform="win32", socket_module=module)
    assert sock.calls == []


def test_windows_strict_count_is_an_error() -> None:
    sock = FakeSocket(with_ioctl=True)
    module = fake_module(SIO_KEEPALIVE_VALS=WIN_SIO_KEEPALIVE_VALS)
    ka = KernelKeepalive(idle=10, interval=5, count=3, strict=True)
    with pytest.raises(PolicyError, match=r"TCP_KEEPCNT \(count\) is not supported on win32"):
        apply_keepalive(sock, ka, platform="win32", socket_module=module)
    assert sock.calls == []


def test_windows_without_any_keepalive_interface() -> None:
    sock = FakeSocket()  # no ioctl method
    module = fake_module(SIO_KEEPALIVE_VALS=WIN_SIO_KEEPALIVE_VALS)
    with structlog.testing.capture_logs() as logs:
        report = apply_keepalive(
            sock,
            KernelKeepalive(idle=10, interval=5, count=10),
            platform="win32",
            socket_module=module,
        )
    assert sock.calls == []
    assert [(u.option, u.setting) for u in report.unsupported] == [
        ("SIO_KEEPALIVE_VALS", "idle"),
        ("SIO_KEEPALIVE_VALS", "interval"),
    ]
    assert report.idle_detection_time is None
    # One warning per option: it names every setting the option carries.
    [event] = unsupported_events(logs)
    assert (event["option"], event["setting"]) == ("SIO_KEEPALIVE_VALS", "idle,interval")
    assert event["reason"] == report.unsupported[0].reason


# --------------------------------------------------------------------------------------
# Probing off: only user_timeout, on every platform
# --------------------------------------------------------------------------------------


UT_ONLY = KernelKeepalive(user_timeout=30)


def test_probing_off_on_unix_without_user_timeout_sets_nothing() -> None:
    sock = FakeSocket()
    module = fake_module(TCP_KEEPIDLE=256, TCP_KEEPINTVL=512, TCP_KEEPCNT=1024)
    report = apply_keepalive(sock, UT_ONLY, platform="freebsd14", socket_module=module)
    assert sock.calls == []
    assert [(u.option, u.setting) for u in report.unsupported] == [
        ("TCP_USER_TIMEOUT", "user_timeout")
    ]
    assert report.applied == ()
    assert report.idle_detection_time is None
    assert report.unacked_detection_time is None


def test_probing_off_on_macos_sets_nothing() -> None:
    sock = FakeSocket()
    report = apply_keepalive(sock, UT_ONLY, platform="darwin", socket_module=macos_module())
    assert sock.calls == []
    assert [u.option for u in report.unsupported] == ["TCP_USER_TIMEOUT"]
    assert report.notes == ()  # no assumed macOS interval/count: no probing
    assert "no keepalive probing requested" in report.describe()


def test_probing_off_on_macos_strict_raises() -> None:
    sock = FakeSocket()
    with pytest.raises(PolicyError, match=r"TCP_USER_TIMEOUT \(user_timeout\) is not supported"):
        apply_keepalive(
            sock,
            KernelKeepalive(user_timeout=30, strict=True),
            platform="darwin",
            socket_module=macos_module(),
        )
    assert sock.calls == []


@pytest.mark.parametrize("with_ioctl", [True, False])
def test_probing_off_on_windows_sets_only_maxrt(with_ioctl: bool) -> None:
    sock = FakeSocket(with_ioctl=with_ioctl)
    module = fake_module(SIO_KEEPALIVE_VALS=WIN_SIO_KEEPALIVE_VALS)  # count fixed at 10
    report = apply_keepalive(sock, UT_ONLY, platform="win32", socket_module=module)
    assert sock.sets() == [("setsockopt", IPPROTO_TCP, WIN_TCP_MAXRT, 30)]
    assert report.complete  # no fixed-count complaint: no probing was asked for
    assert report.notes == ()
    assert report.idle_detection_time is None
    assert report.unacked_detection_time == 30


# --------------------------------------------------------------------------------------
# kernel.option_unsupported: once per process per (platform, option)
# --------------------------------------------------------------------------------------


def test_unsupported_option_is_logged_once_but_always_reported() -> None:
    ka = KernelKeepalive(idle=10, interval=5, count=3, user_timeout=30)
    with structlog.testing.capture_logs() as logs:
        reports = [
            apply_keepalive(FakeSocket(), ka, platform="darwin", socket_module=macos_module())
            for _ in range(3)
        ]
    [event] = unsupported_events(logs)
    assert (event["option"], event["platform"]) == ("TCP_USER_TIMEOUT", "darwin")
    for report in reports:
        assert [u.option for u in report.unsupported] == ["TCP_USER_TIMEOUT"]
        assert not report.complete


def test_each_platform_and_option_is_logged_once() -> None:
    ka = KernelKeepalive(idle=10, interval=5, count=3, user_timeout=30)
    unix = fake_module(TCP_KEEPIDLE=4, TCP_KEEPINTVL=5, TCP_KEEPCNT=6)
    sparse_macos = macos_module(TCP_KEEPINTVL=None)
    with structlog.testing.capture_logs() as logs:
        apply_keepalive(FakeSocket(), ka, platform="darwin", socket_module=macos_module())
        apply_keepalive(FakeSocket(), ka, platform="freebsd14", socket_module=unix)
        apply_keepalive(FakeSocket(), ka, platform="darwin", socket_module=sparse_macos)
        apply_keepalive(FakeSocket(), ka, platform="freebsd14", socket_module=unix)
        apply_keepalive(FakeSocket(), ka, platform="darwin", socket_module=sparse_macos)
    assert [(e["platform"], e["option"]) for e in unsupported_events(logs)] == [
        ("darwin", "TCP_USER_TIMEOUT"),
        ("freebsd14", "TCP_USER_TIMEOUT"),
        ("darwin", "TCP_KEEPINTVL"),  # new on darwin; its TCP_USER_TIMEOUT was said already
    ]


def test_forget_warnings_logs_again() -> None:
    with structlog.testing.capture_logs() as logs:
        apply_keepalive(FakeSocket(), UT_ONLY, platform="darwin", socket_module=macos_module())
        apply_keepalive(FakeSocket(), UT_ONLY, platform="darwin", socket_module=macos_module())
        _forget_warnings()
        apply_keepalive(FakeSocket(), UT_ONLY, platform="darwin", socket_module=macos_module())
    assert len(unsupported_events(logs)) == 2


def test_strict_failure_does_not_use_up_the_warning() -> None:
    strict = KernelKeepalive(user_timeout=30, strict=True)
    with pytest.raises(PolicyError):
        apply_keepalive(FakeSocket(), strict, platform="darwin", socket_module=macos_module())
    with structlog.testing.capture_logs() as logs:
        apply_keepalive(FakeSocket(), UT_ONLY, platform="darwin", socket_module=macos_module())
    assert len(unsupported_events(logs)) == 1


# --------------------------------------------------------------------------------------
# Linear retransmission timeouts (TCP_THIN_LINEAR_TIMEOUTS): Linux only
# --------------------------------------------------------------------------------------


LINEAR = KernelKeepalive(linear_timeouts=True)


@on_linux
def test_linux_linear_timeouts_are_set_and_read_back(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, server = tcp_pair
    assert client.getsockopt(socket.IPPROTO_TCP, LINUX_TCP_THIN_LINEAR_TIMEOUTS) == 0
    with structlog.testing.capture_logs() as logs:
        report = apply_keepalive(client, KernelKeepalive(user_timeout=5, linear_timeouts=True))
    assert client.getsockopt(socket.IPPROTO_TCP, LINUX_TCP_THIN_LINEAR_TIMEOUTS) == 1
    assert [(o.option, o.setting, o.value, o.unit, o.read_back) for o in report.applied] == [
        ("TCP_USER_TIMEOUT", "user_timeout", 5000, "ms", 5000),
        ("TCP_THIN_LINEAR_TIMEOUTS", "linear_timeouts", 1, "on/off", 1),
    ]
    assert all(option.verified for option in report.applied)
    assert report.complete
    assert unsupported_events(logs) == []
    assert "  applied      TCP_THIN_LINEAR_TIMEOUTS=on" in report.describe().splitlines()
    # Nothing else is touched, and the other end keeps the host's default.
    assert client.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
    assert server.getsockopt(socket.IPPROTO_TCP, LINUX_TCP_THIN_LINEAR_TIMEOUTS) == 0


@on_linux
def test_linux_notes_when_the_congestion_control_makes_linear_timeouts_inert(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, _ = tcp_pair
    with open("/proc/sys/net/ipv4/tcp_available_congestion_control") as file:
        available = file.read().split()
    for algorithm in ("bbr", "reno"):
        if algorithm not in available:
            continue
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, algorithm.encode())
        except OSError:  # not loadable here, or not allowed (tcp_allowed_congestion_control)
            continue
        report = apply_keepalive(client, LINEAR)
        inert = [note for note in report.notes if "has no effect" in note]
        assert inert == ([] if algorithm == "reno" else [INERT_UNDER_BBR]), algorithm


INERT_UNDER_BBR = (
    "TCP_THIN_LINEAR_TIMEOUTS has no effect under congestion control 'bbr': it never sets a "
    "slow-start threshold, so Linux never counts the stream as thin and retransmissions "
    "still back off exponentially (cubic and reno do set one)"
)


class CongestionSocket(FakeSocket):
    """A fake socket that also answers ``getsockopt(level, TCP_CONGESTION, buflen)``."""

    def __init__(self, algorithm: bytes | OSError) -> None:
        super().__init__()
        self.algorithm = algorithm

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> Any:
        if buflen is None:
            return super().getsockopt(level, optname)
        self.calls.append(("getsockopt", level, optname, buflen))
        if isinstance(self.algorithm, OSError):
            raise self.algorithm
        return self.algorithm.ljust(buflen, b"\0")


def test_linear_timeouts_use_the_header_value_when_the_module_lacks_the_name() -> None:
    sock = CongestionSocket(b"cubic")
    report = apply_keepalive(sock, LINEAR, platform="linux", socket_module=fake_module())
    assert sock.sets() == [("setsockopt", IPPROTO_TCP, LINUX_TCP_THIN_LINEAR_TIMEOUTS, 1)]
    assert LINUX_TCP_THIN_LINEAR_TIMEOUTS == 16
    assert report.complete
    assert report.notes == ()  # cubic sets ssthresh: the option works
    # The congestion control is read with TCP_CONGESTION (13) when the module lacks it.
    assert ("getsockopt", IPPROTO_TCP, 13, 16) in sock.calls
    assert report.idle_detection_time is None
    assert report.unacked_detection_time is None


@pytest.mark.parametrize(
    ("algorithm", "inert"),
    [
        (b"bbr", True),
        (b"cubic", False),
        (b"reno", False),
        (b"", False),  # unknown: nothing is claimed
        (OSError(errno.ENOPROTOOPT, "no TCP_CONGESTION"), False),
    ],
)
def test_linux_notes_linear_timeouts_under_bbr(algorithm: bytes | OSError, inert: bool) -> None:
    sock = CongestionSocket(algorithm)
    module = fake_module(TCP_THIN_LINEAR_TIMEOUTS=16, TCP_CONGESTION=13)
    report = apply_keepalive(sock, LINEAR, platform="linux", socket_module=module)
    assert report.complete  # applied either way: it is the kernel that ignores it
    assert report.notes == ((INERT_UNDER_BBR,) if inert else ())
    if inert:
        assert f"  note         {INERT_UNDER_BBR}" in report.describe().splitlines()


def test_congestion_control_is_not_read_when_linear_timeouts_are_not_asked() -> None:
    sock = CongestionSocket(b"bbr")
    module = fake_module(TCP_USER_TIMEOUT=18, TCP_CONGESTION=13)
    report = apply_keepalive(sock, UT_ONLY, platform="linux", socket_module=module)
    assert report.notes == ()
    assert not any(len(call) == 4 and call[0] == "getsockopt" for call in sock.calls)


@pytest.mark.parametrize(
    ("platform", "module"),
    [
        ("darwin", macos_module()),
        ("win32", fake_module(SIO_KEEPALIVE_VALS=WIN_SIO_KEEPALIVE_VALS)),
        ("freebsd14", fake_module(TCP_KEEPIDLE=256, TCP_KEEPINTVL=512, TCP_KEEPCNT=1024)),
    ],
)
def test_linear_timeouts_are_unsupported_off_linux(platform: str, module: SimpleNamespace) -> None:
    sock = FakeSocket(with_ioctl=True)
    with structlog.testing.capture_logs() as logs:
        report = apply_keepalive(sock, LINEAR, platform=platform, socket_module=module)
        apply_keepalive(FakeSocket(), LINEAR, platform=platform, socket_module=module)
    assert sock.calls == []
    [missing] = report.unsupported
    assert (missing.option, missing.setting) == ("TCP_THIN_LINEAR_TIMEOUTS", "linear_timeouts")
    assert missing.reason == (
        "a Linux-only option; retransmissions back off exponentially (RTO doubling)"
    )
    assert not report.complete
    [event] = unsupported_events(logs)  # once per process, however many sockets
    assert (event["option"], event["platform"]) == ("TCP_THIN_LINEAR_TIMEOUTS", platform)
    assert "unsupported  TCP_THIN_LINEAR_TIMEOUTS (linear_timeouts)" in report.describe()


def test_linear_timeouts_off_linux_in_strict_mode_raise_before_touching_the_socket() -> None:
    sock = FakeSocket()
    strict = KernelKeepalive(user_timeout=30, linear_timeouts=True, strict=True)
    module = fake_module(TCP_USER_TIMEOUT=18)
    with pytest.raises(
        PolicyError,
        match=r"TCP_THIN_LINEAR_TIMEOUTS \(linear_timeouts\) is not supported on freebsd14",
    ):
        apply_keepalive(sock, strict, platform="freebsd14", socket_module=module)
    assert sock.calls == []


# --------------------------------------------------------------------------------------
# thin_stream_congestion: a BBR socket is switched so that linear timeouts apply
# --------------------------------------------------------------------------------------


THIN = KernelKeepalive(linear_timeouts=True, thin_stream_congestion="reno")
CC_MODULE = fake_module(TCP_THIN_LINEAR_TIMEOUTS=16, TCP_CONGESTION=13)
SWITCHED = (
    "congestion control switched from 'bbr' to 'reno' (thin_stream_congestion) so that "
    "TCP_THIN_LINEAR_TIMEOUTS applies: Linux never counts a 'bbr' stream as thin; "
    "thin_stream_congestion=None keeps it"
)


class SwitchableSocket(CongestionSocket):
    """A fake socket whose congestion control can be switched (``TCP_CONGESTION`` = 13).

    ``refuse_switch`` makes the switch fail with that errno, as the kernel's
    ``tcp_set_congestion_control()`` does; ``reads_as`` makes the read-back lie.
    """

    def __init__(
        self, algorithm: bytes, *, refuse_switch: int | None = None, reads_as: bytes | None = None
    ) -> None:
        super().__init__(algorithm)
        self.refuse_switch = refuse_switch
        self.reads_as = reads_as

    def setsockopt(self, level: int, optname: int, value: Any) -> None:
        if optname != 13:
            super().setsockopt(level, optname, value)
            return
        self.calls.append(("setsockopt", level, optname, value))
        if self.refuse_switch is not None:
            raise OSError(self.refuse_switch, os.strerror(self.refuse_switch))
        assert isinstance(value, bytes)
        self.algorithm = self.reads_as if self.reads_as is not None else value

    def switches(self) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == "setsockopt" and call[2] == 13]


def test_a_bbr_socket_is_switched_and_the_report_shows_it() -> None:
    sock = SwitchableSocket(b"bbr")
    with structlog.testing.capture_logs() as logs:
        report = apply_keepalive(sock, THIN, platform="linux", socket_module=CC_MODULE)
    assert sock.switches() == [("setsockopt", IPPROTO_TCP, 13, b"reno")]
    assert sock.algorithm == b"reno"
    assert [(o.option, o.setting, o.value, o.unit, o.read_back) for o in report.applied] == [
        ("TCP_THIN_LINEAR_TIMEOUTS", "linear_timeouts", 1, "on/off", 1),
        ("TCP_CONGESTION", "thin_stream_congestion", "reno", "name", "reno"),
    ]
    assert all(option.verified for option in report.applied)
    assert report.complete
    # The switch is noted, and nothing claims the linear timeouts are inert any more.
    assert report.notes == (SWITCHED,)
    assert unsupported_events(logs) == []
    assert report.describe().splitlines()[1:4] == [
        "  applied      TCP_THIN_LINEAR_TIMEOUTS=on",
        "  applied      TCP_CONGESTION=reno",
        f"  note         {SWITCHED}",
    ]
    assert msgspec.json.decode(msgspec.json.encode(report), type=KeepaliveReport) == report


def test_the_switch_uses_the_header_value_when_the_module_lacks_the_name() -> None:
    sock = SwitchableSocket(b"bbr")
    report = apply_keepalive(sock, THIN, platform="linux", socket_module=fake_module())
    assert sock.switches() == [("setsockopt", IPPROTO_TCP, LINUX_TCP_CONGESTION, b"reno")]
    assert LINUX_TCP_CONGESTION == 13
    assert report.complete


@pytest.mark.parametrize("algorithm", [b"cubic", b"reno", b"dctcp", b""])
def test_a_socket_that_can_be_thin_is_never_touched(algorithm: bytes) -> None:
    sock = SwitchableSocket(algorithm)
    report = apply_keepalive(sock, THIN, platform="linux", socket_module=CC_MODULE)
    assert sock.switches() == []
    assert sock.algorithm == algorithm
    assert [o.option for o in report.applied] == ["TCP_THIN_LINEAR_TIMEOUTS"]
    assert report.notes == ()
    assert report.complete


def test_an_unreadable_congestion_control_is_never_switched() -> None:
    sock = SwitchableSocket(b"bbr")
    sock.algorithm = OSError(errno.ENOPROTOOPT, "no TCP_CONGESTION")  # type: ignore[assignment]
    report = apply_keepalive(sock, THIN, platform="linux", socket_module=CC_MODULE)
    assert sock.switches() == []
    assert [o.option for o in report.applied] == ["TCP_THIN_LINEAR_TIMEOUTS"]
    assert report.notes == ()


def test_thin_stream_congestion_none_leaves_a_bbr_socket_alone_and_says_it_is_inert() -> None:
    sock = SwitchableSocket(b"bbr")
    report = apply_keepalive(sock, LINEAR, platform="linux", socket_module=CC_MODULE)
    assert LINEAR.thin_stream_congestion is None
    assert sock.switches() == []
    assert sock.algorithm == b"bbr"
    assert [o.option for o in report.applied] == ["TCP_THIN_LINEAR_TIMEOUTS"]
    assert report.notes == (INERT_UNDER_BBR,)


def test_without_linear_timeouts_the_congestion_control_is_not_even_read() -> None:
    sock = SwitchableSocket(b"bbr")
    ka = KernelKeepalive(user_timeout=5, thin_stream_congestion="reno")
    module = fake_module(TCP_USER_TIMEOUT=18, TCP_CONGESTION=13)
    report = apply_keepalive(sock, ka, platform="linux", socket_module=module)
    assert sock.switches() == []
    assert not any(len(call) == 4 and call[0] == "getsockopt" for call in sock.calls)
    assert [o.option for o in report.applied] == ["TCP_USER_TIMEOUT"]
    assert report.notes == ()


def test_no_switch_when_the_kernel_refused_the_linear_timeouts() -> None:
    sock = SwitchableSocket(b"bbr")
    sock.refuse = {(IPPROTO_TCP, 16): errno.ENOPROTOOPT}
    report = apply_keepalive(sock, THIN, platform="linux", socket_module=CC_MODULE)
    assert sock.switches() == []
    assert [u.option for u in report.unsupported] == ["TCP_THIN_LINEAR_TIMEOUTS"]


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (
            errno.EPERM,
            "the kernel refused 'reno' (Operation not permitted): it is not in "
            "net.ipv4.tcp_allowed_congestion_control and the process lacks CAP_NET_ADMIN; "
            "the socket keeps 'bbr', under which TCP_THIN_LINEAR_TIMEOUTS has no effect",
        ),
        (
            errno.ENOENT,
            "the kernel refused 'reno' (No such file or directory): it is not available here "
            "(see net.ipv4.tcp_available_congestion_control); the socket keeps 'bbr', under "
            "which TCP_THIN_LINEAR_TIMEOUTS has no effect",
        ),
        (
            errno.EBUSY,
            "the kernel refused 'reno' (Device or resource busy); the socket keeps 'bbr', "
            "under which TCP_THIN_LINEAR_TIMEOUTS has no effect",
        ),
    ],
)
def test_a_refused_switch_is_reported_not_raised(code: int, reason: str) -> None:
    sock = SwitchableSocket(b"bbr", refuse_switch=code)
    with structlog.testing.capture_logs() as logs:
        report = apply_keepalive(sock, THIN, platform="linux", socket_module=CC_MODULE)
        apply_keepalive(
            SwitchableSocket(b"bbr", refuse_switch=code),
            THIN,
            platform="linux",
            socket_module=CC_MODULE,
        )
    assert sock.switches() == [("setsockopt", IPPROTO_TCP, 13, b"reno")]
    assert [o.option for o in report.applied] == ["TCP_THIN_LINEAR_TIMEOUTS"]
    [missing] = report.unsupported
    assert (missing.option, missing.setting, missing.reason) == (
        "TCP_CONGESTION",
        "thin_stream_congestion",
        reason,
    )
    assert not report.complete
    # The socket is still BBR: the note that linear timeouts are inert stays.
    assert report.notes == (INERT_UNDER_BBR,)
    assert f"  unsupported  TCP_CONGESTION (thin_stream_congestion): {reason}" in (
        report.describe().splitlines()
    )
    [event] = unsupported_events(logs)  # once per process, however many sockets
    assert (event["option"], event["setting"]) == ("TCP_CONGESTION", "thin_stream_congestion")


def test_a_refused_switch_in_strict_mode_raises() -> None:
    sock = SwitchableSocket(b"bbr", refuse_switch=errno.EPERM)
    strict = KernelKeepalive(linear_timeouts=True, thin_stream_congestion="reno", strict=True)
    with pytest.raises(
        PolicyError,
        match=r"^TCP_CONGESTION \(thin_stream_congestion\) could not be applied on linux: the "
        r"kernel refused 'reno' \(Operation not permitted\)",
    ):
        apply_keepalive(sock, strict, platform="linux", socket_module=CC_MODULE)


def test_other_errors_of_the_switch_propagate() -> None:
    sock = SwitchableSocket(b"bbr", refuse_switch=errno.EBADF)
    with pytest.raises(OSError, match="Bad file descriptor") as info:
        apply_keepalive(sock, THIN, platform="linux", socket_module=CC_MODULE)
    assert info.value.errno == errno.EBADF


def test_a_switch_that_reads_back_otherwise_is_noted() -> None:
    sock = SwitchableSocket(b"bbr", reads_as=b"cubic")
    report = apply_keepalive(sock, THIN, platform="linux", socket_module=CC_MODULE)
    [switch] = [o for o in report.applied if o.option == "TCP_CONGESTION"]
    assert (switch.value, switch.read_back, switch.verified) == ("reno", "cubic", False)
    assert "TCP_CONGESTION was set to reno but reads back cubic" in report.notes
    assert "  applied      TCP_CONGESTION=reno (reads back cubic)" in report.describe()


@pytest.mark.parametrize(
    ("platform", "module"),
    [
        ("darwin", macos_module()),
        ("win32", fake_module(SIO_KEEPALIVE_VALS=WIN_SIO_KEEPALIVE_VALS)),
        ("freebsd14", fake_module(TCP_CONGESTION=64)),
    ],
)
def test_thin_stream_congestion_is_linux_only(platform: str, module: SimpleNamespace) -> None:
    sock = SwitchableSocket(b"bbr")
    report = apply_keepalive(sock, THIN, platform=platform, socket_module=module)
    assert sock.calls == []
    assert [u.option for u in report.unsupported] == ["TCP_THIN_LINEAR_TIMEOUTS"]


@pytest.fixture
def bbr_pair(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> tuple[socket.socket, socket.socket]:
    """A loopback pair whose sockets use BBR, as this host's default gives them."""
    client, server = tcp_pair
    found = congestion_of(client)
    if found != "bbr":
        pytest.skip(f"this host's new sockets use {found!r}, not bbr (the switch is for bbr)")
    return client, server


def congestion_of(sock: socket.socket) -> str:
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
    return raw.split(b"\0", 1)[0].decode()


@on_linux
def test_linux_a_congestion_switch_moves_a_bbr_socket_to_reno(
    bbr_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, server = bbr_pair
    options = SocketOptions(congestion="reno", user_timeout=True, rto_max=None).resolve(3.0)
    assert options is not None
    with structlog.testing.capture_logs() as logs:
        report = apply_keepalive(client, options)
    assert congestion_of(client) == "reno"
    assert client.getsockopt(socket.IPPROTO_TCP, LINUX_TCP_THIN_LINEAR_TIMEOUTS) == 1
    assert [(o.option, o.value, o.read_back) for o in report.applied] == [
        ("TCP_USER_TIMEOUT", 3000, 3000),
        ("TCP_THIN_LINEAR_TIMEOUTS", 1, 1),
        ("TCP_CONGESTION", "reno", "reno"),
    ]
    assert report.complete
    assert report.notes == (SWITCHED,)
    assert unsupported_events(logs) == []
    # Only this socket: the other end keeps the host's default.
    assert congestion_of(server) == "bbr"
    # The connection still works after the switch.
    client.sendall(b"ping")
    assert server.recv(4) == b"ping"


@on_linux
def test_linux_the_default_socket_options_keep_bbr(
    bbr_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, _ = bbr_pair
    options = SocketOptions(rto_max=None).resolve(3.0)
    assert options is not None
    report = apply_keepalive(client, options)
    assert congestion_of(client) == "bbr"
    assert client.getsockopt(socket.IPPROTO_TCP, LINUX_TCP_THIN_LINEAR_TIMEOUTS) == 1
    assert "TCP_CONGESTION" not in [o.option for o in report.applied]
    assert report.notes == (INERT_UNDER_BBR,)


@on_linux
def test_linux_a_socket_that_is_not_bbr_is_left_alone(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, _ = tcp_pair
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"reno")  # always allowed
    options = SocketOptions(congestion="cubic", user_timeout=True, rto_max=None).resolve(3.0)
    assert options is not None
    report = apply_keepalive(client, options)
    assert congestion_of(client) == "reno"
    assert "TCP_CONGESTION" not in [o.option for o in report.applied]
    assert report.notes == ()


@on_linux
def test_linux_an_unavailable_algorithm_is_reported_not_raised(
    bbr_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, _ = bbr_pair
    ka = KernelKeepalive(linear_timeouts=True, thin_stream_congestion="nosuchcc")
    with structlog.testing.capture_logs() as logs:
        report = apply_keepalive(client, ka)
    assert congestion_of(client) == "bbr"
    [missing] = report.unsupported
    assert (missing.option, missing.setting) == ("TCP_CONGESTION", "thin_stream_congestion")
    assert missing.reason.startswith("the kernel refused 'nosuchcc' (No such file or directory)")
    assert report.notes == (INERT_UNDER_BBR,)
    assert [event["option"] for event in unsupported_events(logs)] == ["TCP_CONGESTION"]


# --------------------------------------------------------------------------------------
# TCP_USER_TIMEOUT against TCP_KEEPCNT on Linux
# --------------------------------------------------------------------------------------


UNIX = {"TCP_KEEPIDLE": 4, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 6, "TCP_USER_TIMEOUT": 18}


@pytest.mark.parametrize(
    ("user_timeout", "probes", "detection"),
    [(2, 1, 2), (3, 2, 3), (3.5, 3, 4), (4, 3, 4), (30, 29, 30)],
)
def test_user_timeout_decides_how_many_probes_linux_sends(
    user_timeout: float, probes: int, detection: float
) -> None:
    ka = KernelKeepalive(idle=1, interval=1, count=3, user_timeout=user_timeout)
    report = apply_keepalive(FakeSocket(), ka, platform="linux", socket_module=fake_module(**UNIX))
    assert report.idle_detection_time == detection
    short = [note for note in report.notes if "false death" in note]
    if probes < 3:
        assert short == [
            f"TCP_USER_TIMEOUT ({user_timeout:g} s) is shorter than idle + interval * count "
            f"(4 s): an idle connection is dropped after {probes} unanswered probe(s), not 3, "
            f"so on a lossy link {probes} lost probe(s) in a row are a false death; a "
            "user_timeout of at least 4 s keeps the count"
        ]
    else:
        assert short == []


def test_user_timeout_shorter_than_the_probing_is_not_noted_off_linux() -> None:
    ka = KernelKeepalive(idle=1, interval=1, count=3, user_timeout=2)
    report = apply_keepalive(
        FakeSocket(), ka, platform="freebsd14", socket_module=fake_module(**UNIX)
    )
    assert report.idle_detection_time == 4  # TCP_KEEPCNT rules off Linux
    assert not any("false death" in note for note in report.notes)


# ---------------------------------------------------------------- TCP_RTO_MAX_MS

RTO_MAX = KernelKeepalive(rto_max=1.5)


def test_linux_caps_the_rto_and_bounds_unacknowledged_data_by_it() -> None:
    sock = FakeSocket()
    report = apply_keepalive(sock, RTO_MAX, platform="linux", socket_module=fake_module())
    assert sock.sets() == [("setsockopt", IPPROTO_TCP, LINUX_TCP_RTO_MAX_MS, 1500)]
    [option] = report.applied
    assert (option.option, option.value, option.unit, option.verified) == (
        "TCP_RTO_MAX_MS",
        1500,
        "ms",
        True,
    )
    # tcp_retries2 = 15 retransmissions, doubling from 0.2 s up to the cap.
    assert report.unacked_detection_time == pytest.approx(
        linux_retransmission_timeout(15, rto_max=1.5)
    )


def test_a_kernel_without_the_option_reports_it_unsupported() -> None:
    sock = FakeSocket(refuse={(IPPROTO_TCP, LINUX_TCP_RTO_MAX_MS): errno.ENOPROTOOPT})
    report = apply_keepalive(sock, RTO_MAX, platform="linux", socket_module=fake_module())
    [missing] = report.unsupported
    assert (missing.option, missing.setting) == ("TCP_RTO_MAX_MS", "rto_max")
    assert report.unacked_detection_time is None


@pytest.mark.parametrize("platform", ["darwin", "win32", "freebsd14"])
def test_the_rto_cap_is_unsupported_off_linux(platform: str) -> None:
    sock = FakeSocket(with_ioctl=True)
    report = apply_keepalive(sock, RTO_MAX, platform=platform, socket_module=fake_module())
    assert sock.calls == []
    [missing] = report.unsupported
    assert (missing.option, missing.setting) == ("TCP_RTO_MAX_MS", "rto_max")


@on_linux
def test_linux_a_real_socket_takes_the_rto_cap() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        report = apply_keepalive(sock, RTO_MAX)
        if not report.complete:
            pytest.skip("this kernel has no TCP_RTO_MAX_MS (Linux 6.15 and later)")
        assert sock.getsockopt(socket.IPPROTO_TCP, LINUX_TCP_RTO_MAX_MS) == 1500
