"""A real Prometheus scrapes confmon's /metrics and answers PromQL about the points."""

from __future__ import annotations

from pathlib import Path

from tests.outputs.fixtures import serving
from tests.outputs.test_api import feed_district_down
from tests.prometheus import prometheus


async def test_prometheus_scrapes_and_queries_points(tmp_path: Path) -> None:
    """confmon_points and per-point series are queryable through Prometheus's HTTP API."""
    async with serving(tmp_path) as (monitor, base):
        feed_district_down(monitor)
        async with prometheus(tmp_path, [base.removeprefix("http://")]) as prom:
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
