"""The dashboards and rules against the real thing: Prometheus scraping ``confmon run`` on the
450 Hanoi points in the lab, with one district cut and one commune degraded.

Every query of every panel, annotation and template variable of the three dashboards is
run through Prometheus's HTTP API as Grafana would run it (instant for tables and stats,
range for time series), must parse and return data, and the cut district must appear
where each panel promises. The rules are loaded into the same Prometheus: the cut district
raises one alert, its rooms none.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from monitor.alerts.config import AlertsSettings
from monitor.lab.impairment import Impairment
from tests.alerts.receiver import Receiver as Hook
from tests.commands.running import hanoi_lab, running, until
from tests.prometheus import Prometheus, prometheus
from tests.test_dashboards import FILES, all_panels, load, substitute, variable_queries
from tests.test_rules import RULES

INTERVAL = 2.0
CUT = "ba-vi"  # its headquarters loses its uplink: 1 down, 29 unreachable
DEGRADED = "hoan-kiem.hang-ma"  # its SIP endpoint answers 503: in the call, degraded
SLOW = "ba-dinh.kim-ma"  # 300 ms more on every reply of its lab responders
#: panels that read confmon server's series (agents, results from agents): empty with run
SERVER_ONLY = ("Agents (confmon server)", "Results rejected (confmon server)")
#: per dashboard, the values Grafana would put in for its variables here
CHOICES = {
    "confmon-overview.json": {"district": ".*"},
    "confmon-district.json": {"district": CUT},
    "confmon-point.json": {"district": "hoan-kiem", "point": DEGRADED},
}


def fill(expr: str, choice: dict[str, str]) -> str:
    for name, value in choice.items():
        expr = expr.replace(f"${name}", value)
    return substitute(expr)


def severity_of(rows: list[dict[str, Any]]) -> dict[str, int]:
    return {r["metric"]["point"]: int(float(r["value"][1])) for r in rows}


async def test_every_panel_and_rule_against_prometheus_scraping_confmon_run(
    tmp_path: Path,
) -> None:
    hook = Hook()
    await hook.start()
    inv = hanoi_lab("127.34.0.1", interval=INTERVAL, stale_after=10.0)
    alerts = AlertsSettings.model_validate(
        {
            "group_wait": "1s",
            "receivers": [{"name": "noc", "url": hook.url, "format": "alertmanager"}],
        }
    )
    inv = dataclasses.replace(inv, alerts=alerts)
    try:
        async with running(tmp_path, inv) as (run, lab):
            assert lab is not None
            await run.wait_all_up(450, 60)
            async with prometheus(
                tmp_path, [run.base.removeprefix("http://")], rule_files=[RULES]
            ) as prom:
                await prom.wait_for("confmon_readiness_ratio == 1", within=30)
                cut_at = time.time()
                lab.set_impairment(CUT, Impairment(down=True))
                lab.set_impairment(DEGRADED, Impairment(sip_status=503))
                lab.set_impairment(SLOW, Impairment(delay=0.3))

                async def settled() -> bool:
                    states = await run.point_states()
                    return (
                        states[CUT] == "down"
                        and sum(s == "unreachable" for s in states.values()) == 29
                        and states[DEGRADED] == "degraded"
                    )

                await until(settled, 30, "Ba Vì cut, Hàng Mã degraded")
                # the rules' for: 15s, and a few scrapes of the new states for the graphs
                await prom.wait_for(
                    'ALERTS{alertname="ConfmonDistrictOutage", alertstate="firing"}', within=45
                )
                await hook.wait_for(1, within=30)  # an alert went out: deliveries counted
                await prom.wait_for("confmon_notifications_total", within=15)
                end = time.time()
                in_district = sum(p.district == "hoan-kiem" for p in inv.points.values())
                await check_dashboards(prom, start=cut_at - 30, end=end, points=in_district)
                await check_alerts(prom)
    finally:
        await hook.stop()


async def check_dashboards(prom: Prometheus, *, start: float, end: float, points: int) -> None:
    answers: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for name in FILES:
        d = load(name)
        choice = CHOICES[name]
        # the template variables, as Grafana asks for them
        for var, query in variable_queries(d).items():
            metric, label = query.removeprefix("label_values(").removesuffix(")").rsplit(", ", 1)
            values = await prom.label_values(label, fill(metric, choice))
            assert values, f"{name}: ${var} offers nothing"
            if var == "district":
                assert CUT in values and len(values) == 30, values
            if var == "point":
                assert DEGRADED in values and len(values) == points, values
        for panel in all_panels(d):
            for t in panel.get("targets", []):
                where = f"{name}: {panel['title']} [{t['refId']}]"
                expr = fill(t["expr"], choice)
                if t["instant"]:
                    result = await prom.query(expr)
                else:
                    result = await prom.query_range(expr, start, end, 1.0)
                if panel["title"] in SERVER_ONLY:
                    assert result == [], f"{where}: data with confmon run"
                    continue
                assert result, f"{where}: no data for\n{expr}"
                answers[(name, f"{panel['title']} [{t['refId']}]")] = result
                if "@ end()" in expr:
                    compare = name == "confmon-overview.json"  # all 450 points, changing
                    await check_stable_top_n(prom, where, expr, result, start, end, compare)
        for a in d["annotations"]["list"]:
            if "expr" not in a:
                continue
            rows = await prom.query_range(fill(a["expr"], choice), start, end, 5.0)
            answers[(name, f"annotation {a['name']}")] = rows
    check_answers(answers, start, end)


async def check_stable_top_n(
    prom: Prometheus,
    where: str,
    expr: str,
    result: list[dict[str, Any]],
    start: float,
    end: float,
    compare: bool,
) -> None:
    """A "worst 10" panel draws at most 10 series over the whole range, where a topk taken at
    each step (what the dashboard did before) draws more (``compare``: on 450 points)."""
    assert len(result) <= 10, f"{where}: {len(result)} series"
    if not compare or "probe" not in expr or "topk" not in expr:
        return
    metric = expr.split("{", 1)[0].strip("( \n")
    selector = expr.split("\nand on", 1)[0].strip("( \n")
    naive = await prom.query_range(f"topk(10, {selector})", start, end, 1.0)
    assert len(naive) > 10, f"{where}: per-step topk of {metric} would draw {len(naive)} only"


def check_answers(
    answers: dict[tuple[str, str], list[dict[str, Any]]], start: float, end: float
) -> None:
    def one(name: str, title: str) -> list[dict[str, Any]]:
        return answers[(f"confmon-{name}.json", title)]

    def last(row: dict[str, Any]) -> float:
        return float(row["values"][-1][1] if "values" in row else row["value"][1])

    # overview: the outage where it is counted
    districts_down = one("overview", "Districts with an outage [A]")
    assert last(districts_down[0]) == 1
    not_up = one("overview", "Points not up ($district) [A]")
    rows = {r["metric"]["point"]: r["metric"] for r in not_up}
    assert rows[CUT]["reason"] == "path" and rows[CUT]["district_name"] == "Huyện Ba Vì"
    behind = [m for m in rows.values() if m["district"] == CUT and m["point"] != CUT]
    assert len(behind) == 29 and {(m["reason"], m["cause"]) for m in behind} == {("uplink", CUT)}
    assert rows[DEGRADED]["reason"] == "probe" and rows[DEGRADED]["name"] == "Phường Hàng Mã"
    codes = severity_of(not_up)
    assert codes[CUT] == 5 and codes[DEGRADED] == 3 and {codes[m["point"]] for m in behind} == {4}
    since = {
        r["metric"]["point"]: last(r) for r in one("overview", "Points not up ($district) [B]")
    }
    assert start * 1000 < since[CUT] <= end * 1000
    grid = one("overview", "All rooms [A]")
    assert len(grid) == 450 and severity_of(grid)[CUT] == 5
    hq = {r["metric"]["point"]: last(r) for r in one("overview", "District headquarters [A]")}
    assert len(hq) == 30 and hq[CUT] == 5 and hq["hoan-kiem"] == 0
    down = {r["metric"]["district"]: last(r) for r in one("overview", "Points per district [C]")}
    unreachable = {
        r["metric"]["district"]: last(r) for r in one("overview", "Points per district [D]")
    }
    assert down[CUT] == 1 and unreachable[CUT] == 29 and sum(down.values()) == 1
    rtt = {r["metric"]["point"] for r in one("overview", "RTT: worst 10 points ($probe) [A]")}
    assert SLOW in rtt
    marks = one("overview", "annotation District headquarters")
    assert [m["metric"]["state"] for m in marks if m["metric"]["point"] == CUT][-1] == "down"

    # district dashboard ($district = ba-vi)
    assert last(one("district", "Headquarters [A]")[0]) == 5
    rooms = one("district", "Rooms of $district [A]")
    assert len(rooms) == 30 and sorted(set(severity_of(rooms).values())) == [4, 5]
    timeline = one("district", "States of $district [A]")
    assert len(timeline) == 30
    changes = one("district", "annotation State changes in $district")
    assert {m["metric"]["state"] for m in changes} >= {"down", "unreachable"}
    assert len({m["metric"]["point"] for m in changes if m["metric"]["state"] != "up"}) == 30

    # point dashboard ($point = the degraded commune)
    assert last(one("point", "State [A]")[0]) == 3
    assert one("point", "Reason [A]")[0]["metric"]["reason"] == "probe"
    assert one("point", "Cause [A]")[0]["metric"]["cause"] == DEGRADED
    success = {r["metric"]["probe"]: last(r) for r in one("point", "Probe success [A]")}
    # a 503 is an answer: degraded, not down (the lab runs without icmp: the kernel answers it)
    assert success == {"sip": 1, "media": 1}


async def check_alerts(prom: Prometheus) -> None:
    """One ConfmonDistrictOutage for Ba Vì with its 30 points; no ConfmonPointDown for any of
    them (rooms judged down before their headquarters were dropped while pending)."""
    firing = await prom.query('ALERTS{alertstate="firing"}')
    outage = [a["metric"] for a in firing if a["metric"]["alertname"] == "ConfmonDistrictOutage"]
    assert [(a["district"], a["district_name"]) for a in outage] == [(CUT, "Huyện Ba Vì")]
    value = await prom.query("confmon:district_outage:points")
    assert [(r["metric"]["district"], r["value"][1]) for r in value] == [(CUT, "30")]
    point_down = [a["metric"] for a in firing if a["metric"]["alertname"] == "ConfmonPointDown"]
    assert point_down == []
    pending = await prom.query('ALERTS{alertname="ConfmonPointDown"}')
    assert [a["metric"]["point"] for a in pending] == []


async def check_server_panels(prom: Prometheus, start: float, end: float, lost: str) -> None:
    """The panels that read confmon server's own series (agents, rejected results) return
    data from a Prometheus scraping ``confmon server``; ``lost`` shows as down, and the rules
    raise ConfmonAgentLost for it and for no other agent (used by
    tests/commands/test_distributed.py, which has a server, agents and a broker running)."""
    d = load("confmon-overview.json")
    for panel in all_panels(d):
        if panel["title"] not in SERVER_ONLY:
            continue
        for t in panel["targets"]:
            result = await prom.query_range(fill(t["expr"], {}), start, end, 1.0)
            assert result, f"{panel['title']} [{t['refId']}]: no data from confmon server"
            if t["expr"] == "confmon_agent_up":
                last = {r["metric"]["agent"]: r["values"][-1][1] for r in result}
                assert last[lost] == "0" and set(last.values()) == {"0", "1"}, last
    firing = await prom.wait_for(
        'ALERTS{alertname="ConfmonAgentLost", alertstate="firing"}', within=45
    )
    assert [a["metric"]["agent"] for a in firing] == [lost]
