"""`confmon run` end to end: the 450 Hanoi points in the lab, a district cut, a real Prometheus."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from monitor.lab.impairment import Impairment
from tests.commands.running import get_json, hanoi_lab, running, until
from tests.prometheus import prometheus

INTERVAL = 2.0


def scrape_values(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


async def test_run_against_the_lab_district_cut(tmp_path: Path) -> None:
    """A cut district HQ goes down within fail_after × interval, its communes unreachable; all outputs agree."""
    inv = hanoi_lab("127.32.0.1", interval=INTERVAL, stale_after=10.0)
    async with running(tmp_path, inv) as (run, lab):
        assert lab is not None
        s, base, config, proc = run.session, run.base, run.config, run.proc

        async def ready() -> bool:
            try:
                return (await get_json(s, f"{base}/api/v1/status"))["states"]["up"] == 450
            except (aiohttp.ClientError, OSError):
                return False

        await until(ready, 30, "all 450 lab points up")

        lab.set_impairment("ba-vi", Impairment(down=True))

        async def district_down() -> bool:
            states = (await get_json(s, f"{base}/api/v1/status"))["states"]
            return bool(states["down"] == 1 and states["unreachable"] == 29)

        # fail_after cycles of the interval, plus one for the cut to meet a probe: a few
        # seconds; the bound only guards against a hang on a loaded machine (how fast it is
        # is measured in bench/bench_alerts.py, not asserted here)
        await until(district_down, 12 * INTERVAL, "Ba Vì down, 29 communes unreachable")

        points = (await get_json(s, f"{base}/api/v1/points?district=ba-vi"))["points"]
        states = {p["id"]: p["state"] for p in points}
        assert states.pop("ba-vi") == "down"
        assert set(states.values()) == {"unreachable"} and len(states) == 29
        async with s.get(f"{base}/metrics") as resp:
            samples = scrape_values(await resp.text())
        assert samples[("confmon_points", frozenset({("state", "down")}))] == 1
        assert samples[("confmon_points", frozenset({("state", "unreachable")}))] == 29
        assert (
            samples[
                (
                    "confmon_point_up",
                    frozenset({("point", "ba-vi"), ("district", "ba-vi"), ("level", "district")}),
                )
            ]
            == 0
        )
        assert (
            samples[
                (
                    "confmon_district_points",
                    frozenset({("district", "ba-vi"), ("state", "unreachable")}),
                )
            ]
            == 29
        )
        events = (await get_json(s, f"{base}/api/v1/events?point=ba-vi"))["events"]
        assert events[0]["to"] == "down" and events[0]["name"] == "Huyện Ba Vì"

        async with prometheus(tmp_path, [base.removeprefix("http://")]) as prom:
            result = await prom.wait_for('confmon_points{state="unreachable"}')
            assert float(result[0]["value"][1]) == 29
            ready_ratio = await prom.query("confmon_readiness_ratio")
            assert abs(float(ready_ratio[0]["value"][1]) - 420 / 450) < 1e-9

        # SIGHUP re-reads the config, keeping states
        config.write_text(
            config.read_text(encoding="utf-8").replace(
                "Hội nghị HĐND TP Hà Nội", "Phiên họp thứ 2"
            ),
            encoding="utf-8",
        )
        proc.send_signal(signal.SIGHUP)

        async def renamed() -> bool:
            return bool((await get_json(s, f"{base}/api/v1/status"))["name"] == "Phiên họp thứ 2")

        await until(renamed, 10, "reload by SIGHUP")
        assert (await get_json(s, f"{base}/api/v1/points/ba-vi"))["state"] == "down"

        repaired = time.time()
        lab.clear("ba-vi")
        took = await until(ready, 30 * INTERVAL, "Ba Vì back up")
        print(f"Ba Vì repaired: all up {took:.1f} s after the repair")
        # straight back to up: no room kept yellow by a media result taken during the
        # outage (they once stayed degraded until the next media cycle, 30 s later)
        after = (await get_json(s, f"{base}/api/v1/events?district=ba-vi&limit=1000"))["events"]
        back = [e for e in after if e["at"] >= repaired]
        assert back and {e["to"] for e in back} == {"up"}, back
    assert '"message": "shutting down"' in run.log()
    assert run.state_db.stat().st_size > 0
