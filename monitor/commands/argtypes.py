"""argparse ``type=`` functions: a bad option value is one line and exit 2, at parse time.

``type=int`` or ``type=float`` let through what then breaks a command later:
``--width 0`` wrote an empty snapshot, ``--duration nan`` or ``--refresh inf``
reached the event loop, ``--control-port ²`` passed ``str.isdigit()``. Each
function here checks the value completely (ASCII digits, finite, in range) and
raises :class:`argparse.ArgumentTypeError`, which the command line's parser turns
into ``confmon: ... (see '... --help')`` with exit 2, before anything starts.
The value is quoted through :func:`monitor.text.quoted`, so an escape sequence
typed or pasted into an option cannot reach the terminal.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

from monitor.text import quoted

__all__ = ["http_base_url", "number_in", "port_number", "time_zone", "whole_number"]

_INTEGER = re.compile(r"[+-]?[0-9]{1,30}")  # ASCII: int() also takes '٣' and '1_000'


def whole_number(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An integer, in ``low..high`` when those are given."""

    def parse(text: str) -> int:
        if not _INTEGER.fullmatch(text.strip()):
            raise argparse.ArgumentTypeError(f"{quoted(text)} is not a whole number")
        value = int(text)
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"{quoted(text)} is out of range ({_range(low, high)})"
            )
        return value

    parse.__name__ = "whole number"
    return parse


def number_in(
    low: float, high: float, *, low_open: bool = False, unit: str = ""
) -> Callable[[str], float]:
    """A finite number in ``low..high`` (``low_open``: greater than ``low``, not equal)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{quoted(text)} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{quoted(text)} is not a finite number")
        if value < low or value > high or (low_open and value == low):
            low_word = f"more than {low:g}" if low_open else f"{low:g}"
            raise argparse.ArgumentTypeError(
                f"{quoted(text)} is out of range: give {low_word} to {high:g}{unit}"
            )
        return value

    parse.__name__ = "number"
    return parse


def port_number(text: str) -> int:
    """A TCP/UDP port, 0..65535 (0: none, or any free one, as the option says)."""
    if not _INTEGER.fullmatch(text.strip()) or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{quoted(text)} is not a port number (0..65535)")
    return int(text)


def time_zone(text: str) -> str:
    """An IANA time zone name such as ``Asia/Ho_Chi_Minh``."""
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise argparse.ArgumentTypeError(
            f"{quoted(text)} is not a known time zone (e.g. Asia/Ho_Chi_Minh)"
        ) from None
    return text


def http_base_url(text: str) -> str:
    """``http(s)://host[:port][/prefix]``, the address of a monitor's API, normalised.

    Read as a probe target is (:func:`monitor.probes.target.parse_url`), so an
    unclosed bracket or a bad port says so; a query, a fragment or credentials
    have no place in a base URL and are refused.
    """
    from monitor.probes.target import parse_url

    try:
        url = parse_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{exc}; expected http://HOST:PORT, e.g. http://127.0.0.1:9108"
        ) from None
    if "?" in url.path or "#" in text:
        raise argparse.ArgumentTypeError(f"{quoted(text)}: a base URL has no query or fragment")
    host = url.target.host
    netloc = f"[{host}]" if ":" in host else host
    if url.target.port is not None:
        netloc += f":{url.target.port}"
    return f"{url.scheme}://{netloc}{url.path.rstrip('/')}"


def _range(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"{low}..{high}"
    return f"at least {low}" if low is not None else f"at most {high}"
