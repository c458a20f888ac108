"""A small inventory and helpers shared by the output tests."""

from __future__ import annotations

from monitor.inventory import Inventory, parse_inventory
from monitor.probes.base import ProbeResult

CONFIG = """
monitor: {name: "Hội nghị thử", interval: 5s, fail_after: 2, recover_after: 2, stale_after: 20s}
profiles:
  hq: {icmp: {}, sip: {}, media: {}, http: {}}
  room: {icmp: {}, sip: {}}
points:
  - id: ba-vi
    name: "Huyện Ba Vì"
    host: 10.21.0.1
    profile: hq
    points:
      - {id: ba-vi.tan-linh, name: "Xã Tản Lĩnh", host: 10.21.1.17, profile: room}
      - {id: ba-vi.ba-trai, name: "Xã \\"Ba\\" Trại", host: 10.21.1.18, profile: room}
  - {id: son-tay, name: "Thị xã Sơn Tây", host: 10.21.2.1, profile: room}
"""


def inventory() -> Inventory:
    return parse_inventory(CONFIG, "test.yaml")


def good(probe: str, at: float, **kw: float) -> ProbeResult:
    return ProbeResult(probe=probe, target="x", ok=True, at=at, duration=0.01, **kw)  # type: ignore[arg-type]


def bad(probe: str, at: float) -> ProbeResult:
    return ProbeResult(probe=probe, target="x", ok=False, at=at, duration=1.0, error="timeout")
