"""What several commands share: the argument parser type, logging options, output files."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.errors import ConfmonError, IcmpNotPermitted, UsageError
from monitor.text import printable, quoted

__all__ = [
    "Parser",
    "Subparsers",
    "add_lab_base_option",
    "add_logging_options",
    "api_token",
    "output_console",
    "parse_lab_base",
    "parse_listen",
    "parse_token",
    "suggest_no_icmp",
    "write_output",
]

if TYPE_CHECKING:
    from rich.console import Console

    Subparsers = argparse._SubParsersAction[Any]
else:
    Subparsers = argparse._SubParsersAction


class Parser(argparse.ArgumentParser):
    """argparse, but bad usage is a :class:`UsageError` (one line, exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # the CLI puts "confmon: " in front; the command's name follows it once
        command = self.prog.removeprefix("confmon").strip()
        where = f"{command}: " if command else ""
        raise UsageError(f"{where}{message} (see '{self.prog} --help')")


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
    """Write ``text`` to stdout (``None`` or ``-``) or to a new file (``force`` to overwrite).

    A regular file is written beside the target and renamed over it, so a full
    disk leaves the old file whole, never a truncated one; a device or a FIFO
    (``/dev/stdout``, ``/dev/full``) is written in place, and a FIFO without a
    reader is refused rather than waited for. Failures are one line,
    ``cannot write FILE: No space left on device``. Standard output is flushed
    here, so its failures reach :func:`monitor.cli.main`, which says them.
    """
    if output is None or output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(output)
    try:
        if path.exists() and not force:
            raise UsageError(f"{printable(output)} exists; pass --force to overwrite it")
        data = text.encode("utf-8")
        if path.exists() and not path.is_file():
            _write_in_place(path, data)
        else:
            _write_replacing(path.resolve() if path.is_symlink() else path, data)
    except OSError as exc:
        raise ConfmonError(f"cannot write {printable(output)}: {exc.strerror or exc}") from None


def _write_in_place(path: Path, data: bytes) -> None:
    """A device or FIFO: opened without blocking (no reader is ENXIO, not a hang), then written."""
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.set_blocking(fd, True)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _write_replacing(path: Path, data: bytes) -> None:
    """A regular file: a temporary file beside it, flushed to disk, then renamed over it
    (a symbolic link is followed first, so the link stays a link)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    mode = path.stat().st_mode & 0o7777 if path.exists() else None
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)  # an overwritten file keeps its permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


#: a host name as DNS has them (RFC 1123 labels), so that junk is refused before any lookup
_HOST_NAME = re.compile(
    r"(?=.{1,253}\.?\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def parse_listen(text: str, option: str = "--listen") -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT`` or ``:PORT`` (loopback) -> (host, port).

    The host must be an IP address or a well-formed host name: anything else is a
    :class:`UsageError` here, before a resolver is asked (the name is resolved, within a
    few seconds, when the address is bound, before anything is probed).
    """
    host, sep, port = text.rpartition(":")
    example = "expected HOST:PORT, e.g. 127.0.0.1:9108 or [::1]:9108"
    if not sep or not (port.isascii() and port.isdigit()) or len(port) > 5:
        raise UsageError(f"{option} {quoted(text)}: {example}")
    if not 0 < int(port) < 65536:
        raise UsageError(f"{option} {quoted(text)}: the port must be 1 to 65535")
    if host.startswith("[") or host.endswith("]"):
        inner = host[1:-1] if host.startswith("[") and host.endswith("]") else None
        try:
            ipaddress.IPv6Address(inner or "")
        except ValueError:
            raise UsageError(
                f"{option} {quoted(text)}: {quoted(host)} is not an IPv6 address in brackets; "
                f"{example}"
            ) from None
        return str(inner), int(port)
    if not host:
        return "127.0.0.1", int(port)
    try:
        ipaddress.ip_address(host)  # also a bare IPv6 address: '::1:9108' is '::1', port 9108
    except ValueError:
        top = host.rstrip(".").rsplit(".", 1)[-1].lower()
        # a numeric last label is what inet_aton reads as a number ('10.0.0.300', '0x7f000001'):
        # never a real name, and not an address either
        if not _HOST_NAME.fullmatch(host) or top.isdigit() or top.startswith("0x"):
            raise UsageError(
                f"{option} {quoted(text)}: {quoted(host)} is neither an IP address nor a host "
                f"name; {example}"
            ) from None
    return host, int(port)


def parse_token(value: str | None, source: str) -> str | None:
    """A bearer token given by ``source`` (an option, an environment variable), or None.

    An empty or blank value is refused, not taken as "no token": it is what an unset
    variable gives (``--api-token "$TOKEN"``), and it would turn authentication off
    without a word. A token is printable ASCII without spaces, what an ``Authorization``
    header carries intact; surrounding whitespace (a newline from a file) is dropped, as
    HTTP drops it from the header.
    """
    if value is None:
        return None
    token = value.strip()
    if not token:
        without = f"leave {source} out" if source.startswith("-") else f"unset {source}"
        raise UsageError(
            f"{source} is empty (an unset variable?): give the token, or {without} to run "
            "without one"
        )
    if not (token.isascii() and token.isprintable()) or any(c.isspace() for c in token):
        raise UsageError(
            f"{source}: a token must be printable ASCII without spaces (got {quoted(value, 20)})"
        )
    return token


def api_token(option_value: str | None, option: str = "--api-token") -> str | None:
    """The API token a server requires: the option if given, else ``$CONFMON_API_TOKEN`` if
    set (both checked by :func:`parse_token`), else None (no authentication)."""
    if option_value is not None:
        return parse_token(option_value, option)
    return parse_token(os.environ.get("CONFMON_API_TOKEN"), "CONFMON_API_TOKEN")


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


def output_console(**options: Any) -> Console:
    """A rich Console for a command's output whose closed pipe is said like any other.

    rich ends the process itself when its reader goes away (``SystemExit(1)``, without
    a word); this one raises :class:`BrokenPipeError`, which the command line turns into
    one line and :data:`monitor.cli.CLOSED_PIPE_EXIT`, as for output written otherwise.
    """
    from rich.console import Console as RichConsole

    class _Console(RichConsole):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    return _Console(**options)
