"""A real Prometheus scrapes confmon's /metrics and answers PromQL about the points."""

from __future__ import annotations

from pathlib import Path

from monitor.api import start_api
from monitor.inventory import load_inventory
from monitor.service import Monitor
from tests.helpers import free_port
from tests.outputs.fixtures import CONFIG
from tests.outputs.test_api import feed_district_down
from tests.prometheus import prometheus


async def test_prometheus_scrapes_and_queries_points(tmp_path: Path) -> None:
    """confmon_points and per-point series are queryable through Prometheus's HTTP API."""
    config = tmp_path / "test.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    monitor = Monitor(load_inventory(config), state_db=tmp_path / "ev.sqlite3", probe=False)
    await monitor.start()
    port = free_port()
    runner = await start_api(monitor, "127.0.0.1", port)
    try:
        feed_district_down(monitor)
        async with prometheus(tmp_path, [f"127.0.0.1:{port}"]) as prom:
            down = await prom.wait_for('confmon_points{state="down"}')
            assert float(down[0]["value"][1]) == 1
            unreachable = await prom.query('confmon_points{state="unreachable"}')
            assert float(unreachable[0]["value"][1]) == 2
            up = await prom.query("up")
            assert up[0]["value"][1] == "1"
            # the join target carries the Vietnamese names intact
            info = await prom.query('confmon_point_info{point="ba-vi.tan-linh"}')
            assert info[0]["metric"]["name"] == "Xã Tản Lĩnh"
            state = await prom.query('confmon_point_state{point="ba-vi.tan-linh"} == 1')
            assert state[0]["metric"]["state"] == "unreachable"
    finally:
        await runner.cleanup()
        await monitor.stop()
