"""``pulsewire kernel``: this host's keepalive settings and what they detect, vs pulsewire."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from typing import Any

import msgspec

from pulsewire.cli.options import (
    EXIT_USAGE,
    PRESET_EXPRESSIONS,
    PRESETS,
    CliError,
    positive_float,
)
from pulsewire.cli.peer import TIGHTEST_KEEPALIVE
from pulsewire.core.keepalive import SocketOptions
from pulsewire.core.policy import Policy
from pulsewire.errors import PulsewireError
from pulsewire.kernel import (
    NEVER_THIN_CONGESTION,
    TCP_RTO_MAX,
    TCP_RTO_MIN,
    HostTcpFacts,
    KeepaliveReport,
    apply_keepalive,
)
from pulsewire.kernel.congestion import read_congestion
from pulsewire.kernel.host import format_seconds, human_duration

__all__ = ["add_parser", "report", "run"]

DESCRIPTION = """\
Read this host's TCP keepalive and retransmission settings (Linux: /proc/sys/net/ipv4,
per network namespace) and say how long its kernel takes, at worst, to notice a dead
peer: on an idle connection with SO_KEEPALIVE on (and off, its default), on a connection
with data in flight, and with keepalive tuned as tightly as a socket allows. Then whether
linear retransmission timeouts work under this host's congestion control, and what
pulsewire does about it (tried on a throwaway socket), and the pulsewire policies that
detect a dead peer in seconds, whatever the connection is doing, including a peer process
that is frozen while its kernel still answers.
"""

EPILOG = """\
exit codes: 0 success (settings this host does not have are shown as unknown);
2 bad arguments (a one-line error on stderr).

--json prints the same as one JSON object: "host" (the sysctls as read), "kernel" (worst
cases in seconds, null when unknown or never), "tightest_keepalive" (what the kernel
applied of 1 s / 1 s / 1 probe), "linear_timeouts" (the default SocketOptions applied to a
throwaway socket: the congestion control before and after, and the report) and
"pulsewire" (one entry per policy).
"""


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "kernel",
        help="this host's keepalive settings, their worst-case detection times, vs pulsewire",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    parser.add_argument(
        "--within",
        type=positive_float,
        default=TIGHTEST_KEEPALIVE.nominal_detection_time,
        metavar="SECONDS",
        help="show Policy.for_detection(SECONDS) too (default: %(default)g, the tightest "
        "kernel keepalive's idle detection time)",
    )
    parser.add_argument(
        "--loss",
        type=float,
        default=0.01,
        metavar="FRACTION",
        help="packet loss expected on the path, for --within (default: 0.01)",
    )
    parser.add_argument(
        "--proc-root",
        default="/proc",
        metavar="PATH",
        help="where to read the sysctls (default: /proc)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def _tightest_keepalive() -> KeepaliveReport | None:
    """Apply the tightest keepalive to a throwaway TCP socket: what does this kernel take?"""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            return apply_keepalive(sock, TIGHTEST_KEEPALIVE)
    except (OSError, PulsewireError):
        return None


def _linear_timeouts() -> dict[str, Any] | None:
    """Apply the default socket options to a throwaway TCP socket: what happens here?

    The congestion control is read before and after, so that the output says whether the
    linear timeouts can work under it.
    """
    defaults = SocketOptions()
    options = defaults.resolve(Policy().timeout)
    assert options is not None  # the defaults ask for linear timeouts and an RTO cap
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            before = read_congestion(sock, socket)
            applied = apply_keepalive(sock, options)
            after = read_congestion(sock, socket)
    except (OSError, PulsewireError):
        return None
    linear = any(o.option == "TCP_THIN_LINEAR_TIMEOUTS" for o in applied.applied)
    return {
        "congestion": defaults.congestion,
        "congestion_before": before,
        "congestion_after": after,
        "in_effect": linear and after is not None and after not in NEVER_THIN_CONGESTION,
        "report": msgspec.to_builtins(applied),
    }


def _policy_entry(expression: str, policy: Policy) -> dict[str, Any]:
    floor = None if policy.adaptive is None else policy.adaptive.min_timeout
    return {
        "expression": expression,
        "interval": round(policy.interval, 6),
        "timeout": round(policy.timeout, 6),
        "min_timeout": floor,
        "description": policy.describe(),
        "policy": msgspec.to_builtins(policy),
    }


def report(facts: HostTcpFacts, within: float, loss: float) -> dict[str, Any]:
    """Everything ``pulsewire kernel`` says, as plain data (``--json`` prints it)."""
    try:
        detection = Policy.for_detection(within, loss=loss)
    except PulsewireError as error:
        raise CliError(str(error), EXIT_USAGE) from None
    policies = [_policy_entry(f"Policy.for_detection({within:g})", detection)]
    policies += [_policy_entry(PRESET_EXPRESSIONS[name], make()) for name, make in PRESETS.items()]
    tightest = _tightest_keepalive()
    return {
        "host": msgspec.to_builtins(facts),
        "kernel": {
            "idle_keepalive_off": None,
            "idle_keepalive_on": facts.idle_detection_time(),
            "unacked_data": facts.unacked_detection_time(),
            "connect": facts.connect_timeout(),
            "tightest_keepalive_idle": None if tightest is None else tightest.idle_detection_time,
            "frozen_peer_process": None,
        },
        "tightest_keepalive": None if tightest is None else msgspec.to_builtins(tightest),
        "linear_timeouts": _linear_timeouts(),
        "pulsewire": policies,
    }


def _duration(seconds: float | None, unknown: str = "unknown") -> str:
    return unknown if seconds is None else human_duration(seconds)


def _dead_after(entry: dict[str, Any]) -> str:
    timeout = format_seconds(entry["timeout"])
    if entry["min_timeout"] is None:
        return f"{timeout} s"
    return f"{format_seconds(entry['min_timeout'])}-{timeout} s (adaptive)"


_SETTINGS = (
    ("tcp_keepalive_time", "keepalive_time", "s", "idle time before the first keepalive probe"),
    ("tcp_keepalive_intvl", "keepalive_intvl", "s", "time between unanswered probes"),
    ("tcp_keepalive_probes", "keepalive_probes", "", "unanswered probes before the drop"),
    ("tcp_retries2", "retries2", "", "retransmissions of unacknowledged data"),
    ("tcp_syn_retries", "syn_retries", "", "SYN retransmissions of connect()"),
    ("tcp_congestion_control", "congestion_control", "", "congestion control of new sockets"),
)


def _print_settings(facts: HostTcpFacts) -> None:
    where = os.path.join(facts.proc_root, "sys", "net", "ipv4")
    if len(facts.missing) == len(_SETTINGS):
        print(f"This host ({facts.platform}): no TCP settings readable at {where}")
        print("  (they are Linux sysctls: the kernel's worst cases below are unknown)")
        return
    print(f"This host ({facts.platform}), from {where} (per network namespace):")
    width = max(len(name) for name, *_ in _SETTINGS)
    for name, field, unit, meaning in _SETTINGS:
        value = getattr(facts, field)
        shown = "unknown" if value is None else f"{value}{' ' + unit if unit else ''}"
        print(f"  {name:<{width}} {shown:<8} {meaning}")
    rto_max = format_seconds(facts.rto_max if facts.rto_max is not None else TCP_RTO_MAX)
    rto_min = format_seconds(TCP_RTO_MIN)
    print(f"  (retransmission timeout: from {rto_min} s, doubling up to {rto_max} s)")


def _print_text(facts: HostTcpFacts, data: dict[str, Any]) -> None:
    kernel = data["kernel"]
    _print_settings(facts)
    print()
    print("Worst case for this host's kernel to notice a dead peer:")
    rows = [
        ("idle connection, SO_KEEPALIVE off (the default)", "never"),
        ("idle connection, SO_KEEPALIVE on", _duration(kernel["idle_keepalive_on"])),
        ("data in flight, unacknowledged", _duration(kernel["unacked_data"])),
        ("connect() to a silent host", _duration(kernel["connect"])),
        (
            "tightest keepalive a socket can ask (1 s, 1 s, 1 probe)",
            _duration(kernel["tightest_keepalive_idle"], "not available here")
            + ", idle connections only",
        ),
        ("a frozen or deadlocked peer process", "never: its kernel answers the probes"),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    print()
    _print_linear_timeouts(data["linear_timeouts"])
    print()
    print("pulsewire: dead after at most, whatever the connection is doing (frozen peers too):")
    entries = data["pulsewire"]
    width = max(len(entry["expression"]) for entry in entries)
    for entry in entries:
        print(
            f"  {entry['expression']:<{width}}  {_dead_after(entry):<22}  "
            f"pings an idle connection every {format_seconds(entry['interval'])} s"
        )


def _print_linear_timeouts(linear: dict[str, Any] | None) -> None:
    print("Linear retransmission timeouts (TCP_THIN_LINEAR_TIMEOUTS, on by default):")
    if linear is None:
        print("  unknown: a TCP socket could not be opened here")
        return
    report = linear["report"]
    missing = {entry["option"]: entry["reason"] for entry in report["unsupported"]}
    if "TCP_THIN_LINEAR_TIMEOUTS" in missing:
        print(f"  not available: {missing['TCP_THIN_LINEAR_TIMEOUTS']}")
        return
    before = linear["congestion_before"]
    if before is None:
        print("  the congestion control of a new socket cannot be read here")
    elif before not in NEVER_THIN_CONGESTION:
        print(f"  new sockets use {before}: a heartbeat counts as a thin stream, they apply")
    else:
        print(f"  new sockets use {before}: Linux never counts such a stream as thin, so they")
        print("  do nothing; pulsewire leaves congestion control alone unless asked:")
        print('  SocketOptions(congestion="reno") switches its own sockets so that they apply')
    print(f"  in effect for pulsewire's sockets: {'yes' if linear['in_effect'] else 'no'}")


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.loss < 1:
        raise CliError(f"--loss must be a fraction in [0, 1), got {args.loss:g}", EXIT_USAGE)
    facts = HostTcpFacts.read(args.proc_root, platform=sys.platform)
    data = report(facts, args.within, args.loss)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        _print_text(facts, data)
    return 0
