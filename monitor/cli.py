"""The ``confmon`` command line: assembles the commands of :mod:`monitor.commands`.

Every command exits 0 when it did its job, 1 on a runtime failure and 2 on bad
usage or a bad config; errors are one line each on stderr (``--debug`` shows
the traceback instead).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from monitor import __version__
from monitor.commands import COMMANDS
from monitor.commands.common import Parser
from monitor.errors import ConfigError, ConfmonError
from monitor.text import printable

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["CLOSED_PIPE_EXIT", "StdoutError", "build_parser", "main"]

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


#: the exit status after the reader of standard output went away (``| head -1``): the
#: status of a command ended by SIGPIPE (128 + 13), so a script with ``set -o pipefail``
#: can tell output cut short by its reader from a failure of the command
CLOSED_PIPE_EXIT = 141


class StdoutError(OSError):
    """Standard output could not be written (a full disk, an I/O error)."""


class _StdoutFile(io.FileIO):
    """File descriptor 1, whose write errors say that they are standard output's."""

    def write(self, data: ReadableBuffer, /) -> int:
        try:
            return super().write(data)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise StdoutError(exc.errno, exc.strerror) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    Output that cannot be written is said like any other failure: a full disk is
    one line (``confmon: cannot write standard output (/dev/full): No space left
    on device``, exit 1); a reader that closed the pipe (``| head -1``) ends the
    command with one line saying the output is cut short, and :data:`CLOSED_PIPE_EXIT`.

    ``argv`` None is the program itself (``confmon ...``): a service whose exit hangs
    after it stopped is then ended (:mod:`monitor.exiting`); a call with ``argv``
    (another program, the tests) never ends the process.
    """
    if argv is None:  # the program itself, not a call from another one (the tests)
        from monitor.exiting import own_process

        own_process()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    with _checked_stdout():
        try:
            return _dispatch_and_flush(argv, debug)
        except BrokenPipeError:
            if debug:
                raise
            _silence_stdout()
            _say("confmon: standard output was closed by its reader; the output is cut short")
            return CLOSED_PIPE_EXIT
        except StdoutError as exc:
            if debug:
                raise
            name = _stdout_name()
            _silence_stdout()
            _say(f"confmon: cannot write {name}: {exc.strerror or exc}")
            return 1


def _dispatch_and_flush(argv: list[str], debug: bool) -> int:
    """:func:`_dispatch`, then stdout flushed: a write error surfaces while it can be said."""
    try:
        code = _dispatch(argv, debug)
    except SystemExit:  # --help and --version print, then exit
        sys.stdout.flush()
        raise
    sys.stdout.flush()
    return code


@contextlib.contextmanager
def _checked_stdout() -> Iterator[None]:
    """While a command runs, ``sys.stdout`` raises :class:`StdoutError` for its own failures.

    Only the process's real standard output is wrapped (a test's captured stream
    is left alone); the original is back in place when the command is done.
    """
    original = sys.stdout
    try:
        fd = original.fileno()
    except (OSError, ValueError):
        fd = -1
    if fd < 0 or original is not sys.__stdout__ or not isinstance(original, io.TextIOWrapper):
        yield
        return
    original.flush()
    checked = io.TextIOWrapper(
        io.BufferedWriter(_StdoutFile(fd, "w", closefd=False)),
        encoding=original.encoding,
        errors=original.errors,
        line_buffering=original.line_buffering,
    )
    sys.stdout = checked
    try:
        yield
    finally:
        sys.stdout = original
        try:
            checked.flush()
        except (OSError, ValueError):
            _silence_stdout()  # what is left goes nowhere, without an 'Exception ignored'
            with contextlib.suppress(OSError, ValueError):
                checked.flush()


def _dispatch(argv: list[str], debug: bool) -> int:
    """Parse ``argv`` and run the command; user errors become one line and an exit code."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in _RELOADING and hasattr(signal, "SIGHUP"):
        # ignored from the first moment (SIGHUP's default action ends the process) until
        # the event loop installs the reload handler
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
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
            _say(line)
        return exc.exit_code
    except ConfmonError as exc:
        if debug:
            raise
        _say(f"confmon: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _say(line: str) -> None:
    """One line on stderr, control characters escaped (whatever part of it came from
    outside: a file name, a scenario, a key); a closed or full stderr cannot be told."""
    with contextlib.suppress(OSError, ValueError):
        print(printable(line), file=sys.stderr, flush=True)


def _stdout_name() -> str:
    """``standard output``, with the file it goes to where the system says (``/dev/full``)."""
    with contextlib.suppress(OSError, ValueError):
        target = os.readlink(f"/proc/self/fd/{sys.stdout.fileno()}")
        if target.startswith("/"):
            return f"standard output ({printable(target, 200)})"
    return "standard output"


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so the interpreter's last flush of what is still
    buffered neither fails nor prints 'Exception ignored' (the recipe of Python's signal docs)."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
