"""The ``pulsewire`` command line: ``demo``, ``serve``, ``probe``, ``kernel``.

Each command lives in its own module, which adds its parser (``add_parser``) and runs it
(``run``). Exit codes, for every command: 0 success; 1 the command ran and found a failure
(a fault without its expected verdict, a peer that died or never answered, an address
that cannot be served); 2 bad arguments. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from pulsewire.cli.options import CliError, Parser, configure_logging

__all__ = ["build_parser", "configure_logging", "main"]

EPILOG = """\
exit codes: 0 success; 1 the command ran and found a failure (see each command's --help);
2 bad arguments (a one-line error on stderr).

`pulsewire COMMAND --help` explains each command.
"""


def build_parser() -> Parser:
    # Imported here so that `python -m pulsewire.cli.peer` (the demo's peers) stays light.
    from pulsewire import __version__
    from pulsewire.cli import demo, probe, serve
    from pulsewire.cli import kernel as kernel_command

    parser = Parser(
        prog="pulsewire",
        description="Fast, controllable dead-peer detection for long-lived connections.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"pulsewire {__version__}")
    commands: Any = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (demo, serve, probe, kernel_command):
        module.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(getattr(args, "verbose", False))
    prog = f"pulsewire {args.command}"
    try:
        code: int = args.run(args)
    except CliError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `pulsewire kernel | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code
