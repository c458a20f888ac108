"""The inventory schema: settings, thresholds, probe profiles and the tree of points.

These pydantic models are the *strict parse* step: defaults first, unknown keys
rejected, every value checked. Rules that need the whole tree (duplicate ids,
unknown profiles, parents, cycles) live in :mod:`monitor.inventory.load`.
"""

from __future__ import annotations

import datetime
import re
import zoneinfo
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    create_model,
    model_validator,
)

from monitor.alerts.config import AlertsSettings
from monitor.inventory.types import Duration, Host, Name, PointId, Ratio, Strict
from monitor.inventory.units import format_duration
from monitor.probes.base import TICK
from monitor.probes.httpspec import HttpSettings
from monitor.probes.icmp import IcmpSettings
from monitor.probes.media import MediaSettings
from monitor.probes.registry import PROBE_TYPES, REACHABILITY_PROBES, SPECS
from monitor.probes.sip import SipSettings
from monitor.probes.tcp import TcpSettings
from monitor.text import quoted

__all__ = [
    "PROBE_TYPES",
    "REACHABILITY_PROBES",
    "AgentsSettings",
    "AlertsSettings",
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

# The probes' settings models live with their probes (monitor.probes.<name>) and the
# names of the probes in monitor.probes.registry; they are re-exported here because
# this module is the schema of the file.


def _check_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a name too long for a path; ValueError: '..', NUL, an absolute path
        raise ValueError(
            f"{quoted(value)} is not a known time zone (e.g. Asia/Ho_Chi_Minh)"
        ) from None
    return value


def _on_the_grid(value: float) -> float:
    if value < TICK:
        raise ValueError(
            f"{format_duration(value)} is shorter than the scheduler's {format_duration(TICK)}"
            f" grid: write at least {format_duration(TICK)} (5s is usual)"
        )
    return value


class MonitorSettings(Strict):
    """Timing and readiness settings of the whole monitor."""

    name: Name = "confmon"
    interval: Annotated[Duration, AfterValidator(_on_the_grid)] = 5.0
    fail_after: Annotated[int, Field(ge=1, le=100)] = 2
    recover_after: Annotated[int, Field(ge=1, le=100)] = 2
    stale_after: Duration = 20.0
    readiness_target: Ratio = 0.98
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "Asia/Ho_Chi_Minh"
    concurrency: Annotated[int, Field(ge=1, le=100_000)] = 512
    #: how long state changes stay in the event log
    event_retention: Duration = 30 * 86400.0
    #: how far back quality (loss, rtt, jitter, MOS) is judged: the packets of this window
    quality_window: Duration = 60.0


class Thresholds(Strict):
    """Crossing any of these makes a reachable point ``degraded``."""

    rtt: Duration = 0.150
    jitter: Duration = 0.030
    loss: Ratio = 0.02
    mos: Annotated[float, Field(ge=1.0, le=4.5)] = 3.6


class _Profile(Strict):
    """A named set of probes, reused across points (like blackbox_exporter's modules).

    Each cycle answers two questions about a point:

    - ``reachable_by``: *is the network path up?* The path is up in a cycle when any
      of these probes succeeds; only a point whose path is down makes the points
      behind it ``unreachable``. Default: icmp, tcp and sip, whichever the profile
      runs (or every probe it runs, if it runs none of those).
    - ``required``: *can the room take part in the call?* Every one of these must
      succeed; a point whose path is up but a required probe fails is ``down`` on
      its own (e.g. "host answers icmp; sip: no response"), and the points behind it
      are not made unreachable by it. Default: sip when the profile runs it, else the
      ``reachable_by`` probes.

    Any other probe failing while the path is up (http alone, say) makes the point
    ``degraded``, never ``down``. Both lists, when given, must not be empty and may
    only name probes the profile runs.
    """

    if TYPE_CHECKING:
        # At run time the fields come from the registry (see Profile below); declared
        # here so that type checkers know ``profile.icmp``, ``profile.media.every``, ...
        icmp: IcmpSettings | None = None
        tcp: TcpSettings | None = None
        http: HttpSettings | None = None
        sip: SipSettings | None = None
        media: MediaSettings | None = None
        reachable_by: list[str] | None = None
        required: list[str] | None = None

    @model_validator(mode="after")
    def _lists_name_probes_it_runs(self) -> Self:
        runs = self.probes()
        for key in ("reachable_by", "required"):
            names: list[str] | None = getattr(self, key)
            if names is None:
                continue
            if not names:
                raise ValueError(
                    f"{key} is empty: name at least one probe the profile runs"
                    f" ({', '.join(runs) or 'none yet'}), or leave it out for the default"
                )
            for name in names:
                if name not in runs:
                    raise ValueError(
                        f"{key} names {quoted(name)}, which this profile does not run"
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

    def requirement(self) -> tuple[str, ...]:
        """The probes the room needs to take part in the call (see the class docstring)."""
        if self.required is not None:
            return tuple(self.required)
        if getattr(self, "sip", None) is not None:
            return ("sip",)
        return self.reachability()


def _profile_fields() -> dict[str, Any]:
    """One optional field per registered probe, in canonical order, then ``reachable_by``
    and ``required``."""
    fields: dict[str, Any] = {name: (spec.settings | None, None) for name, spec in SPECS.items()}
    probe_name = Literal[PROBE_TYPES]  # type: ignore[valid-type]
    fields["reachable_by"] = (list[probe_name] | None, None)
    fields["required"] = (list[probe_name] | None, None)
    return fields


if TYPE_CHECKING:
    Profile = _Profile
else:
    Profile = create_model(
        "Profile",
        __base__=_Profile,
        __module__=__name__,
        __doc__=_Profile.__doc__,
        **_profile_fields(),
    )


_WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _parse_clock(value: object) -> str:
    # The loader keeps an unquoted 22:00 as text (YAML 1.1 would read the number 1320).
    match = (
        re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value.strip())
        if isinstance(value, str)
        else None
    )
    if match is None:
        raise ValueError(
            f"{quoted(value)} is not a time of day: write HH:MM (00:00 to 23:59), e.g. 22:00"
        )
    return f"{int(match.group(1)):02d}:{match.group(2)}"


def _parse_local_datetime(value: object) -> str:
    example = "write e.g. 2026-11-26 08:00"
    if isinstance(value, datetime.datetime):  # written with an explicit !!timestamp tag
        parsed = value
    elif isinstance(value, datetime.date):
        day = value.isoformat()
        raise ValueError(f"{day} has no time of day: write e.g. {day} 08:00")
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError(f"{quoted(value)} has no time of day: write e.g. {text} 08:00")
        try:
            parsed = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{quoted(value)} is not a date and time: {example}") from None
    else:
        raise ValueError(f"{quoted(value)} is not a date and time: {example}")
    if parsed.tzinfo is not None:
        raise ValueError(f"{quoted(value)}: leave out the UTC offset; monitor.timezone applies")
    return parsed.isoformat(sep=" ", timespec="minutes")


ClockTime = Annotated[str, BeforeValidator(_parse_clock)]
LocalDateTime = Annotated[str, BeforeValidator(_parse_local_datetime)]


class MaintenanceWindow(Strict):
    """Planned work on some points (and everything below them): measured, not alerted.

    One-off: ``start`` and ``end`` (local date and time). Recurring: ``from`` and
    ``to`` (HH:MM, may wrap past midnight) on ``days`` (default every day). Times
    are in ``monitor.timezone``.
    """

    # no populate_by_name: the file says "from"; "from_" is only this class's spelling
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    points: Annotated[list[PointId], Field(min_length=1)]
    reason: Name = "planned maintenance"
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
        if self.days is not None and not self.days:
            raise ValueError(
                "days is empty: name the days (mon ... sun), or leave it out for every day"
            )
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


class PointSpec(Strict):
    """A meeting point as written in the file; children are reached through its uplink."""

    id: PointId
    name: Name
    host: Host
    profile: str | None = None
    level: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$", max_length=40)] | None = None
    parent: PointId | None = None
    points: list[PointSpec] = Field(default_factory=list)


ProfileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
#: an agent id: one MQTT topic level and a broker user name (see monitor.transport.mqtt)
AgentId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class AgentsSettings(Strict):
    """How ``confmon server`` shares the points out among its agents.

    ``assign: balanced`` (the default) spreads whole districts over the agents online
    and moves a lost agent's districts to the others; ``by-district`` follows
    ``districts`` (agent id -> the district ids it probes) and leaves a lost agent's
    points as a monitoring gap. ``replicas: 2`` has two agents probe every point.
    """

    assign: Literal["balanced", "by-district"] = "balanced"
    replicas: Annotated[int, Field(ge=1, le=3)] = 1
    districts: dict[AgentId, Annotated[list[PointId], Field(min_length=1)]] = Field(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _districts_for_by_district(self) -> Self:
        if self.assign == "by-district" and not self.districts:
            raise ValueError(
                "assign: by-district needs districts: (agent id -> the district ids it probes)"
            )
        return self


class InventorySpec(Strict):
    """The whole file."""

    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    profiles: dict[ProfileName, Profile] = Field(default_factory=dict)
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)
    agents: AgentsSettings = Field(default_factory=AgentsSettings)
    alerts: AlertsSettings = Field(default_factory=AlertsSettings)
    points: Annotated[list[PointSpec], Field(min_length=1)]
