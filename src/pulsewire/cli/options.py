"""What every command shares: the parser class, policy options, addresses, logging, errors.

The command line is an application, so it (and only it) configures where pulsewire's log
events go (the library only hands them to the ``logging`` logger ``pulsewire``).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import msgspec
import structlog

from pulsewire._log import LOGGER_NAME
from pulsewire.core.policy import Policy
from pulsewire.errors import PolicyError

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "PRESETS",
    "PRESET_EXPRESSIONS",
    "CliError",
    "Parser",
    "add_policy_options",
    "add_verbose_option",
    "configure_logging",
    "format_ms",
    "parse_address",
    "policy_from_args",
    "policy_label",
    "positive_float",
    "positive_int",
]

#: Exit codes shared by every command (each command's ``--help`` says what 1 means for it).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

#: ``--policy NAME`` -> the preset it selects.
PRESETS: dict[str, Callable[[], Policy]] = {
    "default": Policy,
    "lan": Policy.lan,
    "wan": Policy.wan,
    "nat": Policy.nat,
    "mobile": Policy.mobile,
}

#: The same presets as the Python expression that builds them (for help and output).
PRESET_EXPRESSIONS: dict[str, str] = {
    "default": "Policy()",
    "lan": "Policy.lan()",
    "wan": "Policy.wan()",
    "nat": "Policy.nat()",
    "mobile": "Policy.mobile()",
}


class CliError(Exception):
    """A failure to report on one line of stderr, without a traceback, with an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: ``pulsewire probe: error: ...``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_float(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> ``(host, port)``; raises ``CliError`` (exit 2)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text:
        raise CliError(f"expected HOST:PORT, got {text!r}", EXIT_USAGE)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise CliError(f"write an IPv6 address in brackets, [{host}]:{port_text}", EXIT_USAGE)
    try:
        port = int(port_text)
    except ValueError:
        raise CliError(f"port must be a number, got {port_text!r}", EXIT_USAGE) from None
    if not 1 <= port <= 65535:
        raise CliError(f"port must be between 1 and 65535, got {port}", EXIT_USAGE)
    return host, port


def add_policy_options(
    parser: argparse.ArgumentParser, *, default: str | None = "default", short: bool = False
) -> None:
    """``--policy NAME``, ``--interval S``, ``--timeout S`` (the last two override the preset).

    ``short`` adds ``-i`` for ``--interval`` (as ``ping -i``).
    """
    group = parser.add_argument_group("liveness policy")
    group.add_argument(
        "--policy",
        choices=list(PRESETS),
        default=default,
        metavar="NAME",
        help=(
            f"preset: {', '.join(PRESETS)} (default: {default or 'default'}); "
            "`pulsewire kernel` shows what each one detects"
        ),
    )
    group.add_argument(
        *(("-i", "--interval") if short else ("--interval",)),
        type=positive_float,
        metavar="SECONDS",
        help="ping an idle connection after this much silence (overrides the preset)",
    )
    group.add_argument(
        "--timeout",
        type=positive_float,
        metavar="SECONDS",
        help="declare the peer dead after this much silence (overrides the preset)",
    )


def policy_from_args(
    args: argparse.Namespace, *, base: Policy | None = None, **changes: Any
) -> Policy:
    """The preset named by ``--policy`` (or ``base``) with ``--interval``/``--timeout``.

    ``changes`` are further fields to set. An impossible combination is a ``CliError``
    with exit code 2 and the policy's own explanation (e.g. a timeout shorter than the
    interval).
    """
    policy = base if base is not None else PRESETS[args.policy or "default"]()
    if args.interval is not None:
        changes["interval"] = args.interval
    if args.timeout is not None:
        changes["timeout"] = args.timeout
    if not changes:
        return policy
    try:
        # Rebuild from the fields so that the cross-field checks run again.
        fields = msgspec.structs.asdict(policy)
        fields.update(changes)
        return Policy(**fields)
    except PolicyError as error:
        raise CliError(str(error), EXIT_USAGE) from None


def policy_label(args: argparse.Namespace) -> str:
    """``default``, or ``default --interval 0.5`` when the preset was overridden."""
    label = str(args.policy or "default")
    if args.interval is not None:
        label += f" --interval {args.interval:g}"
    if args.timeout is not None:
        label += f" --timeout {args.timeout:g}"
    return label


def add_verbose_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also log pulsewire's events (peer.suspect, peer.dead, ...) on stderr",
    )


def format_ms(seconds: float | None) -> str:
    """An RTT for people: ``0.182 ms``, ``12.5 ms``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    ms = seconds * 1000
    return f"{ms:.3f} ms" if ms < 10 else f"{ms:.1f} ms"


class _StderrHandler(logging.Handler):
    """Writes each log line to whatever ``sys.stderr`` is *now*.

    ``rich``'s live view replaces ``sys.stderr`` while it runs, so that log lines appear
    above the view instead of tearing it; a handler holding the original stream would not
    notice.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:
            self.handleError(record)


def configure_logging(verbose: bool) -> None:
    """Log pulsewire's events to stderr: errors only, or every INFO event with ``verbose``.

    The command line is an application: it may configure logging (a library never does).
    Each event is one line, ``12:00:01 [warning  ] peer.dead  peer=... reason=timeout``.
    """
    logger = logging.getLogger(LOGGER_NAME)
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)  # configured again (tests call main() repeatedly)
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.dev.ConsoleRenderer(colors=False),
            ]
        )
    )
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.ERROR)
