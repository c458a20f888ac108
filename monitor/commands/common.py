"""What several commands share: the argument parser type, logging options, output files."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.errors import ConfmonError, IcmpNotPermitted, UsageError

__all__ = [
    "Parser",
    "Subparsers",
    "add_lab_base_option",
    "add_logging_options",
    "parse_lab_base",
    "parse_listen",
    "suggest_no_icmp",
    "write_output",
]

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[Any]
else:
    Subparsers = argparse._SubParsersAction


class Parser(argparse.ArgumentParser):
    """argparse, but bad usage is a :class:`UsageError` (one line, exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def add_logging_options(p: argparse.ArgumentParser) -> None:
    """``--log-format`` and ``--log-level`` for the long-running commands."""
    p.add_argument("--log-format", choices=("text", "json"), default="text", help="log line format")
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="log verbosity",
    )


def write_output(text: str, output: str | None, force: bool) -> None:
    """Write ``text`` to stdout (``None`` or ``-``) or to a new file (``force`` to overwrite)."""
    if output is None or output == "-":
        sys.stdout.write(text)
        return
    path = Path(output)
    if path.exists() and not force:
        raise UsageError(f"{output} exists; pass --force to overwrite it")
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfmonError(f"cannot write {output}: {exc.strerror}") from None


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT`` or ``:PORT`` (loopback) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9108")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


@contextlib.contextmanager
def suggest_no_icmp() -> Iterator[None]:
    """A missing ICMP permission, said with the other way out: the command's ``--no-icmp``."""
    try:
        yield
    except IcmpNotPermitted as exc:
        raise IcmpNotPermitted(f"{exc} (or run with --no-icmp)") from None


def add_lab_base_option(p: argparse.ArgumentParser, who: str) -> None:
    """``--lab-base ADDRESS`` for the commands that start the lab."""
    p.add_argument(
        "--lab-base",
        default="127.20.0.1",
        metavar="ADDRESS",
        help="first loopback address of the simulated points (default: %(default)s); "
        f"another block lets {who} run side by side",
    )


def parse_lab_base(text: str) -> ipaddress.IPv4Address:
    """A ``--lab-base`` value: an IPv4 loopback address."""
    try:
        base = ipaddress.IPv4Address(text)
    except ValueError:
        raise UsageError(f"--lab-base {text!r} is not an IPv4 address") from None
    if not base.is_loopback:
        raise UsageError(f"--lab-base {text}: the lab listens on loopback only (127.0.0.0/8)")
    return base
