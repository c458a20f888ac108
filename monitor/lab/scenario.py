"""Scripted incidents for the demo and operator training (``configs/scenarios/*.yaml``).

A scenario is a list of steps, each at a time offset from the start, acting on
points of the lab (by id or shell-style pattern, e.g. ``ba-vi.*``)::

    name: uplink-loss
    description: "Huyện Ba Vì loses its uplink, then comes back"
    steps:
      - {at: 15s, points: [ba-vi], impair: down, note: "Ba Vì headquarters uplink cut"}
      - {at: 75s, points: [ba-vi], clear: true, note: "uplink restored"}

``impair`` uses the lab's spelling (``down``, ``delay:40ms,jitter:10ms,loss:5%``,
``sip:503`` ...); impairing a headquarters affects every commune behind it, as a
real uplink would. ``clear`` removes the points' impairments. ``stale: true``
stops their results from reaching the monitor (a lost agent or a cut broker
link); ``stale: false`` lets them through again.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from monitor.errors import ConfigError, ConfigIssue
from monitor.inventory import Inventory
from monitor.inventory.source import load_yaml
from monitor.inventory.units import parse_duration
from monitor.inventory.validate import did_you_mean, validate
from monitor.lab.impairment import Impairment

__all__ = ["SCENARIO_DIR", "Scenario", "Step", "find_scenario", "load_scenario", "play"]

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "configs" / "scenarios"

log = logging.getLogger("confmon.scenario")


def _offset(value: object) -> float:
    """A time offset: a duration, or zero (``0``, ``0s``)."""
    if value in (0, "0", "0s"):
        return 0.0
    return parse_duration(value)


Offset = Annotated[float, BeforeValidator(_offset)]


class Step(BaseModel):
    """One action at one moment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: Offset
    points: Annotated[list[str], Field(min_length=1)]
    impair: str | None = None
    clear: bool = False
    stale: bool | None = None
    note: str = ""

    @field_validator("impair")
    @classmethod
    def _impairment_parses(cls, value: str | None) -> str | None:
        if value is not None:
            Impairment.parse(value)  # raises ValueError with the accepted spellings
        return value

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        actions = (self.impair is not None) + self.clear + (self.stale is not None)
        if actions != 1:
            raise ValueError("give exactly one of impair, clear: true, or stale: true/false")
        return self

    def impairment(self) -> Impairment:
        assert self.impair is not None
        return Impairment.parse(self.impair)


class Scenario(BaseModel):
    """A named, described list of steps."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    steps: Annotated[list[Step], Field(min_length=1)]


def find_scenario(name: str) -> Path:
    """A scenario by name (from configs/scenarios) or by path."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    candidate = SCENARIO_DIR / f"{name}.yaml"
    if candidate.exists():
        return candidate
    known = sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))
    raise ConfigError(
        [
            ConfigIssue(
                0,
                "",
                f"unknown scenario{did_you_mean(name, known)}; available: {', '.join(known) or 'none'}",
                name,
            )
        ]
    )


def load_scenario(path: Path, inv: Inventory) -> Scenario:
    """Load and check a scenario against an inventory: every pattern must match a point."""
    source = load_yaml(path)
    scenario = validate(source, Scenario, "a mapping with 'steps:'")
    issues = []
    for i, step in enumerate(scenario.steps):
        for j, pattern in enumerate(step.points):
            if not match(pattern, inv):
                issues.append(
                    source.issue(
                        ("steps", i, "points", j),
                        f"{pattern!r} matches no point{did_you_mean(pattern, list(inv.points))}",
                    )
                )
    if issues:
        raise ConfigError(issues)
    return scenario


def match(pattern: str, inv: Inventory) -> list[str]:
    """Point ids matching an id or a shell-style pattern."""
    if pattern in inv.points:
        return [pattern]
    return [pid for pid in inv.points if fnmatch.fnmatchcase(pid, pattern)]


async def play(
    scenario: Scenario,
    inv: Inventory,
    *,
    impair: Callable[[str, Impairment | None], None],
    stale: Callable[[str, bool], None],
    announce: Callable[[float, Step], None] | None = None,
    speed: float = 1.0,
) -> None:
    """Run the steps at their offsets (monotonic clock, no drift); returns after the last.

    ``speed`` plays the offsets that many times faster (2: a step at 60s comes at 30s);
    ``announce`` still gets the step's offset as written."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for step in sorted(scenario.steps, key=lambda s: s.at):
        await asyncio.sleep(max(0.0, start + step.at / speed - loop.time()))
        ids = [pid for pattern in step.points for pid in match(pattern, inv)]
        for pid in ids:
            if step.impair is not None:
                impair(pid, step.impairment())
            elif step.clear:
                impair(pid, None)
            elif step.stale is not None:
                stale(pid, step.stale)
        if announce is not None:
            announce(step.at, step)
        log.info(
            "scenario %s at %gs: %s %s",
            scenario.name,
            step.at,
            step.note or _what(step),
            ", ".join(step.points),
        )


def _what(step: Step) -> str:
    if step.impair is not None:
        return f"impair {step.impair}"
    if step.clear:
        return "clear"
    return "results stop" if step.stale else "results flow again"
