"""The inventory schema: settings, thresholds, probe profiles and the tree of points.

These pydantic models are the *strict parse* step: defaults first, unknown keys
rejected, every value checked. Rules that need the whole tree (duplicate ids,
unknown profiles, parents, cycles) live in :mod:`monitor.inventory.load`.
"""

from __future__ import annotations

import datetime
import re
import zoneinfo
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from monitor.inventory.units import parse_duration, parse_host, parse_point_id, parse_ratio

__all__ = [
    "PROBE_TYPES",
    "Duration",
    "HttpSettings",
    "IcmpSettings",
    "InventorySpec",
    "MaintenanceWindow",
    "MediaSettings",
    "MonitorSettings",
    "PointSpec",
    "Profile",
    "Ratio",
    "SipSettings",
    "TcpSettings",
    "Thresholds",
]

PROBE_TYPES = ("icmp", "tcp", "http", "sip", "media")

Duration = Annotated[float, BeforeValidator(parse_duration)]
Ratio = Annotated[float, BeforeValidator(parse_ratio)]
Port = Annotated[int, Field(ge=1, le=65535)]
Host = Annotated[str, BeforeValidator(parse_host)]
PointId = Annotated[str, BeforeValidator(parse_point_id)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


def _check_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a known time zone (e.g. Asia/Ho_Chi_Minh)") from None
    return value


class MonitorSettings(_Strict):
    """Timing and readiness settings of the whole monitor."""

    name: Name = "confmon"
    interval: Duration = 5.0
    fail_after: Annotated[int, Field(ge=1, le=100)] = 2
    recover_after: Annotated[int, Field(ge=1, le=100)] = 2
    stale_after: Duration = 20.0
    readiness_target: Ratio = 0.98
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "Asia/Ho_Chi_Minh"
    concurrency: Annotated[int, Field(ge=1, le=100_000)] = 512
    #: how long state changes stay in the event log
    event_retention: Duration = 30 * 86400.0


class Thresholds(_Strict):
    """Crossing any of these makes a reachable point ``degraded``."""

    rtt: Duration = 0.150
    jitter: Duration = 0.030
    loss: Ratio = 0.02
    mos: Annotated[float, Field(ge=1.0, le=4.5)] = 3.6


class IcmpSettings(_Strict):
    """A burst of echo requests."""

    count: Annotated[int, Field(ge=1, le=100)] = 5
    spacing: Duration = 0.020
    timeout: Duration = 1.0
    size: Annotated[int, Field(ge=0, le=1472)] = 56


class TcpSettings(_Strict):
    """A TCP connect to host:port."""

    port: Port
    timeout: Duration = 1.0


class HttpSettings(_Strict):
    """An HTTP(S) GET of the point's status page."""

    scheme: Literal["http", "https"] = "http"
    port: Port | None = None
    path: str = "/"
    status: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=list)
    body_regex: str | None = None
    timeout: Duration = 2.0
    tls_verify: bool = True
    cert_min_days: Annotated[int, Field(ge=0)] = 14

    @field_validator("path")
    @classmethod
    def _path_starts_with_slash(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must start with '/'")
        return value

    @field_validator("body_regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{value!r} is not a valid regular expression: {exc}") from None
        return value


class SipSettings(_Strict):
    """SIP OPTIONS keepalive."""

    transport: Literal["udp", "tcp"] = "udp"
    port: Port = 5060
    timeout: Duration = 1.0
    alive_codes: list[Annotated[int, Field(ge=100, le=699)]] | None = None


class MediaSettings(_Strict):
    """A paced stream of RTP-sized UDP packets to an echo reflector."""

    port: Port = 7078
    packets: Annotated[int, Field(ge=1, le=10_000)] = 50
    # 12-byte RTP header + 16-byte probe tag (nonce, send time) is the smallest packet.
    size: Annotated[int, Field(ge=28, le=1472)] = 172
    pacing: Duration = 0.020
    every: Duration = 30.0
    timeout: Duration = 1.0


ProbeName = Literal["icmp", "tcp", "http", "sip", "media"]

#: probes that prove a point is reachable when no ``reachable_by`` is given
REACHABILITY_PROBES = ("icmp", "tcp", "sip")


class Profile(_Strict):
    """A named set of probes, reused across points (like blackbox_exporter's modules).

    ``reachable_by`` names the probes that decide reachability: the point is
    reachable in a cycle when any of them succeeds; while it is reachable, any
    failing probe makes it ``degraded`` (e.g. http failing alone), never ``down``.
    Default: icmp, tcp and sip, whichever the profile runs (or every probe it
    runs, if it runs none of those).
    """

    icmp: IcmpSettings | None = None
    tcp: TcpSettings | None = None
    http: HttpSettings | None = None
    sip: SipSettings | None = None
    media: MediaSettings | None = None
    reachable_by: list[ProbeName] | None = None

    @model_validator(mode="after")
    def _reachable_by_runs(self) -> Profile:
        runs = self.probes()
        for name in self.reachable_by or ():
            if name not in runs:
                raise ValueError(
                    f"reachable_by names {name!r}, which this profile does not run"
                    f" (it runs: {', '.join(runs) or 'nothing'})"
                )
        return self

    def probes(self) -> list[str]:
        """Names of the probes this profile runs, in canonical order."""
        return [name for name in PROBE_TYPES if getattr(self, name) is not None]

    def reachability(self) -> tuple[str, ...]:
        """The probes that decide reachability (see the class docstring)."""
        if self.reachable_by is not None:
            return tuple(self.reachable_by)
        runs = self.probes()
        return tuple(p for p in runs if p in REACHABILITY_PROBES) or tuple(runs)


_WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _parse_clock(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 22:00 as the sexagesimal number 1320
        value = f"{value // 60:02d}:{value % 60:02d}"
    if not isinstance(value, str) or not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value.strip()):
        raise ValueError(f"{value!r} is not a time of day: write HH:MM, e.g. 22:00")
    return value.strip()


def _parse_local_datetime(value: object) -> str:
    text = str(value).strip() if isinstance(value, str | datetime.datetime) else ""
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r} is not a date and time: write e.g. 2026-11-26 08:00") from None
    if parsed.tzinfo is not None:
        raise ValueError(f"{value!r}: leave out the UTC offset; monitor.timezone applies")
    return parsed.isoformat(sep=" ", timespec="minutes")


ClockTime = Annotated[str, BeforeValidator(_parse_clock)]
LocalDateTime = Annotated[str, BeforeValidator(_parse_local_datetime)]


class MaintenanceWindow(_Strict):
    """Planned work on some points (and everything below them): measured, not alerted.

    One-off: ``start`` and ``end`` (local date and time). Recurring: ``from`` and
    ``to`` (HH:MM, may wrap past midnight) on ``days`` (default every day). Times
    are in ``monitor.timezone``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    points: Annotated[list[PointId], Field(min_length=1)]
    reason: str = "planned maintenance"
    start: LocalDateTime | None = None
    end: LocalDateTime | None = None
    days: list[Weekday] | None = None
    from_: ClockTime | None = Field(default=None, alias="from")
    to: ClockTime | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> MaintenanceWindow:
        one_off = self.start is not None or self.end is not None
        recurring = self.from_ is not None or self.to is not None or self.days is not None
        if one_off == recurring:
            raise ValueError("give either start and end (one-off) or from and to (recurring)")
        if one_off and (self.start is None or self.end is None or self.end <= self.start):
            raise ValueError("a one-off window needs start and end, with end after start")
        if recurring and (self.from_ is None or self.to is None or self.from_ == self.to):
            raise ValueError("a recurring window needs from and to (HH:MM), and they must differ")
        return self

    def active(self, local: datetime.datetime) -> bool:
        """Whether this window covers the naive local time ``local``."""
        if self.start is not None and self.end is not None:
            stamp = local.isoformat(sep=" ", timespec="minutes")
            return self.start <= stamp < self.end
        assert self.from_ is not None and self.to is not None
        clock = local.strftime("%H:%M")
        day = _WEEKDAYS[local.weekday()]
        yesterday = _WEEKDAYS[(local.weekday() - 1) % 7]
        days: list[str] = list(self.days or _WEEKDAYS)
        if self.from_ < self.to:
            return day in days and self.from_ <= clock < self.to
        # wraps midnight: the evening part belongs to `day`, the morning part to the day before
        return (day in days and clock >= self.from_) or (yesterday in days and clock < self.to)


class PointSpec(_Strict):
    """A meeting point as written in the file; children are reached through its uplink."""

    id: PointId
    name: Name
    host: Host
    profile: str | None = None
    level: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")] | None = None
    parent: PointId | None = None
    points: list[PointSpec] = Field(default_factory=list)


class InventorySpec(_Strict):
    """The whole file."""

    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    profiles: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")], Profile] = Field(
        default_factory=dict
    )
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)
    points: Annotated[list[PointSpec], Field(min_length=1)]
