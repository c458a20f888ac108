"""The ``confmon`` command line: assembles the commands of :mod:`monitor.commands`.

Every command exits 0 when it did its job, 1 on a runtime failure and 2 on bad
usage or a bad config; errors are one line each on stderr (``--debug`` shows
the traceback instead).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Callable, Sequence

from monitor import __version__
from monitor.commands import COMMANDS
from monitor.commands.common import Parser
from monitor.errors import ConfigError, ConfmonError

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    parser = Parser(
        prog="confmon",
        description=(
            "Connection monitor for hybrid conferences: probes remote meeting points "
            "(ICMP, TCP, HTTP, SIP OPTIONS, UDP media) and reports their health."
        ),
        epilog="Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config.",
    )
    parser.add_argument("--version", action="version", version=f"confmon {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks instead of one-line errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"monitor.commands.{name}").add_parser(sub)
    return parser


#: commands that reload on SIGHUP: the signal must not end them before their handler exists
_RELOADING = frozenset({"run", "server"})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in _RELOADING and hasattr(signal, "SIGHUP"):
        # ignored from the first moment (SIGHUP's default action ends the process) until
        # the event loop installs the reload handler
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        handler: Handler | None = getattr(args, "handler", None)
        if handler is None:
            build_parser().print_help()
            return 2
        return handler(args)
    except ConfigError as exc:
        if debug:
            raise
        for line in exc.lines():
            print(line, file=sys.stderr)
        return exc.exit_code
    except ConfmonError as exc:
        if debug:
            raise
        print(f"confmon: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
