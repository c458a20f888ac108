"""Writes the Grafana dashboards of this folder: ``python -m dashboards.generate``.

The three dashboards (overview, district, point) share the state colours of the terminal
dashboard, the ``datasource`` variable, the state-change annotations and the joins that
put human names on point ids. Written by hand in JSON they drift apart; here each of those
is written once. Edit this file, run it, and commit the JSON beside it: the JSON is what
users import, and ``tests/test_dashboards.py`` fails when it is not what this file writes.

The panels read only confmon's own series (and Prometheus's ``up`` and scrape series for
confmon's job), so they work as soon as Prometheus scrapes confmon, with or without the
recording rules of ``configs/prometheus/rules/``.

PromQL notes, for whoever edits the queries:

- **Stable top N.** ``topk`` in a range query is taken per step, so a "worst 10" graph
  over an hour draws hundreds of series. :func:`worst` ranks once, by the average over the
  dashboard's range evaluated at its end (``[$__range] @ end()``), and draws those N.
- **Severity.** Tables sort and timelines colour by ``confmon_point_severity``, the state
  as one number per point, worst highest (up 0, maintenance 1, unknown 2, degraded 3,
  unreachable 4, down 5: the terminal dashboard's order). confmon exports it beside the
  ``confmon_point_state`` stateset because computing it from the stateset in PromQL (six
  terms joined with ``or``, for every point at every step) made a one-hour state timeline
  of the 30 headquarters take seconds: the export is the recording rule, without rules.
- **Names.** ``confmon_point_info`` carries each point's name; a district's name is that of
  its headquarters, the point whose id is the district id (:data:`DISTRICT_NAMES`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from monitor.core.events import SEVERITY
from monitor.dashboard.model import STATE_ORDER
from monitor.dashboard.view import STYLE

HERE = Path(__file__).resolve().parent
#: Grafana 11.6 and newer; later versions migrate the JSON on load
SCHEMA_VERSION = 41
DS = {"type": "prometheus", "uid": "${datasource}"}

#: the terminal dashboard's rich styles -> Grafana colours
GRAFANA_COLOUR = {
    "green": "green",
    "yellow": "yellow",
    "bold red": "red",
    "magenta": "purple",
    "dim": "#8e8e8e",
    "blue": "blue",
}
COLOUR = {state: GRAFANA_COLOUR[STYLE[state]] for state in STATE_ORDER}
#: the order of per-state counts, as on the terminal dashboard's header
COUNT_ORDER = ("up", "degraded", "down", "unreachable", "unknown", "maintenance")
#: state -> severity code, worst highest (the values of confmon_point_severity)
CODE = {state.value: code for state, code in SEVERITY.items()}

Panel = dict[str, Any]
JSON = dict[str, Any]


# --- PromQL ------------------------------------------------------------------------------------


def severity(matchers: str = "") -> str:
    """One series per point whose value is its state's severity code (see :data:`CODE`)."""
    return f"confmon_point_severity{{{matchers}}}" if matchers else "confmon_point_severity"


def named(expr: str) -> str:
    """``expr`` (with a ``point`` label) with the point's ``name`` added."""
    return f"({expr})\n* on (point) group_left (name) confmon_point_info"


#: one series per district id with its headquarters' name as ``district_name``
DISTRICT_NAMES = (
    'max by (district, district_name) (label_replace(label_replace(confmon_point_info, "district",'
    ' "$1", "point", "(.+)"), "district_name", "$1", "name", "(.+)"))'
)
#: keeps only the series of top-level points (the district headquarters)
TOP_LEVEL = (
    'and on (point, district) label_replace(confmon_point_info, "district", "$1", "point", "(.+)")'
)


def with_district_name(expr: str) -> str:
    return f"({expr})\n* on (district) group_left (district_name) {DISTRICT_NAMES}"


def worst(selector: str, n: int = 10, *, lowest: bool = False, by: str = "point, probe") -> str:
    """The ``n`` series of ``selector`` worst on average over the dashboard's time range
    (the same ``n`` at every step), named."""
    rank = "bottomk" if lowest else "topk"
    return named(
        f"{selector}\nand on ({by}) {rank}({n}, avg_over_time({selector}[$__range] @ end()))"
    )


def state_changes(matchers: str) -> str:
    """Each point's current state with the time it began as the value (ms): a Grafana
    annotation at that time, with the state, reason and name as labels."""
    return (
        f"(confmon_point_state_since_timestamp_seconds{{{matchers}}} * 1000)\n"
        f"* on (point) group_left (state) (confmon_point_state{{{matchers}}} == 1)\n"
        f"* on (point) group_left (reason, cause) confmon_point_reason{{{matchers}}}\n"
        f"* on (point) group_left (name) confmon_point_info{{{matchers}}}"
    )


def threshold(figure: str) -> str:
    return f'max(confmon_quality_threshold{{figure="{figure}"}})'


# --- building blocks ---------------------------------------------------------------------------


class Layout:
    """Panels placed left to right, top to bottom on Grafana's 24-column grid, with ids."""

    def __init__(self) -> None:
        self.panels: list[Panel] = []
        self._x = self._y = self._row_h = 0

    def _next_id(self) -> int:
        return len(self.panels) + 1

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "title": title,
                "id": self._next_id(),
                "collapsed": False,
                "gridPos": {"x": 0, "y": self._y, "w": 24, "h": 1},
                "panels": [],
            }
        )
        self._y += 1

    def _newline(self) -> None:
        self._y += self._row_h
        self._x = self._row_h = 0

    def add(self, panel: Panel, w: int, h: int) -> Panel:
        if self._x + w > 24:
            self._newline()
        panel["id"] = self._next_id()
        panel["gridPos"] = {"x": self._x, "y": self._y, "w": w, "h": h}
        self._x += w
        self._row_h = max(self._row_h, h)
        self.panels.append(panel)
        return panel


def target(
    expr: str,
    legend: str = "",
    *,
    ref: str = "A",
    instant: bool = False,
    table: bool = False,
) -> JSON:
    t: JSON = {
        "datasource": DS,
        "refId": ref,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "editorMode": "code",
    }
    if table:
        t["format"] = "table"
    return t


def targets(*items: tuple[str, str], instant: bool = False, table: bool = False) -> list[JSON]:
    """(expr, legend) pairs as targets A, B, C, ..."""
    return [
        target(expr, legend, ref=chr(ord("A") + i), instant=instant, table=table)
        for i, (expr, legend) in enumerate(items)
    ]


def steps(*pairs: tuple[float | None, str]) -> JSON:
    return {
        "mode": "absolute",
        "steps": [{"color": colour, "value": value} for value, colour in pairs],
    }


def state_mappings() -> list[JSON]:
    """Severity code -> state name in its colour."""
    return [
        {
            "type": "value",
            "options": {
                str(CODE[state]): {"text": state, "color": COLOUR[state], "index": i}
                for i, state in enumerate(STATE_ORDER)
            },
        }
    ]


def base(kind: str, title: str, description: str, tgts: list[JSON], **extra: Any) -> Panel:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": tgts,
        **extra,
    }


def timeseries(
    title: str,
    description: str,
    tgts: list[JSON],
    *,
    unit: str = "short",
    overrides: Sequence[JSON] = (),
    thresholds: JSON | None = None,
    legend: str = "table",
    stack: bool = False,
    draw: str = "line",
    minimum: float | None = None,
    maximum: float | None = None,
    decimals: int | None = None,
) -> Panel:
    custom: JSON = {
        "drawStyle": draw,
        "lineWidth": 1,
        "fillOpacity": 30 if stack else 0,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "thresholdsStyle": {"mode": "off"},
    }
    if draw == "line" and not stack:
        custom["lineInterpolation"] = "stepAfter"
    defaults: JSON = {
        "unit": unit,
        "color": {"mode": "palette-classic"},
        "custom": custom,
        "thresholds": thresholds or steps((None, "green")),
    }
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    if decimals is not None:
        defaults["decimals"] = decimals
    return base(
        "timeseries",
        title,
        description,
        tgts,
        fieldConfig={"defaults": defaults, "overrides": list(overrides)},
        options={
            "legend": {
                "showLegend": True,
                "displayMode": legend,
                "placement": "right" if legend == "table" else "bottom",
                "calcs": ["mean", "max"] if legend == "table" else [],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    )


def dashed(name: str, colour: str = "red") -> JSON:
    """An override drawing the series ``name`` as a dashed reference line."""
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [
            {"id": "color", "value": {"mode": "fixed", "fixedColor": colour}},
            {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
            {"id": "custom.lineWidth", "value": 2},
            {"id": "custom.stacking", "value": {"mode": "none", "group": "A"}},
        ],
    }


def colour_by_name(name: str, colour: str) -> JSON:
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": colour}}],
    }


def stat(
    title: str,
    description: str,
    tgts: list[JSON],
    *,
    unit: str = "short",
    thresholds: JSON | None = None,
    mappings: list[JSON] | None = None,
    overrides: Sequence[JSON] = (),
    colour_mode: str = "background",
    text_mode: str = "auto",
    all_values: bool = False,
    limit: int | None = None,
    links: Sequence[JSON] = (),
    decimals: int | None = None,
    transformations: Sequence[JSON] = (),
    display_name: str | None = None,
) -> Panel:
    reduce: JSON = {
        "calcs": ["lastNotNull"],
        # numeric fields: with a displayName, a name pattern would match no field at all
        "fields": "",
        "values": all_values,
    }
    if limit is not None:
        reduce["limit"] = limit
    defaults: JSON = {
        "unit": unit,
        "color": {"mode": "thresholds"},
        "thresholds": thresholds or steps((None, "text")),
        "mappings": mappings or [],
        "links": list(links),
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    if display_name is not None:
        defaults["displayName"] = display_name
    panel = base(
        "stat",
        title,
        description,
        tgts,
        fieldConfig={"defaults": defaults, "overrides": list(overrides)},
        options={
            "reduceOptions": reduce,
            "colorMode": colour_mode,
            "graphMode": "none",
            "justifyMode": "center",
            "orientation": "auto",
            "textMode": text_mode,
            "wideLayout": True,
            "showPercentChange": False,
        },
    )
    if transformations:
        panel["transformations"] = list(transformations)
    return panel


def state_counts(title: str, description: str, template: str) -> Panel:
    """A stat with one figure per state (``template`` formatted with ``state``), in the
    header's order; a state other than up is coloured only when some point is in it."""
    return stat(
        title,
        description,
        [
            target(template.format(state=s), s, ref=chr(ord("A") + i), instant=True)
            for i, s in enumerate(COUNT_ORDER)
        ],
        overrides=[
            column(
                s,
                (
                    "thresholds",
                    steps((None, COLOUR[s]))
                    if s == "up"
                    else steps((None, "transparent"), (1, COLOUR[s])),
                ),
            )
            for s in STATE_ORDER
        ],
    )


def table(
    title: str,
    description: str,
    tgts: list[JSON],
    *,
    transformations: Sequence[JSON],
    overrides: Sequence[JSON],
    sort_by: str,
    desc: bool = True,
) -> Panel:
    return base(
        "table",
        title,
        description,
        tgts,
        transformations=list(transformations),
        fieldConfig={
            "defaults": {
                "custom": {"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False},
                "color": {"mode": "thresholds"},
                "thresholds": steps((None, "text")),
                "mappings": [],
            },
            "overrides": list(overrides),
        },
        options={
            "showHeader": True,
            "cellHeight": "sm",
            "footer": {"show": False, "reducer": ["sum"], "countRows": False, "fields": ""},
            "sortBy": [{"displayName": sort_by, "desc": desc}],
        },
    )


def column(name: str, *properties: tuple[str, Any]) -> JSON:
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": key, "value": value} for key, value in properties],
    }


def state_column(name: str = "State") -> JSON:
    return column(
        name,
        ("mappings", state_mappings()),
        ("custom.cellOptions", {"type": "color-background", "mode": "basic"}),
        ("custom.width", 110),
    )


def figure_column(
    name: str, unit: str, bad_above: float | None, *, bad_below: float | None = None
) -> JSON:
    if bad_below is not None:
        th = steps((None, "red"), (bad_below, "text"))
    else:
        th = steps((None, "text"), (bad_above, "orange"))
    return column(
        name,
        ("unit", unit),
        ("decimals", 2 if unit == "none" else None),
        ("thresholds", th),
        ("custom.cellOptions", {"type": "color-text"}),
        ("custom.width", 100),
    )


def state_timeline(
    title: str, description: str, tgts: list[JSON], *, row_height: float = 0.9
) -> Panel:
    return base(
        "state-timeline",
        title,
        description,
        tgts,
        fieldConfig={
            "defaults": {
                "color": {"mode": "thresholds"},
                "thresholds": steps((None, "text")),
                "mappings": state_mappings(),
                "custom": {
                    "fillOpacity": 80,
                    "lineWidth": 0,
                    "hideFrom": {"legend": False, "tooltip": False, "viz": False},
                },
            },
            "overrides": [],
        },
        options={
            "mergeValues": True,
            "showValue": "never",
            "alignValue": "left",
            "rowHeight": row_height,
            "legend": {"showLegend": False, "displayMode": "list", "placement": "bottom"},
            "tooltip": {"mode": "single", "sort": "none"},
        },
    )


def merge_and_organize(
    exclude: Iterable[str], rename: dict[str, str], order: Sequence[str]
) -> list[JSON]:
    """Instant table queries merged into one table on their shared labels, with only the
    columns named in ``order`` shown, in that order."""
    return [
        {"id": "merge", "options": {}},
        {
            "id": "organize",
            "options": {
                "excludeByName": dict.fromkeys(exclude, True),
                "renameByName": rename,
                "indexByName": {name: i for i, name in enumerate(order)},
            },
        },
    ]


def link(title: str, url: str) -> JSON:
    return {"title": title, "url": url}


POINT_URL = "/d/confmon-point/confmon-point?${datasource:queryparam}&${__url_time_range}"
DISTRICT_URL = "/d/confmon-district/confmon-district?${datasource:queryparam}&${__url_time_range}"

#: label columns of the joined tables that nobody reads
NOISE = ("Time", "instance", "job", "__name__")


# --- variables and annotations -----------------------------------------------------------------


def datasource_variable() -> JSON:
    return {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
    }


def query_variable(
    name: str,
    label: str,
    query: str,
    *,
    multi: bool,
    include_all: bool,
    description: str,
) -> JSON:
    v: JSON = {
        "name": name,
        "label": label,
        "description": description,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {
            "qryType": 1,
            "query": query,
            "refId": "PrometheusVariableQueryEditor-VariableQuery",
        },
        "current": {},
        "hide": 0,
        "includeAll": include_all,
        "multi": multi,
        "options": [],
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
    }
    if include_all:
        v["allValue"] = ".*"
        v["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return v


def annotation(name: str, expr: str, colour: str, *, enable: bool = True) -> JSON:
    """A state-change annotation: one mark per change, at the time the state began."""
    return {
        "name": name,
        "datasource": DS,
        "enable": enable,
        "hide": False,
        "iconColor": colour,
        "expr": expr,
        "step": "5s",
        "useValueForTime": True,
        "titleFormat": "{{name}} → {{state}}",
        "textFormat": "reason: {{reason}} · cause: {{cause}}",
        "tagKeys": "district,state",
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    layout: Layout,
    variables: list[JSON],
    annotations: list[JSON],
    *,
    refresh: str = "5s",
    time_from: str = "now-1h",
) -> JSON:
    return {
        "__inputs": [],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "11.6.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            *(
                {"type": "panel", "id": kind, "name": kind, "version": ""}
                for kind in sorted({p["type"] for p in layout.panels} - {"row"})
            ),
        ],
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["confmon"],
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "title": "confmon",
                "type": "dashboards",
                "tags": ["confmon"],
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "liveNow": False,
        "panels": layout.panels,
        "refresh": refresh,
        "schemaVersion": SCHEMA_VERSION,
        "templating": {"list": [datasource_variable(), *variables]},
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                },
                *annotations,
            ]
        },
        "time": {"from": time_from, "to": "now"},
        "timepicker": {"refresh_intervals": ["5s", "10s", "30s", "1m", "5m"]},
        "timezone": "browser",
        "version": 1,
        "weekStart": "",
    }


# --- overview ----------------------------------------------------------------------------------

#: every point's severity code
EVERY_POINT = severity()


def needs_attention_table(title: str, matchers: str, description: str) -> Panel:
    sel = f"{{{matchers}}}" if matchers else ""
    worst_first = (
        f"(({severity(matchers)}) > {CODE['maintenance']})\n"
        f"* on (point) group_left (name, host) confmon_point_info{sel}\n"
        f"* on (point) group_left (reason, cause) confmon_point_reason{sel}"
    )
    since = (
        f"max by (point) (confmon_point_state_since_timestamp_seconds{sel}) * 1000\n"
        f"and on (point) (({severity(matchers)}) > {CODE['maintenance']})"
    )
    return table(
        title,
        description,
        targets(
            (with_district_name(worst_first), ""),
            (since, ""),
            instant=True,
            table=True,
        ),
        transformations=merge_and_organize(
            (*NOISE, "level"),
            {
                "Value #A": "State",
                "Value #B": "Since",
                "name": "Room",
                "district_name": "District",
                "reason": "Reason",
                "cause": "Cause",
                "host": "Host",
                "point": "Point",
            },
            [
                "Value #A",
                "name",
                "district_name",
                "reason",
                "cause",
                "Value #B",
                "host",
                "point",
                "district",
            ],
        ),
        overrides=[
            state_column(),
            column("Since", ("unit", "dateTimeFromNow"), ("custom.width", 130)),
            column("Reason", ("custom.width", 120)),
            column("district", ("custom.hidden", True)),  # kept for the link
            column(
                "Room",
                (
                    "links",
                    [
                        link(
                            "${__data.fields.Room}: point dashboard",
                            POINT_URL
                            + "&var-district=${__data.fields.district}&var-point=${__data.fields.Point}",
                        )
                    ],
                ),
            ),
        ],
        sort_by="State",
    )


def overview() -> JSON:
    lay = Layout()
    lay.row("Readiness")
    lay.add(
        base(
            "gauge",
            "Readiness",
            "(up + degraded) / points not in maintenance. Green from the inventory's "
            "readiness target (confmon_readiness_target) up.",
            targets(
                ("confmon_readiness_ratio", "readiness"),
                ("max(confmon_readiness_target)", "target"),
                instant=True,
            ),
            transformations=[
                {
                    "id": "configFromData",
                    "options": {
                        "configRefId": "B",
                        "mappings": [
                            {
                                "fieldName": "target",
                                "handlerKey": "threshold1",
                                "handlerArguments": {"threshold": {"color": "green"}},
                            }
                        ],
                        "applyTo": {"id": "byFrameRefID", "options": "A"},
                    },
                }
            ],
            fieldConfig={
                "defaults": {
                    "unit": "percentunit",
                    "decimals": 1,
                    "min": 0,
                    "max": 1,
                    "color": {"mode": "thresholds"},
                    "thresholds": steps((None, "red"), (0.98, "green")),
                    "mappings": [],
                },
                "overrides": [],
            },
            options={
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "showThresholdLabels": False,
                "showThresholdMarkers": True,
                "orientation": "auto",
                "sizing": "auto",
                "minVizHeight": 75,
                "minVizWidth": 75,
            },
        ),
        5,
        7,
    )
    lay.add(
        stat(
            "Points short of the target",
            "How many more points must be ready (up or degraded) to reach the readiness "
            "target; 0 (green) when it is met. Look at it before the session opens.",
            targets(
                (
                    "clamp_min(\n"
                    '  ceil(max(confmon_readiness_target) * sum(confmon_points{state!="maintenance"}) - 1e-6)\n'
                    '  - sum(confmon_points{state=~"up|degraded"}),\n'
                    "  0\n)",
                    "short of target",
                ),
                instant=True,
            ),
            thresholds=steps((None, "green"), (1, "red")),
        ),
        4,
        7,
    )
    lay.add(
        state_counts(
            "Points per state",
            "How many points are in each state now.",
            'sum(confmon_points{{state="{state}"}})',
        ),
        9,
        7,
    )
    lay.add(
        stat(
            "Districts with an outage",
            "Districts whose headquarters is down (its rooms are unreachable behind it), "
            "and rooms down on their own elsewhere.",
            targets(
                (
                    f'count(confmon_point_state{{state="down"}} == 1 {TOP_LEVEL}) or vector(0)',
                    "districts down",
                ),
                (
                    f'count((confmon_point_state{{state="down"}} == 1) unless ((confmon_point_state{{state="down"}} == 1) {TOP_LEVEL})) or vector(0)',
                    "rooms down",
                ),
                instant=True,
            ),
            thresholds=steps((None, "green"), (1, "red")),
        ),
        6,
        7,
    )
    lay.add(
        timeseries(
            "Readiness against the target",
            "Readiness over time; the dashed line is the inventory's readiness target.",
            targets(
                ("confmon_readiness_ratio", "readiness"),
                ("max(confmon_readiness_target)", "target"),
            ),
            unit="percentunit",
            overrides=[dashed("target"), colour_by_name("readiness", "green")],
            legend="list",
            maximum=1,
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Points per state over time",
            "The counts per state, stacked: a district dropping shows as a red sliver (its "
            "headquarters) and a purple band (its rooms, unreachable).",
            targets(("sum by (state) (confmon_points)", "{{state}}")),
            overrides=[colour_by_name(s, COLOUR[s]) for s in STATE_ORDER],
            stack=True,
            legend="list",
            minimum=0,
        ),
        12,
        8,
    )

    lay.row("Rooms")
    lay.add(
        stat(
            "All rooms",
            "One tile per point, grouped by district (sorted by point id), coloured by "
            "state. Click a tile for its point dashboard.",
            [target(named(EVERY_POINT), "", instant=True, table=True)],
            mappings=state_mappings(),
            colour_mode="background",
            text_mode="name",
            all_values=True,
            limit=2000,
            display_name="${__data.fields.name}",
            links=[
                link(
                    "${__data.fields.name}: point dashboard",
                    POINT_URL
                    + "&var-district=${__data.fields.district}&var-point=${__data.fields.point}",
                )
            ],
            transformations=[
                {
                    "id": "sortBy",
                    "options": {"fields": {}, "sort": [{"field": "point", "desc": False}]},
                }
            ],
        ),
        24,
        16,
    )

    lay.row("Points that need attention")
    lay.add(
        needs_attention_table(
            "Points not up ($district)",
            'district=~"$district"',
            "Every point that is down, unreachable, degraded or unknown now, worst first: "
            "down (the trouble is there), unreachable (behind a down uplink: its Cause), "
            "degraded (Reason: the figure that crossed), unknown (no fresh result). "
            "Reason and Cause come from confmon_point_reason; the full sentence is on the "
            "terminal dashboard and in /api/v1/points/ID.",
        ),
        24,
        10,
    )

    lay.row("Districts")
    lay.add(
        state_timeline(
            "District headquarters",
            "One row per district headquarters (top-level point). A red row: the district's "
            "uplink is down and its rooms are unreachable.",
            [target(named(f"({EVERY_POINT})\n{TOP_LEVEL}"), "{{name}}")],
        ),
        12,
        20,
    )
    per_district = [
        target(
            f'sum by (district, district_name) ((confmon_district_points{{state="{s}"}}) * on (district) group_left (district_name) {DISTRICT_NAMES})',
            s,
            ref=chr(ord("A") + i),
            instant=True,
            table=True,
        )
        for i, s in enumerate(COUNT_ORDER)
    ]
    per_district.append(
        target(
            "sum by (district, district_name) ((\n"
            '  sum by (district) (confmon_district_points{state=~"up|degraded"})\n'
            '  / sum by (district) (confmon_district_points{state!="maintenance"})\n'
            f") * on (district) group_left (district_name) {DISTRICT_NAMES})",
            "ready",
            ref=chr(ord("A") + len(per_district)),
            instant=True,
            table=True,
        )
    )
    value_names = {f"Value #{t['refId']}": t["legendFormat"] for t in per_district}
    lay.add(
        table(
            "Points per district",
            "Per district: points in each state and the share ready, least ready first. "
            "Click a district for its dashboard.",
            per_district,
            transformations=merge_and_organize(
                NOISE,
                {**value_names, "district_name": "District"},
                ["district_name", *value_names, "district"],
            ),
            overrides=[
                *(
                    column(
                        s,
                        ("thresholds", steps((None, "transparent"), (1, COLOUR[s]))),
                        ("custom.cellOptions", {"type": "color-background", "mode": "basic"}),
                    )
                    for s in STATE_ORDER
                    if s != "up"
                ),
                column(
                    "ready",
                    ("unit", "percentunit"),
                    ("decimals", 0),
                    ("thresholds", steps((None, "red"), (0.98, "text"))),
                    ("custom.cellOptions", {"type": "color-text"}),
                ),
                column(
                    "District",
                    (
                        "links",
                        [
                            link(
                                "${__data.fields.District}: district dashboard",
                                DISTRICT_URL + "&var-district=${__data.fields.district}",
                            )
                        ],
                    ),
                ),
                column("district", ("custom.hidden", True)),
            ],
            sort_by="ready",
            desc=False,
        ),
        12,
        20,
    )

    lay.row("Media quality ($district)")
    quality_panels(lay, 'district=~"$district"', "points", probe_var=True)

    confmon_itself(lay)
    return dashboard(
        "confmon-overview",
        "confmon — Hội nghị (overview)",
        "confmon: readiness and health of the remote meeting points of a hybrid "
        "conference, for the wall screens. Uses only confmon's own metrics.",
        lay,
        [
            query_variable(
                "district",
                "District",
                "label_values(confmon_point_info, district)",
                multi=True,
                include_all=True,
                description="Districts shown by the tables and media-quality panels",
            ),
            query_variable(
                "probe",
                "RTT probe",
                "label_values(confmon_probe_rtt_seconds, probe)",
                multi=True,
                include_all=True,
                description="Probes whose RTT the RTT panel ranks",
            ),
            query_variable(
                "job",
                "confmon job",
                "label_values(confmon_readiness_ratio, job)",
                multi=False,
                include_all=False,
                description="The Prometheus job that scrapes confmon (for up and scrape age)",
            ),
        ],
        [
            annotation(
                "District headquarters",
                state_changes("") + f"\n{TOP_LEVEL}",
                "red",
            ),
            annotation(
                "Rooms down",
                f'({state_changes("")}) and on (point) (confmon_point_state{{state="down"}} == 1)',
                "orange",
            ),
        ],
    )


def quality_panels(lay: Layout, matchers: str, what: str, *, probe_var: bool = False) -> None:
    """RTT, jitter, loss and MOS: the 10 worst series over the range, with the thresholds."""
    probes = ', probe=~"$probe"' if probe_var else ""
    for title, metric, unit, figure, extra in (
        ("RTT", "confmon_probe_rtt_seconds", "s", "rtt", probes),
        ("Jitter", "confmon_probe_jitter_seconds", "s", "jitter", ""),
        ("Packet loss", "confmon_probe_loss_ratio", "percentunit", "loss", ""),
    ):
        lay.add(
            timeseries(
                f"{title}: worst 10 {what}" + (" ($probe)" if extra else ""),
                f"The 10 {what} and probes with the highest {title.lower()} on average over "
                "the time range (the same 10 all along), last-cycle figures. The dashed line "
                "is the inventory's threshold: a reachable point over it is degraded."
                + (
                    " HTTP's RTT is its time to first byte and is not held to it."
                    if figure == "rtt"
                    else ""
                ),
                targets(
                    (worst(f"{metric}{{{matchers}{extra}}}"), "{{name}} ({{probe}})"),
                    (threshold(figure), "threshold"),
                ),
                unit=unit,
                overrides=[dashed("threshold")],
                minimum=0,
            ),
            12,
            9,
        )
    lay.add(
        timeseries(
            f"MOS: worst 10 {what}",
            f"The 10 {what} with the lowest E-model MOS estimate on average over the time "
            "range (points whose profile runs the media probe); degraded below the dashed line.",
            targets(
                (worst(f"confmon_point_mos{{{matchers}}}", lowest=True, by="point"), "{{name}}"),
                (threshold("mos"), "threshold"),
            ),
            unit="none",
            overrides=[dashed("threshold")],
            minimum=1,
            maximum=4.5,
            decimals=2,
        ),
        12,
        9,
    )


def confmon_itself(lay: Layout) -> None:
    lay.row("confmon itself")
    lay.add(
        stat(
            "Scrape",
            "Prometheus's own view of confmon: UP when the last scrape of the job worked. "
            "DOWN (or no data) means every other panel is stale.",
            targets(('min(up{job="$job"})', "scrape"), instant=True),
            mappings=[
                {
                    "type": "value",
                    "options": {
                        "1": {"text": "UP", "color": "green", "index": 0},
                        "0": {"text": "DOWN", "color": "red", "index": 1},
                    },
                },
                {
                    "type": "special",
                    "options": {
                        "match": "null",
                        "result": {"text": "NO DATA", "color": "red", "index": 2},
                    },
                },
            ],
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Scrape age",
            "Seconds since the last sample from confmon reached Prometheus. It grows when "
            "confmon stops answering; past the scrape interval the wall screens are stale.",
            targets(("time() - max(timestamp(confmon_readiness_ratio))", "age"), instant=True),
            unit="s",
            decimals=0,
            thresholds=steps((None, "green"), (15, "orange"), (60, "red")),
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Scrape duration",
            "How long Prometheus's scrape of confmon takes.",
            targets(('max(scrape_duration_seconds{job="$job"})', "scrape"), instant=True),
            unit="s",
            thresholds=steps((None, "green"), (1, "orange")),
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Config",
            "OK or FAILED for the last config (re)load. FAILED: confmon still runs the "
            "previous config; fix the file (confmon check-config FILE) and reload again.",
            targets(("confmon_config_last_reload_successful", "config"), instant=True),
            mappings=[
                {
                    "type": "value",
                    "options": {
                        "1": {"text": "OK", "color": "green", "index": 0},
                        "0": {"text": "FAILED", "color": "red", "index": 1},
                    },
                }
            ],
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Overruns (time range)",
            "Cycles skipped because the previous one still ran: should stay 0.",
            targets(
                ("sum(increase(confmon_scheduler_overruns_total[$__range]))", "overruns"),
                instant=True,
            ),
            thresholds=steps((None, "green"), (1, "orange")),
            decimals=0,
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Points monitored",
            "Points in the running inventory.",
            targets(("count(confmon_point_info)", "points"), instant=True),
            colour_mode="none",
        ),
        4,
        4,
    )
    lay.add(
        timeseries(
            "Cycle duration",
            "p50/p90/p99 of how long a point's probe cycle takes (media cycles included). "
            "Cycles near the interval lead to overruns.",
            targets(
                *(
                    (
                        f"histogram_quantile({q}, sum by (le) (rate(confmon_cycle_duration_seconds_bucket[$__rate_interval])))",
                        f"p{round(q * 100)}",
                    )
                    for q in (0.5, 0.9, 0.99)
                )
            ),
            unit="s",
            legend="list",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Probes per second",
            "By probe and result. Failures here include ones too short to change a state.",
            targets(
                (
                    "sum by (probe, result) (rate(confmon_probes_total[$__rate_interval]))",
                    "{{probe}} {{result}}",
                )
            ),
            unit="ops",
            legend="list",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Overruns and state changes",
            "Cycles skipped (should stay 0), and state changes per minute by new state.",
            targets(
                ("sum(increase(confmon_scheduler_overruns_total[$__rate_interval]))", "overruns"),
                (
                    "sum by (state) (rate(confmon_state_changes_total[$__rate_interval])) * 60",
                    "→ {{state}} /min",
                ),
            ),
            overrides=[colour_by_name(f"→ {s} /min", COLOUR[s]) for s in STATE_ORDER],
            legend="list",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Alert deliveries",
            "Webhook deliveries per minute by receiver and result, and notifications "
            "waiting in the outbox (should fall back to 0).",
            targets(
                (
                    "sum by (receiver, result) (rate(confmon_notifications_total[$__rate_interval])) * 60",
                    "{{receiver}} {{result}} /min",
                ),
                ("sum by (receiver) (confmon_notifications_pending)", "{{receiver}} pending"),
            ),
            legend="list",
            minimum=0,
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Agents (confmon server)",
            "Agents online (confmon_agent_up) and seconds since each was last heard from. "
            "Empty with confmon run, which probes by itself.",
            targets(
                ("confmon_agent_up", "{{agent}} up"),
                ("time() - confmon_agent_last_seen_timestamp_seconds", "{{agent}} silent for"),
            ),
            legend="list",
            minimum=0,
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Results rejected (confmon server)",
            "Results from agents dropped per minute, by reason (malformed, not assigned, "
            "replayed, ...). Anything but 0 deserves a look at the agent's log.",
            targets(
                (
                    "sum by (reason) (rate(confmon_results_rejected_total[$__rate_interval])) * 60",
                    "{{reason}} /min",
                )
            ),
            legend="list",
            minimum=0,
        ),
        24,
        6,
    )


# --- district ----------------------------------------------------------------------------------


def district() -> JSON:
    lay = Layout()
    here = 'district="$district"'
    lay.row("District $district")
    lay.add(
        stat(
            "Headquarters",
            "The state of the district's headquarters (its uplink): when it is down, every "
            "room behind it is unreachable.",
            [target(named(severity('point="$district"')), "{{name}}", instant=True)],
            mappings=state_mappings(),
            text_mode="value_and_name",
        ),
        6,
        5,
    )
    lay.add(
        state_counts(
            "Rooms per state",
            "How many of the district's points are in each state now.",
            'sum(confmon_district_points{{district="$district", state="{state}"}})',
        ),
        12,
        5,
    )
    lay.add(
        stat(
            "Ready",
            "(up + degraded) / the district's points not in maintenance.",
            targets(
                (
                    f'sum(confmon_district_points{{{here}, state=~"up|degraded"}}) / sum(confmon_district_points{{{here}, state!="maintenance"}})',
                    "ready",
                ),
                instant=True,
            ),
            unit="percentunit",
            decimals=1,
            thresholds=steps((None, "red"), (0.98, "green")),
        ),
        6,
        5,
    )

    per_room = [
        (
            with_district_name(
                named(f"({severity(here)})")
                + f"\n* on (point) group_left (reason, cause) confmon_point_reason{{{here}}}"
            ),
            "state",
        ),
        (f"max by (point) (confmon_point_state_since_timestamp_seconds{{{here}}}) * 1000", "since"),
        (f'max by (point) (confmon_probe_rtt_seconds{{{here}, probe=~"icmp|sip|media"}})', "rtt"),
        (f'max by (point) (confmon_probe_jitter_seconds{{{here}, probe=~"icmp|media"}})', "jitter"),
        (f'max by (point) (confmon_probe_loss_ratio{{{here}, probe=~"icmp|media"}})', "loss"),
        (f"max by (point) (confmon_point_mos{{{here}}})", "mos"),
    ]
    lay.row("Rooms")
    lay.add(
        table(
            "Rooms of $district",
            "Each point of the district, worst first: state, why (Reason) and where the "
            "trouble is (Cause), since when, and its last figures: RTT (the highest of ping, "
            "SIP and media), jitter and loss (the worse of ping and media), MOS. Figures past the inventory's "
            "default thresholds are coloured. Click a room for its point dashboard.",
            targets(*per_room, instant=True, table=True),
            transformations=merge_and_organize(
                (*NOISE, "level", "district"),
                {
                    "Value #A": "State",
                    "Value #B": "Since",
                    "Value #C": "RTT",
                    "Value #D": "Jitter",
                    "Value #E": "Loss",
                    "Value #F": "MOS",
                    "name": "Room",
                    "district_name": "District",
                    "reason": "Reason",
                    "cause": "Cause",
                    "point": "Point",
                },
                [
                    "Value #A",
                    "name",
                    "reason",
                    "cause",
                    "Value #B",
                    "Value #C",
                    "Value #D",
                    "Value #E",
                    "Value #F",
                    "point",
                    "district_name",
                ],
            ),
            overrides=[
                state_column(),
                column("Since", ("unit", "dateTimeFromNow"), ("custom.width", 130)),
                figure_column("RTT", "s", 0.150),
                figure_column("Jitter", "s", 0.030),
                figure_column("Loss", "percentunit", 0.02),
                figure_column("MOS", "none", None, bad_below=3.6),
                column(
                    "Room",
                    (
                        "links",
                        [
                            link(
                                "${__data.fields.Room}: point dashboard",
                                POINT_URL
                                + "&var-district=$district&var-point=${__data.fields.Point}",
                            )
                        ],
                    ),
                ),
            ],
            sort_by="State",
        ),
        24,
        16,
    )
    lay.row("History")
    lay.add(
        state_timeline(
            "States of $district",
            "One row per point of the district over the time range.",
            [target(named(f"({severity(here)})"), "{{name}}")],
            row_height=0.8,
        ),
        24,
        18,
    )
    quality_panels(lay, here, "rooms")
    return dashboard(
        "confmon-district",
        "confmon — District",
        "One district: its headquarters, each room's state, reason and figures, and their history.",
        lay,
        [
            query_variable(
                "district",
                "District",
                "label_values(confmon_point_info, district)",
                multi=False,
                include_all=False,
                description="The district (id of its headquarters)",
            )
        ],
        [annotation("State changes in $district", state_changes(here), "red")],
    )


# --- point -------------------------------------------------------------------------------------


def point() -> JSON:
    lay = Layout()
    here = 'point="$point"'
    lay.row("Point $point")
    lay.add(
        stat(
            "State",
            "The point's state now.",
            [target(named(f"({severity(here)})"), "{{name}}", instant=True)],
            mappings=state_mappings(),
            text_mode="value_and_name",
        ),
        6,
        5,
    )
    lay.add(
        stat(
            "Reason",
            "Why, as a short code: path (no answer), service (the host answers, SIP does "
            "not), uplink (behind a down uplink: see Cause), the figures that crossed "
            "(rtt, jitter, loss, mos, probe), stale or agent_offline (no fresh result).",
            [target(f"confmon_point_reason{{{here}}}", "{{reason}}", instant=True)],
            colour_mode="none",
            text_mode="name",
        ),
        4,
        5,
    )
    lay.add(
        stat(
            "Cause",
            "The point where the trouble is: the point itself, or the uplink it is behind.",
            [target(f"confmon_point_reason{{{here}}}", "{{cause}}", instant=True)],
            colour_mode="none",
            text_mode="name",
        ),
        4,
        5,
    )
    lay.add(
        stat(
            "Since",
            "When the current state began.",
            [
                target(
                    f"max(confmon_point_state_since_timestamp_seconds{{{here}}}) * 1000",
                    "since",
                    instant=True,
                )
            ],
            unit="dateTimeFromNow",
            colour_mode="none",
        ),
        5,
        5,
    )
    lay.add(
        stat(
            "MOS",
            "E-model MOS estimate of the media path (1 to 4.5); degraded below the threshold.",
            [target(f"max(confmon_point_mos{{{here}}})", "MOS", instant=True)],
            unit="none",
            decimals=2,
            thresholds=steps((None, "red"), (3.6, "green")),
        ),
        5,
        5,
    )
    lay.add(
        state_timeline(
            "State history",
            "The point's state over the time range.",
            [target(named(f"({severity(here)})"), "{{name}}")],
        ),
        24,
        4,
    )
    lay.row("Probes")
    for title, metric, unit, figure in (
        ("RTT by probe", "confmon_probe_rtt_seconds", "s", "rtt"),
        ("Jitter by probe", "confmon_probe_jitter_seconds", "s", "jitter"),
        ("Packet loss by probe", "confmon_probe_loss_ratio", "percentunit", "loss"),
    ):
        lay.add(
            timeseries(
                title,
                "Each probe's last-cycle figure; the dashed line is the inventory's threshold.",
                targets((f"{metric}{{{here}}}", "{{probe}}"), (threshold(figure), "threshold")),
                unit=unit,
                overrides=[dashed("threshold")],
                legend="list",
                minimum=0,
            ),
            12,
            8,
        )
    lay.add(
        timeseries(
            "MOS",
            "E-model MOS estimate of the media path; degraded below the dashed line.",
            targets((f"confmon_point_mos{{{here}}}", "MOS"), (threshold("mos"), "threshold")),
            unit="none",
            overrides=[dashed("threshold")],
            legend="list",
            minimum=1,
            maximum=4.5,
            decimals=2,
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Probe success",
            "1 when the probe's last cycle succeeded, 0 when it failed.",
            targets((f"confmon_probe_success{{{here}}}", "{{probe}}")),
            legend="list",
            minimum=0,
            maximum=1,
            decimals=0,
        ),
        24,
        6,
    )
    return dashboard(
        "confmon-point",
        "confmon — Point",
        "One meeting point: its state, reason, cause and since, each probe's figures, and its history.",
        lay,
        [
            query_variable(
                "district",
                "District",
                "label_values(confmon_point_info, district)",
                multi=False,
                include_all=True,
                description="Narrows the point picker to one district",
            ),
            query_variable(
                "point",
                "Point",
                'label_values(confmon_point_info{district=~"$district"}, point)',
                multi=False,
                include_all=False,
                description="The point (its id)",
            ),
        ],
        [annotation("State changes of $point", state_changes(here), "red")],
    )


# --- files -------------------------------------------------------------------------------------

DASHBOARDS = {
    "confmon-overview.json": overview,
    "confmon-district.json": district,
    "confmon-point.json": point,
}


def render(build: Any) -> str:
    return json.dumps(build(), ensure_ascii=False, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dashboards.generate",
        description="Write the Grafana dashboards of dashboards/ from this file.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a dashboard file differs from what would be written",
    )
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = HERE / name
        text = render(build)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(
                f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}"
            )
    if stale:
        print(
            f"out of date: {', '.join(stale)} (run python -m dashboards.generate)", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
