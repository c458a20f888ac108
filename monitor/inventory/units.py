"""Parsing of the human units used in configs: durations, ratios, hosts, ids.

Each parser raises :class:`ValueError` with a message that quotes the value and
says what would be accepted; the config loader puts file, line and field in
front of it.
"""

from __future__ import annotations

import ipaddress
import math
import re
import socket

from monitor.text import quoted

__all__ = ["format_duration", "parse_duration", "parse_host", "parse_point_id", "parse_ratio"]

#: ten years: longer is a typo (and overflows the date arithmetic of retention and windows)
MAX_DURATION = 3650 * 86400.0

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|s|m|h|d)")
_UNIT_SECONDS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# matched with fullmatch: "$" would let a trailing newline through
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_POINT_ID = re.compile(r"[a-z0-9]([a-z0-9_-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9_-]*[a-z0-9])?)*")
_ZONE = re.compile(r"[A-Za-z0-9_.-]{1,15}")


def parse_duration(value: object) -> float:
    """``"20ms"``, ``"5s"``, ``"1m30s"``, ``"30d"`` or a plain number of seconds -> seconds (float > 0)."""
    if isinstance(value, bool):
        raise ValueError(f"{quoted(value)} is not a duration: write e.g. 500ms, 5s or 1m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        pos, seconds = 0, 0.0
        for match in _DURATION_PART.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if pos == 0 or pos != len(text):
            raise ValueError(f"{quoted(value)} is not a duration: write e.g. 500ms, 5s or 1m")
    else:
        raise ValueError(f"{quoted(value)} is not a duration: write e.g. 500ms, 5s or 1m")
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"{quoted(value)} is not a positive, finite duration")
    if seconds > MAX_DURATION:
        raise ValueError(
            f"{quoted(value)} is longer than 3650d, the longest duration confmon takes"
        )
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds -> the shortest config spelling (``0.02`` -> ``"20ms"``)."""
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{int(seconds // 86400)}d"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    ms = seconds * 1000
    return f"{round(ms)}ms" if abs(ms - round(ms)) < 1e-9 else f"{seconds:g}s"


def parse_ratio(value: object) -> float:
    """``"2%"`` or a number in 0..1 -> ratio in 0..1."""
    if isinstance(value, bool):
        raise ValueError(f"{quoted(value)} is not a ratio: write e.g. 2% or 0.02")
    if isinstance(value, str):
        text = value.strip()
        if not text.endswith("%"):
            raise ValueError(f"{quoted(value)} is not a ratio: write e.g. 2% or 0.02")
        try:
            ratio = float(text[:-1]) / 100.0
        except ValueError:
            raise ValueError(f"{quoted(value)} is not a percentage: write e.g. 2%") from None
    elif isinstance(value, int | float):
        ratio = float(value)
        if not math.isfinite(ratio):
            raise ValueError(f"{quoted(value)} is not a ratio: write e.g. 2% or 0.02")
    else:
        raise ValueError(f"{quoted(value)} is not a ratio: write e.g. 2% or 0.02")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"{quoted(value)} is out of range: a ratio is between 0% and 100% (0..1)")
    return ratio


def _check_address(text: str, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    """Refuse addresses that are not one host's: probes to them fail or reach many hosts."""
    q = quoted(text)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        # ::ffff:a.b.c.d is the IPv4 host a.b.c.d: the same rules apply to it
        _check_address(text, addr.ipv4_mapped)
    if addr.is_unspecified:
        raise ValueError(
            f"{q} is the unspecified address (any host): write the point's own address"
        )
    if addr.is_multicast:
        raise ValueError(f"{q} is a multicast address: write the point's own (unicast) address")
    if isinstance(addr, ipaddress.IPv4Address):
        if addr == ipaddress.IPv4Address("255.255.255.255"):
            raise ValueError(f"{q} is the broadcast address: write the point's own address")
        if addr in ipaddress.IPv4Network("0.0.0.0/8"):
            raise ValueError(f"{q} is in 0.0.0.0/8 ('this network'): write the point's own address")
    elif addr.is_link_local and addr.scope_id is None:
        raise ValueError(f"{q} is link-local: add the interface it is reached on, e.g. {text}%eth0")
    elif addr.scope_id is not None and not _ZONE.fullmatch(addr.scope_id):
        raise ValueError(f"{q}: {quoted(addr.scope_id)} is not an interface name")


def parse_host(value: object) -> str:
    """An IPv4/IPv6 address (normalised) or an RFC 1123 host name.

    Refused: addresses that are not one host's (unspecified, multicast, broadcast,
    0.0.0.0/8, IPv6 link-local without an interface), spellings the resolver would
    read as another address (``0x7f000001``, ``127.1``, ``010.0.0.1``), a port or a
    URL instead of a host.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)  # YAML read `host: 127.1` as a number: judge what was written
    if not isinstance(value, str):
        raise ValueError(f"{quoted(value)} is not an IP address or host name")
    text = value.strip()
    if not text:
        raise ValueError("the host is empty: write an IP address or a host name")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        _check_address(text, addr)
        return str(addr)
    if text.startswith("[") and text.endswith("]"):
        raise ValueError(f"{quoted(text)}: write the IPv6 address without brackets")
    if "://" in text:
        raise ValueError(f"{quoted(text)} is a URL: write only the host, e.g. 10.24.19.1")
    if any(ch.isspace() for ch in text):
        # inet_aton stops at a space ('127.76 .0.1' would be "read as" 127.0.0.76)
        raise ValueError(f"{quoted(value)} is not an IP address or host name (it holds a space)")
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        raise ValueError(
            f"{quoted(text)}: write only the host ({quoted(host)}); ports are set in the profile"
        )
    try:  # inet_aton reads hex, octal and short forms: getaddrinfo would too
        packed = socket.inet_aton(text)
    except (OSError, ValueError):
        pass
    else:
        meant = socket.inet_ntoa(packed)
        try:
            _check_address(meant, ipaddress.IPv4Address(meant))
        except ValueError:  # 7 means 0.0.0.7: no use suggesting that
            raise ValueError(f"{quoted(value)} is not an IP address or host name") from None
        raise ValueError(f"{quoted(text)} would be read as the IPv4 address {meant}: write {meant}")
    name = text[:-1] if text.endswith(".") else text
    labels = name.split(".")
    if (
        len(name) <= 253
        and all(_LABEL.fullmatch(label) for label in labels)
        # an all-numeric last label is a mistyped address, not a name (RFC 3696 §2)
        and not labels[-1].isdigit()
    ):
        return name.lower()
    raise ValueError(f"{quoted(value)} is not an IP address or host name")


def parse_point_id(value: object) -> str:
    """A stable ASCII point id such as ``ba-vi.tan-linh``."""
    if not isinstance(value, str) or len(value) > 100 or not _POINT_ID.fullmatch(value):
        raise ValueError(
            f"{quoted(value)} is not a valid id: use lowercase ASCII letters, digits, '-' and '_',"
            " with '.' between parts (e.g. ba-vi.tan-linh)"
        )
    return value
