"""``pulsewire demo``: inject real faults into real peers; pulsewire against kernel keepalive.

The command's options and output; :mod:`pulsewire.cli.demo_runner` runs the demo and
:mod:`pulsewire.cli.demo_view` draws it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from pulsewire.cli.demo_netns import NetnsPeers, unavailable
from pulsewire.cli.demo_runner import QUICK_POLICY, DemoResult, Reporter, run_demo, stall_for
from pulsewire.cli.demo_view import LiveView, PlainView, make_console, print_results
from pulsewire.cli.options import (
    EXIT_USAGE,
    CliError,
    add_policy_options,
    add_verbose_option,
    policy_from_args,
    policy_label,
    positive_float,
)
from pulsewire.cli.peer import TIGHTEST_KEEPALIVE

__all__ = ["add_parser", "run"]

DESCRIPTION = """\
Start a pulsewire server and one peer process per fault on loopback, then inject real
faults into the peers at once and show, live, how pulsewire and kernel keepalive (tuned as
tightly as the kernel allows: 1 s idle, 1 s interval, 1 probe, on a plain socket each peer
also holds) notice them:

  frozen   SIGSTOP: alive kernel, silent process     pulsewire: timeout
  killed   SIGKILL: the kernel closes with FIN       pulsewire: eof (or reset)
  reset    SO_LINGER 0 + close: RST                   pulsewire: reset
  stalled  the peer's event loop blocks (time.sleep)  pulsewire: suspect, then alive
           halfway between suspect_after and timeout (2.5 s with the default policy)

No root and no arguments needed; about 6 s with the default policy (a policy's timeout
sets the pace: --policy nat takes about 85 s).

With --netns (Linux, root, iproute2 and nftables) two more faults need a real network
between two hosts, which the demo builds from network namespaces:

  blackholed  every packet between the hosts dropped     pulsewire: timeout
  rebooted    the peer's host crashes and comes back      pulsewire: reset
"""

EPILOG = """\
exit codes: 0 every fault got its expected pulsewire verdict; 1 one did not, or the demo
could not run; 2 bad arguments (a one-line error on stderr).
"""

#: Policies slower than this many seconds get a notice that the demo will take a while.
_SLOW = 15.0


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "demo",
        help="inject real faults into real peers; pulsewire against kernel keepalive",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    add_policy_options(parser, default=None)
    parser.add_argument(
        "--stall",
        type=positive_float,
        metavar="SECONDS",
        help="how long the stalled peer blocks its event loop (default: halfway between "
        "the policy's suspect_after and timeout)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a fast policy (ping after 0.3 s of silence, dead after 1.5 s) and a short "
        "baseline: every fault still injected, about 6 s in all",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the results as JSON on stdout (no live view; logs only on stderr)",
    )
    parser.add_argument(
        "--netns",
        action="store_true",
        help="also a blackholed peer and a crashed-and-rebooted host, in network "
        "namespaces (root, Linux)",
    )
    add_verbose_option(parser)
    parser.set_defaults(run=run)


def _headline(label: str, policy_text: str) -> str:
    keepalive = TIGHTEST_KEEPALIVE
    return (
        f"pulsewire demo, policy {label}\n"
        f"{policy_text}\n"
        f"kernel keepalive on each peer's plain socket: {keepalive.idle:g} s idle, "
        f"{keepalive.interval:g} s interval, {keepalive.count} probe "
        f"(an idle dead peer is dropped within {keepalive.nominal_detection_time:g} s)"
    )


def run(args: argparse.Namespace) -> int:
    if sys.platform == "win32":
        raise CliError("the demo needs POSIX signals (SIGSTOP, SIGKILL): run it on Linux or macOS")
    if args.quick and args.policy is not None:
        raise CliError("--quick brings its own policy: give either --quick or --policy", EXIT_USAGE)
    if args.quick:
        policy = policy_from_args(args, base=QUICK_POLICY)
        label = "quick" + policy_label(args)[len("default") :]
    else:
        args.policy = args.policy or "default"
        policy = policy_from_args(args)
        label = policy_label(args)
    stall = args.stall if args.stall is not None else stall_for(policy)
    remote: NetnsPeers | None = None
    if args.netns:
        reason = unavailable()
        if reason is not None:
            raise CliError(f"--netns is not available here: {reason}")
        remote = NetnsPeers()

    console = make_console()
    reporter: Reporter | None = None
    if not args.json:
        headline = _headline(label, policy.describe())
        if max(policy.timeout, stall) > _SLOW:
            headline += (
                f"\nThis policy takes up to {max(policy.timeout, stall):g} s to decide: "
                "the demo lasts that long."
            )
        view = LiveView if console.is_terminal else PlainView
        reporter = view(console, headline)
    result: DemoResult = asyncio.run(
        run_demo(
            policy,
            policy_name=label,
            stall=stall,
            quick=args.quick,
            reporter=reporter,
            remote=remote,
        )
    )
    if args.json:
        print(json.dumps(result.to_builtins(), indent=2))
    else:
        print_results(console, result)
    return 0 if result.ok else 1
