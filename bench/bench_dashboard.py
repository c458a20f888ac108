"""Benchmark: the dashboard's frame time and CPU, and how fast the demo starts.

Three measurements:

1. **Frame time** at 450 points, for 120×40, 200×60 and 80×24: one frame is
   ``monitor.dashboard.view.render`` plus printing it through a rich ``Console``
   (truecolor, forced terminal) into an ``io.StringIO``, i.e. everything the
   dashboard does per refresh except the write to the tty. The Snapshot is the
   Hanoi inventory (``configs/hanoi.yaml``) with Ba Vì's headquarters down, its 29
   communes unreachable, a few points down or degraded and the 1,000 events the
   screen keeps (the 450 first results, then changes), as
   ``tests/dashboard/test_view.py`` builds it. **The peer**, in the same run and
   interleaved frame by frame so that load hits both alike: the same data laid out
   the way rich invites one to write it, with ``rich.table.Table`` (a table of
   districts beside a "needs attention" table and an events table, in a grid
   table; bars in a table on small screens). Medians; the ratio is printed.
2. **Dashboard CPU at 2 Hz**: ``confmon demo --no-dashboard`` runs as the server in
   a subprocess; this process runs ``run_dashboard`` (the code behind
   ``confmon dashboard``: HTTP reads, the SSE stream, the 5 s points refresh and a
   frame every 0.5 s) against it with a 120×40 truecolor Console writing to a sink,
   for ``--cpu-seconds``; the CPU time (user + system) of this process over that
   window, as a share of one core. The demo's own CPU over the window is printed
   for context.
3. **Demo start-up**: from spawning ``python -m monitor demo --no-dashboard`` to
   ``/readyz`` answering 200, and to all 450 points known (no point ``unknown``:
   each has had its first cycle, which the scheduler spreads over the 5 s
   interval). Median of ``--startups`` runs; the demo's own "started in" figure too.

The demo is started with ``-c`` on a copy of ``configs/hanoi.yaml`` whose only
change is the SIP/media/HTTP ports, so it cannot collide with a demo or lab already
running on this machine.

Run: ``.venv/bin/python bench/bench_dashboard.py`` (about 80 s on two cores).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import io
import os
import platform
import random
import re
import resource
import signal
import socket
import statistics
import sys
import tempfile
import time
import zoneinfo
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiohttp
from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.dashboard.app import run_dashboard  # noqa: E402
from monitor.dashboard.model import EVENTS_KEPT, DistrictView, PointView, Snapshot  # noqa: E402
from monitor.dashboard.view import LABEL, LEGEND, STYLE, SYMBOL, render  # noqa: E402
from monitor.inventory import load_inventory  # noqa: E402

HANOI = ROOT / "configs" / "hanoi.yaml"
SIZES = ((120, 40), (200, 60), (80, 24))
NOW = time.time()
TZ = "Asia/Ho_Chi_Minh"

# --- the snapshot ------------------------------------------------------------------------


def snapshot() -> Snapshot:
    """450 Hanoi points: Ba Vì HQ down and its communes unreachable, a few others bad, a full event list."""
    inv = load_inventory(HANOI)
    s = Snapshot(name=inv.settings.name, url="http://127.0.0.1:9108", connected=True)
    s.last_message = NOW - 0.5
    s.last_cycle = 0.08
    s.notes = ["450 lab points on 127.20.0.1-127.20.1.194; metrics and API on :9108"]
    rng = random.Random(1)
    for p in inv.points.values():
        s.points[p.id] = PointView(
            p.id,
            p.name,
            p.district,
            p.level,
            p.parent,
            "up",
            NOW - 3600,
            "",
            rng.uniform(0.005, 0.03),
            rng.uniform(0.001, 0.004),
            0.0,
            round(rng.uniform(4.2, 4.4), 2),
        )
    s.points["ba-vi"].state = "down"
    s.points["ba-vi"].since = NOW - 120
    for c in inv.points["ba-vi"].children:
        s.points[c].state = "unreachable"
        s.points[c].since = NOW - 118
    s.points["dong-anh.xuan-non"].state = "down"
    for pid in ("soc-son.minh-tri", "soc-son.minh-phu", "soc-son.phu-linh"):
        s.points[pid].state = "degraded"
        s.points[pid].mos = 3.1
    # as many events as the screen keeps (EVENTS_KEPT): the 450 first results, then changes
    points = list(inv.points.values())
    events: list[dict[str, Any]] = [
        {"point": p.id, "from": "unknown", "to": "up", "at": NOW - 3600, "reason": ""}
        for p in points
    ]
    for i in range(EVENTS_KEPT - len(points)):
        p = points[i * 7 % len(points)]
        bad = i % 2 == 0
        events.append(
            {
                "point": p.id,
                "from": "up" if bad else "degraded",
                "to": "degraded" if bad else "up",
                "at": NOW - 1800 + 3 * i,
                "reason": "rtt",
            }
        )
    for e in events:
        s.events.append(e)
    return s


# --- the peer: the same screen with rich.table.Table ---------------------------------------


def _state(state: str, text: str | None = None) -> Text:
    return Text(SYMBOL[state] if text is None else text, STYLE[state])


def _header(s: Snapshot, now: float, zone: zoneinfo.ZoneInfo) -> list[RenderableType]:
    local = datetime.datetime.fromtimestamp(now, zone)
    counts = {st: 0 for st in LEGEND}
    for p in s.points.values():
        counts[p.state] += 1
    counted = len(s.points) - counts["maintenance"]
    readiness = (counts["up"] + counts["degraded"]) / counted if counted else 0.0
    ok = readiness >= s.readiness_target
    title = Table.grid(expand=True)
    title.add_column(no_wrap=True, overflow="ellipsis")
    title.add_column(justify="right", no_wrap=True)
    title.add_row(
        Text.assemble(
            (s.name, "bold"),
            (
                f"   readiness {readiness:.1%} (target {s.readiness_target:.0%}) {'✔' if ok else '✖'}",
                "bold green" if ok else "bold red",
            ),
        ),
        Text(f"{local:%H:%M:%S} {local.tzname()}", "bold"),
    )
    tally = Table.grid(padding=(0, 3))
    for _ in LEGEND:
        tally.add_column(no_wrap=True)
    tally.add_row(*(_state(st, f"{SYMBOL[st]} {counts[st]} {LABEL[st]}") for st in LEGEND))
    info = Text(
        f"last cycle {s.last_cycle or 0:.2f} s · data {now - s.last_message:.1f} s old · {s.url}",
        "dim",
        no_wrap=True,
        overflow="ellipsis",
    )
    notes = [Text(f"ℹ {n}", "cyan", no_wrap=True, overflow="ellipsis") for n in s.notes]
    return [title, tally, info, *notes]


def _up(d: DistrictView) -> Text:
    every = [d.hq, *d.communes]
    up = sum(p.state in ("up", "degraded") for p in every)
    return Text(f"{up}/{len(every)}", "bold red" if up < len(every) else "")


def _attention_table(s: Snapshot, rows: int, now: float, lines: box.Box | None) -> Table:
    table = Table(title="Needs attention", title_justify="left", box=lines, pad_edge=False)
    table.add_column("", no_wrap=True)
    table.add_column("point", no_wrap=True, overflow="ellipsis", ratio=1)
    for name in ("rtt", "jit", "loss", "MOS", "since"):
        table.add_column(name, justify="right", no_wrap=True)
    bad = s.attention()
    for p in bad[:rows]:
        silent = p.state in ("down", "unreachable", "unknown")
        since = int(now - p.since)
        table.add_row(
            _state(p.state),
            Text(p.name, STYLE[p.state]),
            "-" if silent or p.rtt is None else f"{p.rtt * 1000:.0f}",
            "-" if silent or p.jitter is None else f"{p.jitter * 1000:.0f}",
            "-" if silent or p.loss is None else f"{p.loss:.0%}",
            "-" if silent or p.mos is None else f"{p.mos:.1f}",
            f"{since // 60}:{since % 60:02d}",
        )
    if len(bad) > rows:
        table.caption = f"… and {len(bad) - rows} more"
    return table


def _events_table(s: Snapshot, rows: int, zone: zoneinfo.ZoneInfo) -> Table:
    table = Table(title="Events", title_justify="left", box=None, show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    table.add_column(no_wrap=True)
    news = [e for e in s.events if not (e["from"] == "unknown" and e["to"] == "up")]
    for e in reversed(news[-rows:]):
        p = s.points.get(e["point"])
        table.add_row(
            datetime.datetime.fromtimestamp(float(e["at"]), zone).strftime("%H:%M:%S"),
            p.name if p else str(e["point"]),
            Text.assemble(
                (SYMBOL[e["from"]], STYLE[e["from"]]), "→", (f"{SYMBOL[e['to']]} {e['to']}", "")
            ),
        )
    return table


def _bar(d: DistrictView, width: int) -> Text:
    every = [d.hq, *d.communes]
    bar = Text()
    for st in ("down", "unreachable", "degraded", "unknown", "maintenance", "up"):
        n = sum(p.state == st for p in every)
        if n:
            bar.append(SYMBOL[st] * max(1, round(n / len(every) * width)), STYLE[st])
    bar.truncate(width)
    return bar


def table_render(s: Snapshot, width: int, height: int, now: float) -> RenderableType:
    """The same screen as ``render``, laid out with rich tables."""
    zone = zoneinfo.ZoneInfo(TZ)
    header = _header(s, now, zone)
    body = height - len(header) - 2
    districts = s.districts()
    if width >= 100 and height >= 30:
        grid = Table(box=None, show_header=False, pad_edge=False)
        grid.add_column(no_wrap=True, overflow="ellipsis", max_width=24)
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True)
        grid.add_column(justify="right", no_wrap=True)
        for d in districts[:body]:
            cells = Text()
            for c in d.communes:
                cells.append(SYMBOL[c.state], STYLE[c.state])
            grid.add_row(d.hq.name, _state(d.hq.state, f"HQ{SYMBOL[d.hq.state]}"), cells, _up(d))
        att_rows = max(3, (body - 4) * 3 // 5) - 4
        right = Group(
            _attention_table(s, att_rows, now, box.SIMPLE_HEAD),
            _events_table(s, max(2, body - att_rows - 8), zone),
        )
        layout = Table.grid(expand=True, padding=(0, 2))
        layout.add_column(no_wrap=True)
        layout.add_column(ratio=1)
        layout.add_row(grid, right)
        legend = Text("  ".join(f"{SYMBOL[st]} {st}" for st in LEGEND), "dim")
        return Group(*header, Text(), layout, legend)
    half = -(-len(districts) // 2)
    bars = Table.grid(expand=True, padding=(0, 1))
    for _ in range(2):
        bars.add_column(no_wrap=True, overflow="ellipsis", max_width=14)
        bars.add_column(no_wrap=True, ratio=1)
        bars.add_column(justify="right", no_wrap=True)
    bar_width = width // 2 - 24
    body += 1  # no blank line under the header here
    rows = min(15, body - 5)
    for i in range(min(half, rows)):
        row: list[RenderableType] = []
        pair: list[DistrictView | None] = [districts[i]]
        pair.append(districts[i + half] if i + half < len(districts) else None)
        for cell in pair:
            if cell is None:
                row += ["", "", ""]
            else:
                short = re.sub(r"^(Thị xã|Thành phố|Quận|Huyện) ", "", cell.hq.name)
                row += [short, _bar(cell, bar_width), _up(cell)]
        bars.add_row(*row)
    return Group(*header[:2], *header[3:], bars, _attention_table(s, body - rows - 3, now, None))


# --- 1. frame time -----------------------------------------------------------------------


def frame_times(frames: int) -> list[dict[str, Any]]:
    s = snapshot()
    results = []
    for width, height in SIZES:
        console = Console(
            width=width,
            height=height,
            file=io.StringIO(),
            force_terminal=True,
            color_system="truecolor",
            legacy_windows=False,
        )
        out = console.file
        assert isinstance(out, io.StringIO)
        sides: dict[str, Callable[[], RenderableType]] = {
            "view": functools.partial(render, s, width, height, now=NOW, tz=TZ),
            "table": functools.partial(table_render, s, width, height, NOW),
        }
        times: dict[str, list[float]] = {name: [] for name in sides}
        size: dict[str, tuple[int, int]] = {}
        for i in range(frames + 10):
            for name, make in sides.items():
                out.seek(0)
                out.truncate()
                started = time.perf_counter()
                console.print(make())
                elapsed = time.perf_counter() - started
                if i >= 10:  # warm-up: imports, caches
                    times[name].append(elapsed)
                text = out.getvalue()
                size[name] = (len(text.encode()), text.count("\n"))
        results.append(
            {
                "size": f"{width}x{height}",
                **{f"{n}_ms": statistics.median(t) * 1000 for n, t in times.items()},
                **{f"{n}_p95_ms": sorted(t)[int(len(t) * 0.95)] * 1000 for n, t in times.items()},
                **{f"{n}_bytes": size[n][0] for n in sides},
                **{f"{n}_lines": size[n][1] for n in sides},
            }
        )
    return results


# --- the demo as a server ----------------------------------------------------------------


def test_ports_inventory(folder: Path) -> Path:
    """configs/hanoi.yaml with its SIP, media and HTTP ports moved to free ones (see the docstring)."""
    text = HANOI.read_text(encoding="utf-8")
    for old in ("5060", "7078", "8080"):
        while True:
            port = random.randrange(20000, 32000)  # below the ephemeral range
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
                try:
                    u.bind(("127.20.0.1", port))
                    t.bind(("127.20.0.1", port))
                except OSError:
                    continue
            break
        text = text.replace(f"port: {old}", f"port: {port}")
    path = folder / "hanoi-bench.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (and its waited-for children)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class DemoServer:
    """``python -m monitor demo --no-dashboard`` in a subprocess, and how long it took to be ready."""

    def __init__(self, inventory: Path, log: Path) -> None:
        self.inventory, self.log = inventory, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.ready = self.known = 0.0

    async def start(self, session: aiohttp.ClientSession, within: float = 60.0) -> None:
        with self.log.open("wb") as out:
            started = time.perf_counter()
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "monitor",
                "demo",
                "--no-dashboard",
                "-c",
                str(self.inventory),
                "--listen",
                f"127.0.0.1:{self.port}",
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                cwd=ROOT,
            )
        async with asyncio.timeout(within):
            while not self.ready:
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(f"{self.url}/readyz") as resp:
                        if resp.status == 200:
                            self.ready = time.perf_counter() - started
                            break
                await asyncio.sleep(0.01)
            while True:
                async with session.get(f"{self.url}/api/v1/status") as resp:
                    status = await resp.json()
                if status["points"] == 450 and status["states"]["unknown"] == 0:
                    self.known = time.perf_counter() - started
                    return
                await asyncio.sleep(0.05)

    def said_started_in(self) -> float | None:
        found = re.search(r"started in ([0-9.]+) s", self.log.read_text(encoding="utf-8"))
        return float(found.group(1)) if found else None

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(20):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


# --- 2. dashboard CPU; 3. start-up ---------------------------------------------------------


class Sink(io.StringIO):
    """A terminal that keeps nothing: counts the writes (one per frame) and the characters."""

    writes = 0
    chars = 0
    last = ""

    def write(self, s: str) -> int:
        self.writes += 1
        self.chars += len(s)
        if len(s) > 1000:
            self.last = s
        return len(s)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def dashboard_cpu(server: DemoServer, seconds: float) -> dict[str, float]:
    assert server.proc is not None
    sink = Sink()
    console = Console(
        file=sink, width=120, height=40, force_terminal=True, color_system="truecolor"
    )
    demo_before, before, wall = proc_cpu(server.proc.pid), cpu_seconds(), time.perf_counter()
    task = asyncio.get_running_loop().create_task(
        run_dashboard(server.url, refresh_hz=2.0, tz=TZ, console=console)
    )
    await asyncio.sleep(seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    wall = time.perf_counter() - wall
    cpu = cpu_seconds() - before
    # the figure only counts if the dashboard was live: connected, all 450 points up on screen
    if "NO DATA" in sink.last or "● 450 up" not in sink.last:
        raise SystemExit(f"the dashboard was not showing live data:\n{sink.last[-2000:]}")
    return {
        "wall": wall,
        "cpu": cpu,
        "share": cpu / wall,
        "frames": sink.writes,
        "kb_per_s": sink.chars / wall / 1024,
        "demo_share": (proc_cpu(server.proc.pid) - demo_before) / wall,
    }


async def demo_runs(startups: int, cpu_window: float) -> tuple[list[dict[str, float]], Any]:
    runs: list[dict[str, float]] = []
    cpu: dict[str, float] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        inventory = test_ports_inventory(Path(tmp))
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
            for i in range(startups):
                server = DemoServer(inventory, Path(tmp) / f"demo{i}.log")
                try:
                    await server.start(session)
                    runs.append(
                        {
                            "ready": server.ready,
                            "known": server.known,
                            "said": server.said_started_in() or float("nan"),
                        }
                    )
                    print(
                        f"  start-up {i + 1}: /readyz 200 after {server.ready:.2f} s, "
                        f"all 450 known after {server.known:.2f} s "
                        f"(demo said 'started in {runs[-1]['said']:.1f} s')",
                        flush=True,
                    )
                    if i == 0 and cpu_window > 0:
                        await asyncio.sleep(2)  # past the first cycle's burst
                        cpu = await dashboard_cpu(server, cpu_window)
                finally:
                    await server.stop()
    return runs, cpu


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="frames per size and side")
    parser.add_argument("--cpu-seconds", type=float, default=30.0, help="dashboard CPU window")
    parser.add_argument("--startups", type=int, default=3, help="demo start-ups to time")
    args = parser.parse_args()

    print(
        f"{datetime.datetime.now().isoformat(timespec='seconds')} {platform.node()}: "
        f"{os.cpu_count()} CPUs ({cpu_model()}), Linux {platform.release()}, "
        f"Python {platform.python_version()}, rich {version('rich')}, load average {loadavg()}",
        flush=True,
    )
    print(f"\n1. frame time at 450 points, median of {args.frames} frames (p95 in brackets)")
    print(f"{'size':>8} {'view':>14} {'rich Table':>14} {'ratio':>6}  {'view output':>18}")
    for r in frame_times(args.frames):
        print(
            f"{r['size']:>8} {r['view_ms']:7.2f} ({r['view_p95_ms']:4.1f}) "
            f"{r['table_ms']:7.2f} ({r['table_p95_ms']:4.1f}) "
            f"{r['table_ms'] / r['view_ms']:6.2f}  "
            f"{r['view_bytes'] / 1024:5.1f} KB {r['view_lines']:>3} lines "
            f"(Table: {r['table_bytes'] / 1024:.1f} KB, {r['table_lines']} lines)",
            flush=True,
        )

    print(f"\n2./3. the demo as a server, {args.startups} start-ups")
    runs, cpu = asyncio.run(demo_runs(args.startups, args.cpu_seconds))
    if cpu is not None:
        print(
            f"\ndashboard at 2 Hz for {cpu['wall']:.1f} s: {cpu['cpu']:.2f} s CPU = "
            f"{cpu['share']:.1%} of one core ({cpu['frames']} frames, "
            f"{cpu['kb_per_s']:.0f} KB/s to the terminal); the demo meanwhile "
            f"{cpu['demo_share']:.1%} of one core"
        )
    if runs:
        print(
            f"demo start-up, median of {len(runs)}: /readyz 200 after "
            f"{statistics.median(r['ready'] for r in runs):.2f} s, all 450 points known after "
            f"{statistics.median(r['known'] for r in runs):.2f} s; "
            f"'started in' {statistics.median(r['said'] for r in runs):.1f} s"
        )
    print(f"load average at the end {loadavg()}")


if __name__ == "__main__":
    main()
