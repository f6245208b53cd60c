"""The ``pulsewire`` command line.

Exit codes: 0 success; 1 the command ran and found a failure (e.g. a fault not detected);
2 bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys

import structlog

from pulsewire.core.policy import Policy
from pulsewire.errors import PolicyError

__all__ = ["configure_logging", "main"]


def configure_logging(verbose: bool) -> None:
    # The command line is an application: it may configure structlog (a library never does).
    level = logging.INFO if verbose else logging.WARNING
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pulsewire",
        description="Fast, controllable dead-peer detection for long-lived connections.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="inject real faults into real peers; compare pulsewire with kernel keepalive",
        description=(
            "Start a pulsewire server and peer processes on loopback, freeze one (SIGSTOP), "
            "kill one (SIGKILL) and reset one (RST), and show how long pulsewire and kernel "
            "keepalive tuned to 1 s/1 s/1 probe take to notice."
        ),
    )
    demo.add_argument("--interval", type=float, default=0.5, help="ping interval, s (0.5)")
    demo.add_argument("--timeout", type=float, default=2.0, help="dead after silence, s (2.0)")
    demo.add_argument("--json", action="store_true", help="print the results as JSON")
    demo.add_argument("-v", "--verbose", action="store_true", help="log connection events")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    configure_logging(getattr(args, "verbose", False))
    if args.command == "demo":
        from pulsewire.cli import demo

        try:
            policy = Policy(interval=args.interval, timeout=args.timeout)
        except PolicyError as error:
            parser.error(str(error))
        return demo.main(policy, args.json)
    parser.error(f"unknown command {args.command}")  # pragma: no cover - argparse exits first
    return 2
