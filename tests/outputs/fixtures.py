"""A small inventory and helpers shared by the output tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from monitor.core.results import ProbeResult
from monitor.core.service import Monitor
from monitor.inventory import Inventory, load_inventory, parse_inventory
from monitor.outputs.api import start_api
from tests.helpers import free_port

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


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, *, text: str | None = CONFIG, token: str | None = None
) -> AsyncIterator[tuple[Monitor, str]]:
    """A started Monitor (no probing) with its API on a free loopback port: (monitor, base URL).

    With ``text``, the inventory is written to tmp_path/test.yaml and the monitor can reload
    it; with ``text=None`` it is built in memory and has no config file (as in the demo).
    """
    if text is None:
        monitor = Monitor(inventory(), state_db=tmp_path / "ev.sqlite3", probe=False)
    else:
        config = tmp_path / "test.yaml"
        config.write_text(text, encoding="utf-8")
        monitor = Monitor(
            load_inventory(config),
            state_db=tmp_path / "ev.sqlite3",
            probe=False,
            config_path=config,
        )
    await monitor.start()
    port = free_port()
    runner = await start_api(monitor, "127.0.0.1", port, token)
    try:
        yield monitor, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        await monitor.stop()
