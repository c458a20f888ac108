"""What ``confmon check-config`` reports about a valid inventory."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from monitor.inventory.load import Inventory
from monitor.inventory.units import format_duration
from monitor.text import printable

__all__ = ["print_summary", "summarise"]


def summarise(inv: Inventory) -> dict[str, Any]:
    """The summary as JSON-ready data (the ``--json`` output; its keys are stable)."""
    levels = Counter(p.level for p in inv.points.values())
    per_district = Counter(p.district for p in inv.points.values())
    used = Counter(p.profile for p in inv.points.values())
    s = inv.settings
    return {
        "file": printable(inv.file),
        "name": s.name,
        "points": len(inv.points),
        "levels": dict(levels),
        "settings": {
            "interval_seconds": s.interval,
            "fail_after": s.fail_after,
            "recover_after": s.recover_after,
            "stale_after_seconds": s.stale_after,
            "readiness_target": s.readiness_target,
            "timezone": s.timezone,
        },
        "districts": [
            {"id": d.id, "name": d.name, "host": d.host, "points": per_district[d.id]}
            for d in inv.districts()
        ],
        "profiles": {
            name: {"points": used.get(name, 0), "probes": profile.probes()}
            for name, profile in inv.profiles.items()
        },
        "alerts": [
            {
                "name": r.name,
                "format": r.format,
                "states": list(r.states),
                "districts": list(r.districts),
                "secret": r.secret_env or r.secret_file,
            }
            for r in inv.alerts.receivers
        ],
    }


def _t(text: str) -> Text:
    """Text from the file as a cell: never read as rich markup (``[/]``) or emoji codes, and
    control characters escaped (the loader refuses them; a file name can still hold one)."""
    return Text(printable(text))


def print_summary(inv: Inventory, console: Console) -> None:
    """A human summary: totals, settings, points per district, profiles used."""
    data = summarise(inv)
    levels = ", ".join(f"{n} {printable(lvl)}" for lvl, n in data["levels"].items())
    s = inv.settings
    console.print(
        Text.assemble(("OK", "bold green"), " ", _t(inv.file), ": ", (printable(s.name), "bold"))
    )
    console.print(
        _t(f"{data['points']} points: {levels}; {len(data['districts'])} top-level districts")
    )
    console.print(
        _t(
            f"every {format_duration(s.interval)}, down after {s.fail_after} failed cycles, "
            f"up after {s.recover_after} good ones, unknown after {format_duration(s.stale_after)}"
            f" without data; readiness target {s.readiness_target:.0%}; time zone {s.timezone}"
        )
    )
    table = Table(title="Points per district", title_justify="left", show_edge=False)
    table.add_column("district")
    table.add_column("name")
    table.add_column("host")
    table.add_column("points", justify="right")
    for d in data["districts"]:
        table.add_row(_t(d["id"]), _t(d["name"]), _t(d["host"]), str(d["points"]))
    console.print(table)
    profiles = Table(title="Profiles", title_justify="left", show_edge=False)
    profiles.add_column("profile")
    profiles.add_column("points", justify="right")
    profiles.add_column("probes")
    for name, info in data["profiles"].items():
        profiles.add_row(_t(name), str(info["points"]), ", ".join(info["probes"]))
    console.print(profiles)
    if not data["alerts"]:
        console.print(_t("alerts: no receivers (state changes are not sent anywhere)"))
        return
    a = inv.alerts
    receivers = Table(
        title=f"Alert receivers (grouped by {a.group_by}, after {format_duration(a.group_wait)})"
        if a.group_wait
        else f"Alert receivers (grouped by {a.group_by})",
        title_justify="left",
        show_edge=False,
    )
    for column in ("receiver", "format", "states", "districts", "secret from"):
        receivers.add_column(column)
    for r in data["alerts"]:
        receivers.add_row(
            _t(r["name"]),
            r["format"],
            ", ".join(r["states"]),
            _t(", ".join(r["districts"]) or "all"),
            _t(r["secret"] or "-"),
        )
    console.print(receivers)
