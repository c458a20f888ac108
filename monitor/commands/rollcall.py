"""``confmon rollcall``: one readiness pass over every point, now, before a meeting.

Every point's profile runs once (all probes, media included), concurrently
within ``monitor.concurrency``, with a progress bar. The results go through the
health model with ``fail_after = recover_after = 1`` (one pass is all there
is), so topology still applies: communes behind a dead headquarters are
``unreachable``, not ``down``. Points not ready are listed by district, and the
exit code is 0 only when readiness reaches the target (1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import time
from dataclasses import replace
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from monitor.commands.common import Subparsers, output_console, suggest_no_icmp
from monitor.core.health import HealthModel, State
from monitor.core.results import ProbeResult
from monitor.core.scheduler import probe_point
from monitor.inventory import Inventory
from monitor.probes.base import ProbeContext
from monitor.transport.local import check_icmp

__all__ = ["SPREAD", "report", "rollcall", "run_rollcall"]

#: seconds over which the pass starts its points
SPREAD = 2.0


async def rollcall(
    inv: Inventory, ctx: ProbeContext, progress: Progress | None = None
) -> tuple[HealthModel, dict[str, list[ProbeResult]], float]:
    """Probe every point once; returns the judged model, the raw results and the wall time."""
    one_pass = replace(
        inv, settings=inv.settings.model_copy(update={"fail_after": 1, "recover_after": 1})
    )
    limit = asyncio.Semaphore(inv.settings.concurrency)
    task_id = progress.add_task("roll-call", total=len(inv.points)) if progress else None
    results: dict[str, list[ProbeResult]] = {}
    ids = list(inv.points)
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def one(i: int, pid: str) -> None:
        # starts spread over SPREAD seconds: all at once, the event loop's own lag would
        # show up as RTT (a 450-point burst added ~170 ms to the first points' figures)
        await asyncio.sleep(max(0.0, started + SPREAD * i / len(ids) - loop.time()))
        point = inv.points[pid]
        results[pid] = await probe_point(inv, point, inv.profile_of(point).probes(), ctx, limit)
        if progress is not None and task_id is not None:
            progress.advance(task_id)

    await asyncio.gather(*(one(i, pid) for i, pid in enumerate(ids)))
    elapsed = loop.time() - started
    model = HealthModel(one_pass, now=time.time())
    now = time.time()
    # parents first, so children are judged against their uplink's result
    for pid in inv.points:
        model.ingest(pid, results[pid], now)
    model.tick(now)  # maintenance windows: planned work is not counted against readiness
    return model, results, elapsed


def _not_ready(model: HealthModel) -> list[dict[str, Any]]:
    rows = []
    for h in model.points.values():
        if (
            h.state in (State.UP, State.DEGRADED, State.MAINTENANCE)
            and h.state is not State.DEGRADED
        ):
            continue
        m = h.metrics()
        rows.append(
            {
                "district": h.point.district,
                "point": h.point.id,
                "name": h.point.name,
                "host": h.point.host,
                "state": h.state.value,
                "reason": h.reason,
                "rtt": m["rtt"],
                "loss": m["loss"],
                "mos": m["mos"],
            }
        )
    return rows


def report(model: HealthModel, elapsed: float, fmt: str, console: Console) -> bool:
    """Print the outcome; returns whether readiness reached the target."""
    readiness = model.readiness()
    target = model.inv.settings.readiness_target
    ok = readiness >= target
    rows = _not_ready(model)
    summary = {
        "points": len(model.points),
        "ready": model.counts[State.UP] + model.counts[State.DEGRADED],
        "readiness": readiness,
        "readiness_target": target,
        "ok": ok,
        "seconds": elapsed,
        "states": {s.value: model.counts[s] for s in State},
    }
    if fmt == "json":
        print(json.dumps({**summary, "not_ready": rows}, ensure_ascii=False, indent=2))
        return ok
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(
            buf, fieldnames=list(rows[0]) if rows else ["district", "point"], lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
        print(buf.getvalue(), end="")
        return ok
    names = {d.id: d.name for d in model.inv.districts()}
    if rows:
        table = Table(
            title="Points not ready (down, unreachable, unknown) and degraded", title_justify="left"
        )
        for col in ("district", "point", "state", "reason"):
            table.add_column(col, overflow="fold")
        last = None
        for row in sorted(rows, key=lambda r: (list(names).index(r["district"]), r["point"])):
            district = (
                names.get(row["district"], row["district"]) if row["district"] != last else ""
            )
            last = row["district"]
            style = {"down": "red", "unreachable": "magenta", "degraded": "yellow"}.get(
                row["state"], "dim"
            )
            table.add_row(district, row["name"], f"[{style}]{row['state']}[/]", row["reason"])
        console.print(table)
    verdict = "[bold green]READY[/]" if ok else "[bold red]NOT READY[/]"
    console.print(
        f"{verdict}: {summary['ready']}/{summary['points']} points ready, readiness {readiness:.1%} "
        f"(target {target:.0%}); {model.counts[State.DEGRADED]} degraded; pass took {elapsed:.1f} s"
    )
    return ok


async def run_rollcall(inv: Inventory, fmt: str, icmp: bool) -> int:
    """The command: exit 0 when ready, 1 when not."""
    inv = inv if icmp else inv.without_probes(frozenset({"icmp"}))
    screen = output_console(stderr=fmt != "table")
    async with ProbeContext() as ctx:
        await check_icmp(inv, ctx)  # a clear error now rather than 450 failed probes
        with Progress(
            TextColumn("[bold]roll-call"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=screen,
            transient=True,
        ) as progress:
            model, _, elapsed = await rollcall(inv, ctx, progress)
    return 0 if report(model, elapsed, fmt, output_console()) else 1


# --- the command line -----------------------------------------------------------------


def _handle(args: argparse.Namespace) -> int:
    import asyncio

    from monitor.inventory import load_inventory

    inv = load_inventory(args.config)
    with suggest_no_icmp():
        return asyncio.run(run_rollcall(inv, args.format, icmp=not args.no_icmp))


def add_parser(sub: Subparsers) -> None:
    """Register ``confmon rollcall``."""
    p = sub.add_parser(
        "rollcall",
        help="one readiness pass over every point now; exit 0 only if readiness >= target",
        description=(
            "Probe every point once, now, with a progress bar; list the points that are not "
            "ready, grouped by district, and the readiness. Exit 0 when readiness reaches "
            "monitor.readiness_target, 1 when it does not, 2 for a bad config."
        ),
    )
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="inventory YAML")
    p.add_argument(
        "--format", choices=("table", "json", "csv"), default="table", help="output format"
    )
    p.add_argument("--no-icmp", action="store_true", help="do not run ICMP probes")
    p.set_defaults(handler=_handle)
