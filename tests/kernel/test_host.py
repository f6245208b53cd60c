"""Tests for pulsewire.kernel.host: the retransmission model and the host's TCP facts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from pulsewire.errors import PolicyError
from pulsewire.kernel import HostTcpFacts, linux_retransmission_timeout

on_linux = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="/proc/sys is Linux-only"
)


def make_proc(root: Path, **values: str) -> str:
    directory = root / "sys" / "net" / "ipv4"
    directory.mkdir(parents=True)
    for name, text in values.items():
        (directory / name).write_text(text)
    return str(root)


LINUX_DEFAULTS = {
    "tcp_keepalive_time": "7200\n",
    "tcp_keepalive_intvl": "75\n",
    "tcp_keepalive_probes": "9\n",
    "tcp_retries2": "15\n",
    "tcp_syn_retries": "6\n",
}


def test_retransmission_model_known_numbers() -> None:
    assert linux_retransmission_timeout(15) == pytest.approx(924.6)  # ip-sysctl.rst
    assert linux_retransmission_timeout(0) == pytest.approx(0.2)
    assert linux_retransmission_timeout(3) == pytest.approx(3.0)  # 0.2 + 0.4 + 0.8 + 1.6
    assert linux_retransmission_timeout(9) == pytest.approx(204.6)  # last doubling step
    assert linux_retransmission_timeout(10) == pytest.approx(324.6)  # first capped step
    assert linux_retransmission_timeout(6, rto_base=1.0) == pytest.approx(127)  # SYN
    assert linux_retransmission_timeout(15, rto_max=60) == pytest.approx(511 * 0.2 + 7 * 60)


@pytest.mark.parametrize(("rto_base", "rto_max"), [(0.2, 120.0), (1.0, 120.0), (0.2, 60.0)])
def test_retransmission_model_equals_the_capped_backoff_sum(
    rto_base: float, rto_max: float
) -> None:
    for retries in range(40):
        expected = sum(min(rto_base * 2**i, rto_max) for i in range(retries + 1))
        assert linux_retransmission_timeout(
            retries, rto_base=rto_base, rto_max=rto_max
        ) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retries": -1}, "retries must be a whole number >= 0"),
        ({"retries": 1.5}, "retries must be a whole number >= 0"),
        ({"retries": 3, "rto_base": 0}, "rto_base must be a positive number of seconds"),
        ({"retries": 3, "rto_max": 0.1}, r"rto_max must be a number of seconds >= rto_base"),
    ],
)
def test_retransmission_model_rejects_bad_input(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        linux_retransmission_timeout(**kwargs)


def test_host_facts_linux_defaults(tmp_path: Path) -> None:
    facts = HostTcpFacts.read(make_proc(tmp_path, **LINUX_DEFAULTS), platform="linux")
    assert facts == HostTcpFacts(
        platform="linux",
        proc_root=str(tmp_path),
        keepalive_time=7200,
        keepalive_intvl=75,
        keepalive_probes=9,
        retries2=15,
        syn_retries=6,
    )
    assert facts.idle_detection_time() == 7875  # 2 h 11 min 15 s
    assert facts.unacked_detection_time() == pytest.approx(924.6)  # ~15.4 min
    assert facts.connect_timeout() == pytest.approx(127)
    text = facts.describe()
    assert "7875 s (2 h 11 min 15 s)" in text
    assert "924.6 s (15 min 24.6 s)" in text
    assert "127 s (2 min 7 s)" in text
    assert "without SO_KEEPALIVE (off by default)" in text
    assert "missing" not in text


def test_host_facts_custom_values(tmp_path: Path) -> None:
    values = {
        "tcp_keepalive_time": "600",
        "tcp_keepalive_intvl": "10",
        "tcp_keepalive_probes": "5",
        "tcp_retries2": "8",
        "tcp_syn_retries": "3",
        "tcp_rto_max_ms": "60000",
    }
    facts = HostTcpFacts.read(make_proc(tmp_path, **values), platform="linux")
    assert facts.idle_detection_time() == 650
    assert facts.rto_max == 60
    assert facts.unacked_detection_time() == pytest.approx(511 * 0.2)  # below the cap
    assert facts.connect_timeout() == pytest.approx(15)  # 1 + 2 + 4 + 8
    assert "650 s (10 min 50 s)" in facts.describe()
    assert "doubling up to 60 s" in facts.describe()


def test_host_facts_missing_and_garbled_files(tmp_path: Path) -> None:
    values = {**LINUX_DEFAULTS, "tcp_keepalive_intvl": "not a number", "tcp_retries2": "-4"}
    del values["tcp_syn_retries"]
    facts = HostTcpFacts.read(make_proc(tmp_path, **values), platform="linux")
    assert facts.keepalive_intvl is None
    assert facts.retries2 is None
    assert facts.syn_retries is None
    assert facts.missing == ("tcp_keepalive_intvl", "tcp_retries2", "tcp_syn_retries")
    assert facts.idle_detection_time() is None
    assert facts.unacked_detection_time() is None
    assert facts.connect_timeout() is None
    text = facts.describe()
    assert "keepalive: unknown" in text
    assert "missing: tcp_keepalive_intvl, tcp_retries2, tcp_syn_retries" in text


def test_host_facts_without_proc(tmp_path: Path) -> None:
    facts = HostTcpFacts.read(str(tmp_path / "nowhere"), platform="darwin")
    assert facts.platform == "darwin"
    assert facts.missing == (
        "tcp_keepalive_time",
        "tcp_keepalive_intvl",
        "tcp_keepalive_probes",
        "tcp_retries2",
        "tcp_syn_retries",
    )
    assert facts.idle_detection_time() is None
    assert facts.describe().startswith("TCP facts for darwin: none could be read from")


@on_linux
def test_host_facts_from_the_real_proc() -> None:
    facts = HostTcpFacts.read()
    directory = Path("/proc/sys/net/ipv4")
    assert facts.platform == sys.platform
    assert facts.missing == ()
    assert facts.keepalive_time == int((directory / "tcp_keepalive_time").read_text())
    assert facts.keepalive_intvl == int((directory / "tcp_keepalive_intvl").read_text())
    assert facts.keepalive_probes == int((directory / "tcp_keepalive_probes").read_text())
    assert facts.retries2 == int((directory / "tcp_retries2").read_text())
    assert facts.syn_retries == int((directory / "tcp_syn_retries").read_text())
    assert facts.idle_detection_time() == (
        facts.keepalive_time + facts.keepalive_intvl * facts.keepalive_probes
    )
    rto_max = facts.rto_max or 120.0
    assert facts.unacked_detection_time() == pytest.approx(
        linux_retransmission_timeout(facts.retries2, rto_max=rto_max)
    )
    assert facts.describe().startswith("TCP facts for linux")
    congestion = (directory / "tcp_congestion_control").read_text().strip()
    assert facts.congestion_control == congestion
    allowed = (directory / "tcp_allowed_congestion_control").read_text().split()
    assert facts.allowed_congestion_control == tuple(allowed)


@pytest.mark.parametrize(
    ("algorithm", "line"),
    [
        (
            "bbr",
            "  congestion control: bbr (never counts as thin: TCP_THIN_LINEAR_TIMEOUTS has no "
            "effect under it)",
        ),
        (
            "cubic",
            "  congestion control: cubic (lets a heartbeat count as thin: "
            "TCP_THIN_LINEAR_TIMEOUTS applies)",
        ),
    ],
)
def test_host_facts_congestion_control(tmp_path: Path, algorithm: str, line: str) -> None:
    values = {
        **LINUX_DEFAULTS,
        "tcp_congestion_control": f"{algorithm}\n",
        "tcp_allowed_congestion_control": "reno bbr\n",
    }
    facts = HostTcpFacts.read(make_proc(tmp_path, **values), platform="linux")
    assert facts.congestion_control == algorithm
    assert facts.allowed_congestion_control == ("reno", "bbr")
    assert facts.missing == ()  # optional, like tcp_rto_max_ms
    assert line in facts.describe().splitlines()


def test_host_facts_without_congestion_control(tmp_path: Path) -> None:
    facts = HostTcpFacts.read(make_proc(tmp_path, **LINUX_DEFAULTS), platform="linux")
    assert (facts.congestion_control, facts.allowed_congestion_control) == (None, None)
    assert "congestion control" not in facts.describe()
