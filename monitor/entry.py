"""The ``confmon`` program's first code: a Ctrl-C from the first moment is a quiet exit 130.

Why: importing the command line (argparse, pydantic, rich, aiohttp...) takes a tenth
of a second, and a SIGINT in that window used to print a ``KeyboardInterrupt``
traceback. This module imports nothing heavy: it turns SIGINT into exit 130 first,
then imports and runs :func:`monitor.cli.main`, which handles interrupts itself
from then on.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

__all__ = ["main"]

#: the exit status of an interrupted command (128 + SIGINT)
INTERRUPTED = 130


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(INTERRUPTED)


def main() -> None:
    """Run ``confmon`` with ``sys.argv``; exits with the command's status."""
    signal.signal(signal.SIGINT, _interrupted)
    from monitor.cli import main as run

    signal.signal(signal.SIGINT, signal.default_int_handler)  # the commands' own handling
    sys.exit(run())
