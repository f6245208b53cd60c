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
from pulsewire.core.keepalive import KernelKeepalive
from pulsewire.core.policy import Policy

__all__ = ["add_parser", "headline", "run"]

DESCRIPTION = """\
Start a pulsewire server and one peer process per fault on this machine, inject
real faults into the peers all at once, and show, live, how long pulsewire and
kernel keepalive each take to notice. Kernel keepalive (the operating system's
own check of an idle TCP connection) runs on a second, plain connection to each
peer, tuned as tightly as Linux allows: a probe after 1 s of silence, and the
connection dropped when that probe goes unanswered for 1 s.

  fault    what happens                          pulsewire should say
  frozen   SIGSTOP: the program stops; its       dead: no answer
           operating system still answers
  killed   SIGKILL: the OS closes its sockets    dead: connection closed
  reset    the peer resets its connections       dead: connection reset
  stalled  the peer's event loop blocks for      suspect, then alive again
           a while (halfway between suspect
           and dead: 2.5 s by default)

No root and no arguments needed: about 6 s with the default policy, 4.5 s with
--quick; a slower policy takes longer (--policy nat, dead after 80 s: 81 s).

With --netns (Linux, root, iproute2 and nftables), two more faults that need a
real network between two hosts, which the demo builds from network namespaces:

  blackholed  every packet between the hosts dropped   dead: no answer
  rebooted    the peer's host crashes and comes back   dead: connection reset
"""

EPILOG = """\
exit codes: 0 every fault got its expected pulsewire verdict; 1 one did not, or
the demo could not run; 2 bad arguments (a one-line error on stderr).
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
        "baseline: every fault still injected, about 4.5 s in all",
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


def _seconds(value: float) -> str:
    return f"{value:g} s"


def headline(label: str, policy: Policy, keepalive: KernelKeepalive = TIGHTEST_KEEPALIVE) -> str:
    """What the demo compares, in words: the policy and the kernel keepalive settings."""
    if policy.adaptive is None:
        dead = f"dead after {_seconds(policy.timeout)} of silence"
    else:
        dead = (
            f"dead after {_seconds(policy.adaptive.min_timeout)} to "
            f"{_seconds(policy.timeout)} of silence (adaptive: it learns the link, and "
            f"waits {_seconds(policy.timeout)} until it has timed {policy.adaptive.warmup} "
            "answers)"
        )
    probes = "1 probe goes" if keepalive.count == 1 else f"{keepalive.count} probes go"
    return (
        f"pulsewire demo, policy {label}\n"
        f"pulsewire pings a quiet peer about every {_seconds(policy.interval)}, calls it "
        f"suspect after {_seconds(policy.effective_suspect_after)} of silence and {dead}.\n"
        "Kernel keepalive, on a second, plain TCP connection to each peer, tuned as tightly "
        f"as Linux allows: a probe after {_seconds(keepalive.idle or 0)} of silence, the "
        f"connection dropped when {probes} unanswered for {_seconds(keepalive.interval or 0)} "
        f"({_seconds(keepalive.nominal_detection_time or 0)} of silence in all)."
    )


def _load_view() -> Any:
    """:mod:`pulsewire.cli.demo_view`, which needs rich (the ``cli`` extra)."""
    try:
        from pulsewire.cli import demo_view
    except ImportError as error:
        if (error.name or "").partition(".")[0] != "rich":
            raise
        raise CliError(
            "the live view needs the 'rich' package: pip install 'pulsewire[cli]' "
            "(or run with --json, which does not)"
        ) from None
    return demo_view


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

    view: Any = None if args.json else _load_view()
    reporter: Reporter | None = None
    if view is not None:
        console = view.make_console()
        text = headline(label, policy)
        if max(policy.timeout, stall) > _SLOW:
            text += (
                f"\nThis policy takes up to {max(policy.timeout, stall):g} s to decide: "
                "the demo lasts that long."
            )
        reporter = (view.LiveView if console.is_terminal else view.PlainView)(console, text)
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
    if view is None:
        print(json.dumps(result.to_builtins(), indent=2))
    else:
        view.print_results(console, result, policy)
    return 0 if result.ok else 1
