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

from monitor.inventory.types import Duration, Host, Name, PointId, Ratio, Strict
from monitor.probes.httpspec import HttpSettings
from monitor.probes.icmp import IcmpSettings
from monitor.probes.media import MediaSettings
from monitor.probes.registry import PROBE_TYPES, REACHABILITY_PROBES, SPECS
from monitor.probes.sip import SipSettings
from monitor.probes.tcp import TcpSettings

__all__ = [
    "PROBE_TYPES",
    "REACHABILITY_PROBES",
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
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a known time zone (e.g. Asia/Ho_Chi_Minh)") from None
    return value


class MonitorSettings(Strict):
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
                        f"{key} names {name!r}, which this profile does not run"
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


class MaintenanceWindow(Strict):
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


class PointSpec(Strict):
    """A meeting point as written in the file; children are reached through its uplink."""

    id: PointId
    name: Name
    host: Host
    profile: str | None = None
    level: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")] | None = None
    parent: PointId | None = None
    points: list[PointSpec] = Field(default_factory=list)


class InventorySpec(Strict):
    """The whole file."""

    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    profiles: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")], Profile] = Field(
        default_factory=dict
    )
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)
    points: Annotated[list[PointSpec], Field(min_length=1)]
