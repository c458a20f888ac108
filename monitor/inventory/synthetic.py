"""Synthetic inventories of any size, for benchmarks and scale tests.

``synthetic_inventory(10_000)`` gives 30 district headquarters with the rest of
the points spread evenly below them, hosts on the lab's loopback plan, validated
by the same rules as a file.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from monitor.inventory.load import Inventory, from_source
from monitor.inventory.source import Source

__all__ = ["FULL_PROFILE", "synthetic_inventory"]

#: icmp + sip every interval, media every 30 s: the profile of a real meeting room
FULL_PROFILE: dict[str, Any] = {
    "icmp": {"count": 5, "spacing": "20ms", "timeout": "1s"},
    "sip": {"transport": "udp", "port": 5060, "timeout": "1s"},
    "media": {"port": 7078, "packets": 50, "pacing": "20ms", "every": "30s"},
}


def synthetic_inventory(
    points: int,
    *,
    districts: int = 30,
    profile: dict[str, Any] | None = None,
    monitor: dict[str, Any] | None = None,
    first_host: str = "127.20.0.1",
) -> Inventory:
    """``points`` points (``districts`` of them top-level), hosts numbered from ``first_host``."""
    districts = max(1, min(districts, points))
    base = ipaddress.IPv4Address(first_host)
    tree: list[dict[str, Any]] = []
    for d in range(districts):
        tree.append(
            {
                "id": f"d{d:02d}",
                "name": f"District {d:02d}",
                "host": str(base + d),
                "profile": "room",
            }
        )
    for i in range(points - districts):
        parent = tree[i % districts]
        parent.setdefault("points", []).append(
            {
                "id": f"{parent['id']}.c{i:05d}",
                "name": f"Commune {i:05d}",
                "host": str(base + districts + i),
            }
        )
    data = {"monitor": monitor or {}, "profiles": {"room": profile or FULL_PROFILE}, "points": tree}
    return from_source(Source(file=f"<synthetic {points} points>", data=data))
