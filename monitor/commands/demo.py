"""``confmon demo``: the lab's 450 Hanoi points, the monitor, the API and the dashboard, in one process.

No config and no broker needed. The lab simulates every point of
``configs/hanoi.yaml`` on its own loopback address; the monitor probes them as
it would the real ones and serves ``/metrics`` and the API on 127.0.0.1:9108;
the dashboard attaches to that API as ``confmon dashboard`` would.

Two things differ from production, both because of the lab, and are said on
screen at start:

- ICMP runs when the process may open an ICMP socket, and is skipped with a
  notice otherwise (SIP, media and HTTP still show everything).
- The kernel answers ICMP for every 127.x.y.z address, so the lab cannot make
  a point stop answering pings. Reachability in the demo is therefore decided
  by SIP (the endpoint's signalling), and ICMP only contributes its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import html
import logging
import sys
import time
import zoneinfo
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from pathlib import Path

from monitor.alerts.formats import Rendered
from monitor.commands.argtypes import number_in, whole_number
from monitor.commands.common import (
    Subparsers,
    add_lab_base_option,
    parse_lab_base,
    parse_listen,
)
from monitor.commands.dashboard import add_bell_options, bell_from
from monitor.core.service import Monitor
from monitor.dashboard.bell import Bell
from monitor.errors import UsageError
from monitor.exiting import run_service
from monitor.inventory import Inventory, load_inventory
from monitor.lab.addresses import LAB_BASE, lab_inventory
from monitor.lab.impairment import Impairment
from monitor.lab.lab import Lab
from monitor.lab.scenario import Scenario, Step, find_scenario, load_scenario, play

__all__ = ["DEFAULT_CONFIG", "DemoOptions", "demo_inventory", "run_demo"]

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "hanoi.yaml"

log = logging.getLogger("confmon")


@dataclass
class DemoOptions:
    """What ``confmon demo`` was asked to do."""

    config: Path = DEFAULT_CONFIG
    scenario: str | None = None
    listen: tuple[str, int] = ("127.0.0.1", 9108)
    dashboard: bool = True
    refresh_hz: float = 2.0
    seed: int | None = None
    duration: float | None = None  # seconds; None = until Ctrl-C
    lab_base: IPv4Address = LAB_BASE  # first lab address; another block lets two demos coexist
    bell: Bell | None = None  # the dashboard's bell (None: silent)
    #: the event log (None: kept in memory, gone at exit); a file can be given to confmon report
    state_db: Path | None = None
    #: the scenario's steps come this many times sooner (the monitor's timing is unchanged)
    speed: float = 1.0


#: the demo's alert receiver when the inventory has none: never sent to, only printed
DEMO_RECEIVER = "demo"


def demo_inventory(inv: Inventory, base: IPv4Address = LAB_BASE) -> Inventory:
    """The inventory on lab addresses, with reachability decided by SIP (see the module
    docstring), and an alert receiver whose messages are printed, not sent, when it has
    none of its own (the demo runs dry: it never sends a notification anywhere)."""
    from monitor.alerts.config import Receiver

    mapped = lab_inventory(inv, base)
    profiles = {
        name: p.model_copy(update={"reachable_by": ["sip"]}) if p.sip is not None else p
        for name, p in mapped.profiles.items()
    }
    alerts = mapped.alerts
    if not alerts.receivers:
        demo = Receiver(name=DEMO_RECEIVER, url="http://demo.invalid/", format="slack")
        alerts = alerts.model_copy(update={"receivers": [demo]})
    return replace(mapped, profiles=profiles, alerts=alerts)


def _print_alert(receiver: str, rendered: Rendered) -> None:
    """The demo's dry run of an alert: what would be sent, as the chat would show it (the
    text is escaped for the chat: "&gt;" is what Slack shows as ">")."""
    lines = html.unescape(rendered.text).splitlines() or [rendered.summary]
    print(f"-- alert to {receiver} (not sent: demo): {lines[0]}", flush=True)
    for line in lines[1:]:
        print(f"   {line}", flush=True)


async def _print_events(monitor: Monitor, tz: zoneinfo.ZoneInfo) -> None:
    """One line per state change; first results (unknown -> up) are counted, not listed."""
    sub = monitor.subscribe()
    came_up = 0
    try:
        while True:
            message = await sub.queue.get()
            if message is None:
                return
            if message.get("type") == "summary" and came_up:
                print(f"{came_up} points up (first results)", flush=True)
                came_up = 0
            if message.get("type") != "state":
                continue
            if message["from"] == "unknown" and message["to"] == "up":
                came_up += 1
                continue
            at = datetime.datetime.fromtimestamp(message["at"], tz).strftime("%H:%M:%S")
            name = message.get("name", message["point"])
            print(
                f"{at} {message['to']:<11} {name} ({message['point']}): {message['reason']}",
                flush=True,
            )
    finally:
        monitor.unsubscribe(sub)


async def run_demo(opts: DemoOptions) -> int:
    """Run the demo until Ctrl-C (or ``opts.duration``); returns the exit code."""
    from monitor.app import App, AppOptions, serve

    started = time.monotonic()
    inv = demo_inventory(load_inventory(opts.config), opts.lab_base)
    scenario: Scenario | None = (
        load_scenario(find_scenario(opts.scenario), inv) if opts.scenario else None
    )
    tz = zoneinfo.ZoneInfo(inv.settings.timezone)
    #: the demo's transport drops these points' results, as if their agent were lost
    muted: set[str] = set()
    host, port = opts.listen
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    lab = Lab(inv, seed=opts.seed)

    async def foreground(app: App) -> None:
        notices = [
            *app.notices,
            f"{len(inv.points)} lab points on {opts.lab_base}-{list(inv.points.values())[-1].host}; "
            f"metrics and API on {url}/ ; started in {time.monotonic() - started:.1f} s",
            "reachability decided by SIP: the kernel answers every 127.x ping, the lab cannot cut ICMP",
            f"alerts are not sent in the demo: see {url}/api/v1/notifications "
            "(printed with --no-dashboard)",
        ]
        tasks: list[asyncio.Task[None]] = []
        if scenario is not None:
            notices.append(f"scenario {scenario.name}: {scenario.description}")
            tasks.append(
                asyncio.get_running_loop().create_task(_play(scenario, inv, lab, muted, opts))
            )
        try:
            if opts.dashboard:
                from monitor.dashboard.app import run_dashboard

                await run_dashboard(
                    url,
                    refresh_hz=opts.refresh_hz,
                    tz=inv.settings.timezone,
                    notes=notices,
                    bell=opts.bell,
                )
            else:
                for n in notices:
                    print(n, flush=True)
                await _print_events(app.monitor, tz)
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    app_opts = AppOptions(
        state_db=opts.state_db or ":memory:",
        listen=opts.listen,
        icmp="auto",
        drop=muted.__contains__,
        # with the dashboard on the screen, alerts are only in /api/v1/notifications
        alerts_printer=_print_alert if not opts.dashboard else lambda _r, _m: None,
    )
    try:
        async with lab:
            return await serve(inv, app_opts, foreground, duration=opts.duration)
    finally:
        if not opts.dashboard:
            print("demo stopped", file=sys.stderr)


async def _play(
    scenario: Scenario, inv: Inventory, lab: Lab, muted: set[str], opts: DemoOptions
) -> None:
    def mute(pid: str, stale: bool) -> None:
        (muted.add if stale else muted.discard)(pid)

    def impair(pid: str, imp: Impairment | None) -> None:
        if imp is None:
            lab.clear(pid)
        else:
            lab.set_impairment(pid, imp)

    def announce(at: float, step: Step) -> None:
        if not opts.dashboard:
            played = f" (played at +{at / opts.speed:g}s)" if opts.speed != 1 else ""
            print(
                f"-- scenario {scenario.name} +{at:g}s{played}: "
                f"{step.note or step.impair or 'change'}",
                flush=True,
            )

    await play(scenario, inv, impair=impair, stale=mute, announce=announce, speed=opts.speed)


# --- the command line -----------------------------------------------------------------


def _duration(value: float | None) -> float | None:
    if value is not None and not 0 < value < 1e9:  # also false for NaN and infinity
        raise UsageError(f"--duration {value:g}: give a positive number of seconds")
    return value


def _handle(args: argparse.Namespace) -> int:
    from monitor.logs import setup_logging

    if args.no_dashboard:
        setup_logging("text", "warning")
    else:
        setup_logging("text", "critical")  # the dashboard owns the screen
    if args.state_db is not None and not args.state_db.strip():
        raise UsageError("--state-db is empty (an unset variable?): give a path, or leave it out")
    opts = DemoOptions(
        config=Path(args.config) if args.config else DEFAULT_CONFIG,
        scenario=args.scenario,
        listen=parse_listen(args.listen),
        dashboard=not args.no_dashboard,
        seed=args.seed,
        duration=_duration(args.duration),
        lab_base=parse_lab_base(args.lab_base),
        bell=bell_from(args),
        state_db=Path(args.state_db) if args.state_db else None,
        speed=args.speed,
    )
    if not opts.config.exists():
        raise UsageError(f"{opts.config} not found; run from a confmon checkout or pass -c FILE")
    return run_service(run_demo(opts))


def add_parser(sub: Subparsers) -> None:
    """Register ``confmon demo``."""
    p = sub.add_parser(
        "demo",
        help="the whole thing on loopback: 450 simulated Hanoi points, monitor, API, dashboard",
        description=(
            "Start the lab (the 450 Hanoi meeting points simulated on loopback), the monitor, "
            "/metrics and the API on 127.0.0.1:9108, and the live dashboard, in one process. "
            "--scenario plays a scripted incident from configs/scenarios/. q or Ctrl-C exits."
        ),
        epilog="scenarios: uplink-loss, rising-jitter, flapping, lost-agent, recovery (or a path to a YAML file)",
    )
    p.add_argument("--scenario", metavar="NAME", help="play a scripted incident, e.g. uplink-loss")
    p.add_argument(
        "-c", "--config", metavar="FILE", help="inventory to simulate (default: configs/hanoi.yaml)"
    )
    p.add_argument(
        "--listen",
        default="127.0.0.1:9108",
        metavar="HOST:PORT",
        help="API address (default: %(default)s)",
    )
    p.add_argument(
        "--no-dashboard",
        action="store_true",
        help="headless: print one line per state change instead",
    )
    p.add_argument("--seed", type=whole_number(), help="seed the lab's random loss and jitter")
    add_lab_base_option(p, "two demos")
    add_bell_options(p)
    p.add_argument(
        "--duration",
        type=number_in(0, 1e9, low_open=True, unit=" seconds"),
        metavar="SECONDS",
        help="stop after this long (default: until Ctrl-C)",
    )
    p.add_argument(
        "--speed",
        type=number_in(0.1, 100, unit=" times"),
        default=1.0,
        metavar="FACTOR",
        help="play the scenario's steps FACTOR times sooner (uplink-loss at 3: the cut at 5s, "
        "the repair at 25s); the monitor's timing stays the inventory's, so a cut shorter "
        "than fail_after cycles is never seen",
    )
    p.add_argument(
        "--state-db",
        metavar="PATH",
        help="keep the event log in this SQLite file, for confmon report afterwards "
        "(default: in memory, gone at exit)",
    )
    p.set_defaults(handler=_handle)
