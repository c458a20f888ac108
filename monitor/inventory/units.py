"""Parsing of the human units used in configs: durations, ratios, hosts, ids.

Each parser raises :class:`ValueError` with a message that quotes the value and
says what would be accepted; the config loader puts file, line and field in
front of it.
"""

from __future__ import annotations

import ipaddress
import math
import re

__all__ = ["format_duration", "parse_duration", "parse_host", "parse_point_id", "parse_ratio"]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|s|m|h|d)")
_UNIT_SECONDS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_POINT_ID = re.compile(r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9_-]*[a-z0-9])?)*$")


def parse_duration(value: object) -> float:
    """``"20ms"``, ``"5s"``, ``"1m30s"``, ``"30d"`` or a plain number of seconds -> seconds (float > 0)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration: write e.g. 500ms, 5s or 1m")
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
            raise ValueError(f"{value!r} is not a duration: write e.g. 500ms, 5s or 1m")
    else:
        raise ValueError(f"{value!r} is not a duration: write e.g. 500ms, 5s or 1m")
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"{value!r} is not a positive, finite duration")
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
        raise ValueError(f"{value!r} is not a ratio: write e.g. 2% or 0.02")
    if isinstance(value, str):
        text = value.strip()
        if not text.endswith("%"):
            raise ValueError(f"{value!r} is not a ratio: write e.g. 2% or 0.02")
        try:
            ratio = float(text[:-1]) / 100.0
        except ValueError:
            raise ValueError(f"{value!r} is not a percentage: write e.g. 2%") from None
    elif isinstance(value, int | float):
        ratio = float(value)
        if not math.isfinite(ratio):
            raise ValueError(f"{value!r} is not a ratio: write e.g. 2% or 0.02")
    else:
        raise ValueError(f"{value!r} is not a ratio: write e.g. 2% or 0.02")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"{value!r} is out of range: a ratio is between 0% and 100% (0..1)")
    return ratio


def parse_host(value: object) -> str:
    """An IPv4/IPv6 address (normalised) or an RFC 1123 host name."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} is not an IP address or host name")
    text = value.strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    name = text[:-1] if text.endswith(".") else text
    labels = name.split(".")
    if (
        len(name) <= 253
        and all(_LABEL.match(label) for label in labels)
        # an all-numeric last label is a mistyped address, not a name (RFC 3696 §2)
        and not labels[-1].isdigit()
    ):
        return name.lower()
    raise ValueError(f"{value!r} is not an IP address or host name")


def parse_point_id(value: object) -> str:
    """A stable ASCII point id such as ``ba-vi.tan-linh``."""
    if not isinstance(value, str) or not _POINT_ID.match(value) or len(value) > 100:
        raise ValueError(
            f"{value!r} is not a valid id: use lowercase ASCII letters, digits, '-' and '_',"
            " with '.' between parts (e.g. ba-vi.tan-linh)"
        )
    return value
