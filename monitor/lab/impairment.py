"""What can go wrong with a simulated point: the :class:`Impairment` value and its spellings.

An impairment is a frozen, self-validating value; the lab applies it to the
replies of one point (and, through the uplink tree, of every point below it,
see :mod:`monitor.lab.shaping`). Fields:

- ``delay`` (seconds): added to every reply, so the round trip grows by it.
- ``jitter`` (seconds): a random offset drawn per reply, ``uniform`` on
  ``[-jitter, +jitter]`` (the default) or ``normal`` with standard deviation
  ``jitter``; the total delay never goes below zero. A receiver computing RFC 3550
  interarrival jitter reads about ``2/3 · jitter`` for ``uniform`` and
  ``1.13 · jitter`` for ``normal`` (the mean absolute difference of two draws).
- ``loss`` (ratio 0..1): the chance that a reply is lost.
- ``down``: no service answers at all.
- ``sip_status`` / ``http_status``: answer OPTIONS / the status page with this
  code instead of 200 (e.g. 503), to play a sick endpoint rather than a bad link.

Three spellings reach it: Python (``Impairment(delay=0.04)``), JSON for the
control API (:meth:`Impairment.from_json`, numbers in seconds/ratio or strings
such as ``"40ms"``/``"5%"``), and the command line (:meth:`Impairment.parse`,
``delay:40ms,jitter:10ms,loss:5%``). Every bad value is a :class:`ValueError`
whose message says what would be accepted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from monitor.inventory.units import format_duration, parse_duration, parse_ratio

__all__ = ["DISTRIBUTIONS", "Impairment"]

Distribution = Literal["uniform", "normal"]
DISTRIBUTIONS: tuple[Distribution, ...] = ("uniform", "normal")

#: longest delay or jitter accepted: beyond this no probe would wait anyway
_MAX_SECONDS = 60.0
_ZERO_DURATION = re.compile(r"^0+(\.0*)?(ms|us|µs|s|m|h)?$")

#: command-line keys -> field names
_CLI_KEYS = {
    "delay": "delay",
    "jitter": "jitter",
    "dist": "distribution",
    "distribution": "distribution",
    "loss": "loss",
    "down": "down",
    "sip": "sip_status",
    "sip_status": "sip_status",
    "http": "http_status",
    "http_status": "http_status",
}
_CLI_HELP = "delay:40ms, jitter:10ms, dist:normal, loss:5%, down, sip:503, http:503"


def _duration(value: object) -> float:
    if isinstance(value, str) and _ZERO_DURATION.match(value.strip()):
        return 0.0
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return 0.0
    return parse_duration(value)


def _status(value: object, low: int, high: int, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{value!r} is not {what} status code: use {low}..{high}, e.g. 503")
    return value


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"{value!r} is not true or false")


@dataclass(frozen=True, slots=True)
class Impairment:
    """How one point's replies are degraded; ``Impairment()`` is a healthy point."""

    delay: float = 0.0
    jitter: float = 0.0
    distribution: Distribution = "uniform"
    loss: float = 0.0
    down: bool = False
    sip_status: int | None = None
    http_status: int | None = None

    def __post_init__(self) -> None:
        for name in ("delay", "jitter"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= _MAX_SECONDS):
                raise ValueError(f"{name} {value!r} must be between 0 and {_MAX_SECONDS:g} seconds")
        if not (math.isfinite(self.loss) and 0.0 <= self.loss <= 1.0):
            raise ValueError(f"loss {self.loss!r} must be a ratio between 0 and 1")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"distribution {self.distribution!r} must be one of: {', '.join(DISTRIBUTIONS)}"
            )
        _status(self.sip_status, 200, 699, "a SIP final")
        _status(self.http_status, 200, 599, "an HTTP")

    @property
    def healthy(self) -> bool:
        """True when this impairment changes nothing."""
        return self == _HEALTHY

    @property
    def shapes_link(self) -> bool:
        """True when it affects the path of replies (delay, jitter, loss or down)."""
        return bool(self.delay or self.jitter or self.loss or self.down)

    def describe(self) -> str:
        """A short human summary, e.g. ``delay 40ms ±10ms, loss 5%``."""
        if self.healthy:
            return "healthy"
        parts: list[str] = []
        if self.down:
            parts.append("down")
        if self.delay or self.jitter:
            text = f"delay {format_duration(self.delay) if self.delay else '0ms'}"
            if self.jitter:
                text += f" ±{format_duration(self.jitter)}"
                if self.distribution != "uniform":
                    text += f" ({self.distribution})"
            parts.append(text)
        if self.loss:
            parts.append(f"loss {self.loss * 100:g}%")
        if self.sip_status is not None:
            parts.append(f"sip {self.sip_status}")
        if self.http_status is not None:
            parts.append(f"http {self.http_status}")
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The JSON form (seconds and ratio as numbers), as the control API returns it."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: object, base: Impairment | None = None) -> Impairment:
        """Build from a JSON object; keys missing from ``data`` keep ``base``'s values."""
        if not isinstance(data, Mapping):
            raise ValueError('expected a JSON object such as {"delay": "40ms", "loss": "5%"}')
        known = [f.name for f in fields(cls)]
        changes: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise ValueError(f"unknown key {key!r}; expected one of: {', '.join(known)}")
            try:
                changes[key] = _convert(key, value)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return replace(base or _HEALTHY, **changes)

    @classmethod
    def parse(cls, text: str) -> Impairment:
        """Parse the command-line spelling ``delay:40ms,jitter:10ms,loss:5%,down,sip:503``."""
        changes: dict[str, Any] = {}
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            key, sep, value = item.partition(":")
            key = key.strip().lower()
            name = _CLI_KEYS.get(key)
            if name is None:
                raise ValueError(f"unknown impairment {key!r}; use {_CLI_HELP}")
            if not sep:
                if name != "down":
                    raise ValueError(f"{key!r} needs a value, e.g. {key}:{_example(name)}")
                value = "true"
            try:
                changes[name] = _convert(name, value.strip())
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        if not changes:
            raise ValueError(f"no impairment given; use {_CLI_HELP}")
        return cls(**changes)


_HEALTHY = Impairment()


def _example(name: str) -> str:
    return {
        "delay": "40ms",
        "jitter": "10ms",
        "loss": "5%",
        "distribution": "normal",
        "sip_status": "503",
        "http_status": "503",
    }.get(name, "1")


def _convert(name: str, value: object) -> Any:
    if name in ("delay", "jitter"):
        seconds = _duration(value)
        if seconds > _MAX_SECONDS:
            raise ValueError(f"{value!r} is longer than {_MAX_SECONDS:g}s")
        return seconds
    if name == "loss":
        return parse_ratio(value)
    if name == "down":
        return _flag(value)
    if name == "distribution":
        if value not in DISTRIBUTIONS:
            raise ValueError(f"{value!r} is not one of: {', '.join(DISTRIBUTIONS)}")
        return value
    if name == "sip_status":
        return _status(value, 200, 699, "a SIP final")
    return _status(value, 200, 599, "an HTTP")
