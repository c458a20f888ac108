"""A small inventory and helpers shared by the output tests."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from monitor.app import App, AppOptions, open_app
from monitor.core.ingest import IngestReport
from monitor.core.results import ProbeResult, ResultBatch
from monitor.core.service import Monitor
from monitor.inventory import Inventory, load_inventory, parse_inventory
from tests.helpers import free_port

#: the agent name the tests' results come from
TEST_AGENT = "test"
_seq = itertools.count(1)


def feed(
    m: Monitor, point: str, results: Sequence[ProbeResult], at: float | None = None
) -> IngestReport:
    """One cycle of ``point``'s results through the monitor's ingest, received at ``at``
    (default: now)."""
    at = time.time() if at is None else at
    if TEST_AGENT not in m.ingest.agents():
        m.ingest.assign(TEST_AGENT, None)
    batch = ResultBatch(TEST_AGENT, next(_seq), at, tuple((point, r) for r in results))
    return m.ingest.accept(batch, at)


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
    """A started monitor (no probing) with its API on a free loopback port: (monitor, base URL).

    With ``text``, the inventory is written to tmp_path/test.yaml and the monitor can reload
    it; with ``text=None`` it is built in memory and has no config file (as in the demo).
    """
    async with serving_app(tmp_path, text=text, token=token) as (app, base):
        yield app.monitor, base


@contextlib.asynccontextmanager
async def serving_app(
    tmp_path: Path, *, text: str | None = CONFIG, token: str | None = None
) -> AsyncIterator[tuple[App, str]]:
    """As :func:`serving`, but the whole app (for reload)."""
    config = None
    if text is None:
        inv = inventory()
    else:
        config = tmp_path / "test.yaml"
        config.write_text(text, encoding="utf-8")
        inv = load_inventory(config)
    port = free_port()
    opts = AppOptions(
        config_path=config,
        state_db=tmp_path / "ev.sqlite3",
        listen=("127.0.0.1", port),
        token=token,
        probe=False,
    )
    async with open_app(inv, opts) as app:
        yield app, f"http://127.0.0.1:{port}"
