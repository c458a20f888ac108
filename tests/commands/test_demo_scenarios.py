"""The operator's question — what is broken, where, since when, why — answered on an 80×24
screen in the shipped scenarios, played by the real demo (lab, monitor, API) and read with
`confmon dashboard --snapshot`.

The three demos run side by side, each on a block of loopback addresses and ports of its
own, and each snapshot is taken once the monitor's API shows the scenario's moment (so a
loaded machine only makes the test slower). uplink-loss is in test_demo (tmux, keys);
rising-jitter needs two minutes of media figures and is drawn from the health model in
tests/dashboard/test_view.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.commands.running import until
from tests.commands.test_demo import demo_files
from tests.helpers import free_port

States = dict[str, str]


@dataclass
class Demo:
    base: str
    log: Path

    async def states(self, session: aiohttp.ClientSession) -> States:
        try:
            async with session.get(f"{self.base}/api/v1/points", timeout=5) as resp:
                return {p["id"]: p["state"] for p in (await resp.json())["points"]}
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError):
            return {}

    async def snapshot(self, out: Path, width: int = 80, height: int = 24) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "monitor",
            "dashboard",
            "--url",
            self.base,
            "--snapshot",
            str(out),
            "--width",
            str(width),
            "--height",
            str(height),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        return await asyncio.to_thread(out.read_text, encoding="utf-8")


@contextlib.asynccontextmanager
async def demo(tmp_path: Path, scenario: str, block: int) -> AsyncIterator[Demo]:
    await asyncio.to_thread(tmp_path.mkdir)
    inventory, _ = await asyncio.to_thread(demo_files, tmp_path)
    port = free_port()
    log = tmp_path / f"{scenario}.log"
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "monitor",
            "demo",
            "--no-dashboard",
            "-c",
            str(inventory),
            "--scenario",
            scenario,
            "--lab-base",
            f"127.{block}.0.1",
            "--listen",
            f"127.0.0.1:{port}",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err,
        )
    try:
        yield Demo(f"http://127.0.0.1:{port}", log)
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            code = await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert code == 0, log.read_text(encoding="utf-8")[-2000:]


async def at_moment(d: Demo, moment: Callable[[States], bool], what: str) -> None:
    async with aiohttp.ClientSession() as session:

        async def reached() -> bool:
            return moment(await d.states(session))

        await until(reached, 150, what)


def rows(screen: str, heading: str = "Needs attention") -> list[str]:
    """The lines of the screen's ``heading`` section."""
    lines = screen.splitlines()
    start = lines.index(heading) + 1
    return [ln for ln in lines[start:] if ln.startswith(" ")]


def fits(screen: str) -> None:
    lines = screen.splitlines()
    assert len(lines) <= 24 and all(len(ln) <= 80 for ln in lines), screen


async def the_recovery_morning(tmp_path: Path) -> None:
    """Three districts not connected and a commune answering 503: three outage rows, worst
    first, each with its uplink and since; then the commune, named with its district and
    the 503; the header counts the rooms down, not only readiness."""
    down = ("thach-that", "quoc-oai", "my-duc")
    async with demo(tmp_path / "recovery", "recovery", 91) as d:
        await at_moment(
            d,
            lambda s: (
                all(s.get(h) == "down" for h in down)
                and s.get("chuong-my.dong-phuong-yen") == "degraded"
            ),
            "three districts down and Đông Phương Yên degraded",
        )
        screen = await d.snapshot(tmp_path / "recovery.txt")
        wide = await d.snapshot(tmp_path / "recovery-200x60.txt", 200, 60)
    fits(screen)
    attention = rows(screen)
    outages = attention[:3]
    for name in ("Huyện Thạch Thất", "Huyện Quốc Oai", "Huyện Mỹ Đức"):
        (row,) = [r for r in outages if f"✖ {name} — uplink down" in r]
        assert re.search(r"uplink down \d\d:\d\d:\d\d · \d+ unreachable", row), row
    # the commune comes next; on a loaded machine another room may be degraded by its
    # measured delay, and then the fourth row can be "… and 2 more": 200×60 has room
    commune = "◐ Xã Đông Phương Yên (Chương Mỹ) — degraded since"
    assert attention[3].startswith(f" {commune}") or attention[3].startswith("   … and "), screen
    (row,) = [ln for ln in wide.splitlines() if commune in ln]
    assert re.search(re.escape(commune) + r" \d\d:\d\d:\d\d · sip: 503", row), wide
    assert re.search(r"\d+ rooms down", screen.splitlines()[0]), screen


async def the_loose_cable(tmp_path: Path) -> None:
    """Xã Tản Lĩnh's long drop: one row naming the commune with its district, down since
    when and why; its district's row in the grid says a room is down."""
    async with demo(tmp_path / "flapping", "flapping", 92) as d:
        await at_moment(d, lambda s: s.get("ba-vi.tan-linh") == "down", "Tản Lĩnh down")
        screen = await d.snapshot(tmp_path / "flapping.txt")
    fits(screen)
    (row,) = [r for r in rows(screen) if "Tản Lĩnh" in r]
    assert row.startswith(" ✖ Xã Tản Lĩnh (Ba Vì) — down since "), screen
    assert "failed cycles" in row or "no response" in row, row
    assert "✖ 1 down" in screen, screen
    (cells,) = re.findall(r"Ba Vì +(\S+) +29/30", screen)
    assert cells.startswith("✖"), screen  # the bad room comes first in its district's row


async def the_lost_agent(tmp_path: Path) -> None:
    """Đông Anh's agent stops reporting: a monitoring gap, not an outage: no room counted
    down, one row for the district's gap."""
    async with demo(tmp_path / "lost-agent", "lost-agent", 93) as d:

        def dong_anh(s: States) -> set[str]:
            return {v for k, v in s.items() if k.startswith("dong-anh")}

        await at_moment(d, lambda s: dong_anh(s) == {"up"}, "Đông Anh measured up first")
        await at_moment(d, lambda s: dong_anh(s) == {"unknown"}, "Đông Anh's points unknown")
        screen = await d.snapshot(tmp_path / "lost-agent.txt")
    fits(screen)
    attention = rows(screen)
    (row,) = [r for r in attention if "Đông Anh" in r]
    assert row.startswith(" ? Huyện Đông Anh: 25 rooms not monitored since "), screen
    assert "✖ 0 down" in screen and "down" not in screen.splitlines()[0], screen


async def test_every_scenario_answers_what_where_since_and_why_at_80x24(tmp_path: Path) -> None:
    await asyncio.gather(
        the_recovery_morning(tmp_path), the_loose_cable(tmp_path), the_lost_agent(tmp_path)
    )
