"""Which agent probes which points, and the retained message that tells an agent its share.

**Sharding** is the server's. Two modes:

- ``by-district``: the config names, per agent, the districts it probes (an agent
  inside Ba Vì's network probes Ba Vì). A district whose agent is offline stays
  with it: its points go ``unknown`` (never ``down``) until the agent returns.
- ``balanced``: every point goes to the agents online by rendezvous hashing
  (highest random weight: each (point, agent) pair gets a pseudo-random score, a
  point goes to its top-scoring agents). It needs no coordination and moves as
  little as possible: when an agent leaves, only *its* points move, spread evenly
  over the others; when one joins, it takes an even share and nothing else moves.
  Points are hashed by their district, not one by one, so that a district's
  headquarters and communes are probed from the same vantage (the health model
  judges a commune behind its headquarters' path; two vantages for one district
  would judge that path from two places).

With ``replicas: 2`` each district gets the top two agents, so every point is
probed from two vantage points (see :mod:`monitor.core.vantage`).

**The assignment** is published retained on ``confmon/v1/agents/{agent}/assignment``
as JSON: ``{"v": 1, "agent", "version", "issued_at", "config"}``, where ``config``
is an inventory document (the file's own shape, flattened to the agent's points,
with the profiles they use and the monitor settings) or ``null`` for "nothing to
probe". The agent validates it with the same loader as a file, so a bad or
hostile assignment is refused with the same messages. ``version`` increases with
every change for that agent; an agent ignores a version it already runs.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from monitor.errors import ConfigError, ConfmonError
from monitor.inventory import Inventory, parse_inventory

__all__ = [
    "MAX_ASSIGNMENT_BYTES",
    "Assignment",
    "AssignmentError",
    "decode_assignment",
    "encode_assignment",
    "shard",
    "subset_document",
]

#: an assignment for 10,000 points is about 1.5 MB; anything above this is refused unread
MAX_ASSIGNMENT_BYTES = 8 * 1024 * 1024


class AssignmentError(ConfmonError):
    """An assignment message that cannot be used (the agent keeps what it runs)."""


@dataclass(frozen=True)
class Assignment:
    """An agent's share: ``inventory`` is ``None`` when it has nothing to probe."""

    agent: str
    version: int
    issued_at: float
    inventory: Inventory | None

    @property
    def points(self) -> frozenset[str]:
        return frozenset(self.inventory.points) if self.inventory is not None else frozenset()


def _score(agent: str, key: str) -> int:
    digest = hashlib.blake2b(f"{agent}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard(
    inv: Inventory,
    agents: Iterable[str],
    *,
    mode: str = "balanced",
    replicas: int = 1,
    districts_of: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, frozenset[str]]:
    """``agent -> point ids`` for the ``agents`` given (the ones online, for ``balanced``).

    Every agent given gets an entry (perhaps empty: it is told it has nothing to do).
    ``by-district`` takes ``districts_of`` (agent -> district ids) and ignores which
    agents are online; ``balanced`` gives each district to its ``replicas`` top
    rendezvous scores among ``agents``.
    """
    names = sorted(set(agents))
    out: dict[str, set[str]] = {a: set() for a in names}
    if mode == "by-district":
        for agent, districts in (districts_of or {}).items():
            share = out.setdefault(agent, set())
            for d in districts:
                if d in inv.points:
                    share.add(d)
                    share.update(p.id for p in inv.descendants(d))
        return {a: frozenset(p) for a, p in out.items()}
    if mode != "balanced":
        raise ValueError(f"unknown assignment mode {mode!r}")
    if not names:
        return {}
    k = max(1, min(replicas, len(names)))
    for district in inv.roots:
        ranked = sorted(names, key=lambda a: _score(a, district), reverse=True)
        members = [district, *(p.id for p in inv.descendants(district))]
        for agent in ranked[:k]:
            out[agent].update(members)
    return {a: frozenset(p) for a, p in out.items()}


def subset_document(inv: Inventory, points: Iterable[str]) -> dict[str, Any] | None:
    """An inventory document holding only ``points`` (flat), the profiles they use and the
    settings: what an agent needs to probe them. ``None`` when ``points`` is empty."""
    chosen = set(points)  # once: per point it was quadratic (4 s for 10,000 points)
    wanted = [p for p in inv.points.values() if p.id in chosen]
    if not wanted:
        return None
    used = sorted({p.profile for p in wanted})
    return {
        "monitor": inv.settings.model_dump(mode="json"),
        "thresholds": inv.thresholds.model_dump(mode="json"),
        "profiles": {
            name: inv.profiles[name].model_dump(mode="json", exclude_none=True) for name in used
        },
        "points": [
            {"id": p.id, "name": p.name, "host": p.host, "profile": p.profile, "level": p.level}
            for p in wanted
        ],
    }


def encode_assignment(
    agent: str, version: int, inv: Inventory, points: Iterable[str], now: float | None = None
) -> bytes:
    """The retained assignment message for ``agent``."""
    body = {
        "v": 1,
        "agent": agent,
        "version": version,
        "issued_at": time.time() if now is None else now,
        "config": subset_document(inv, points),
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode_assignment(data: bytes, agent: str) -> Assignment:
    """Validate an assignment message for ``agent``; :class:`AssignmentError` says why not."""
    if len(data) > MAX_ASSIGNMENT_BYTES:
        raise AssignmentError(f"assignment of {len(data)} bytes is over {MAX_ASSIGNMENT_BYTES}")
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        raise AssignmentError("assignment is not JSON") from None
    if not isinstance(body, dict) or body.get("v") != 1:
        raise AssignmentError("assignment is not version 1 of confmon's format")
    if body.get("agent") != agent:
        raise AssignmentError("assignment is addressed to another agent")
    version, issued = body.get("version"), body.get("issued_at")
    if type(version) is not int or version < 0:
        raise AssignmentError("assignment has no valid version")
    if isinstance(issued, bool) or not isinstance(issued, int | float):
        raise AssignmentError("assignment has no valid issued_at")
    config = body.get("config")
    inventory = None
    if config is not None:
        try:
            inventory = parse_inventory(
                json.dumps(config, ensure_ascii=False), f"assignment v{version}"
            )
        except ConfigError as exc:
            raise AssignmentError(f"assignment refused: {exc}") from None
    return Assignment(agent, version, float(issued), inventory)
