"""The Grafana dashboard: sound JSON, only metrics that confmon really exposes, queries Prometheus accepts.

The metric check is made against a real scrape of a :class:`~monitor.core.service.Monitor`
fed with results (not against a list kept by hand), and the queries are run by a
real Prometheus scraping that monitor, with the dashboard's template variables
filled in as Grafana would.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from monitor.core.health import STATES
from monitor.core.service import Monitor
from monitor.dashboard.view import STYLE
from tests.helpers import ROOT, require_binary
from tests.outputs.fixtures import CONFIG, bad, feed, good, inventory, serving
from tests.prometheus import prometheus

DASHBOARD = ROOT / "dashboards" / "confmon-overview.json"

#: the terminal dashboard's rich styles -> the Grafana colours that stand for them
GRAFANA_COLOUR = {
    "green": "green",
    "yellow": "yellow",
    "bold red": "red",
    "magenta": "purple",
    "dim": "#8e8e8e",
    "blue": "blue",
}
#: what Grafana puts in for each variable when the queries are run here
VARIABLES = {
    "district": "ba-vi",
    "probe": ".*",
    "readiness_target": "0.98",
    "__rate_interval": "1m",
}
METRIC = re.compile(r"\bconfmon_[a-z_]+\b")
SELECTOR = re.compile(r"\b(confmon_[a-z_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
RATE_OF = re.compile(r"\b(?:rate|irate|increase)\(\s*(confmon_[a-z_]+)")
KEYWORDS = {"and", "or", "unless", "bool", "offset"}
VARIABLE = re.compile(r"\$\{?([A-Za-z_]\w*)")

Dashboard = dict[str, Any]
Samples = dict[str, tuple[str, list[dict[str, str]]]]  # sample name -> (family type, label sets)


def load() -> Dashboard:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def all_panels(d: Dashboard) -> Iterator[dict[str, Any]]:
    for p in d["panels"]:
        yield p
        yield from p.get("panels", [])  # panels inside collapsed rows


def expressions(d: Dashboard) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel query."""
    return [
        (f"{p['title']} [{t['refId']}]", t["expr"])
        for p in all_panels(d)
        for t in p.get("targets", [])
    ]


def variable_queries(d: Dashboard) -> dict[str, str]:
    return {v["name"]: v["definition"] for v in d["templating"]["list"] if v["type"] == "query"}


def metric_names(expr: str) -> list[str]:
    """Every metric name in a PromQL expression (what is left once strings, label lists,
    ranges, functions and keywords are taken out)."""
    rest = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    rest = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", rest)
    rest = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", rest)
    words = re.findall(r"(?<![\w.$])([A-Za-z_:][\w:]*)\b(?!\s*\()", rest)
    return [w for w in words if w not in KEYWORDS]


def substitute(expr: str) -> str:
    out = re.sub(r"\$\{?(\w+)\}?", lambda m: VARIABLES.get(m.group(1), m.group(0)), expr)
    assert not VARIABLE.search(out), f"unknown template variable left in {out!r}"
    return out


def put_in_four_states(m: Monitor) -> None:
    """Results that put the fixture's points in four different states, and some telemetry."""
    now = time.time()
    for step in range(3):
        at = now - 10 + 5 * step
        feed(
            m,
            "son-tay",
            [good("icmp", at, rtt=0.012, jitter=0.002, loss=0.0), good("sip", at, rtt=0.02)],
            at,
        )
        feed(
            m,
            "ba-vi",
            [
                good("icmp", at, rtt=0.03, jitter=0.004, loss=0.0),
                good("sip", at, rtt=0.04),
                good("http", at, rtt=0.09),
                good("media", at, rtt=0.03, jitter=0.045, loss=0.04, mos=3.1),
            ],
            at,
        )
        feed(m, "ba-vi.tan-linh", [bad("icmp", at), bad("sip", at)], at)
        # ba-vi.ba-trai gets nothing: it stays unknown
    for seconds in (0.05, 0.2, 0.3, 1.2):
        m.telemetry.cycle_duration.observe(seconds)
    m.telemetry.probes.labels("icmp", "success").inc(40)
    m.telemetry.probes.labels("sip", "failure").inc(3)


def scrape() -> Samples:
    m = Monitor(inventory())
    put_in_four_states(m)
    text = m.writer.render() + m.telemetry.render()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, (family.type, []))[1].append(dict(s.labels))
    return out


# --- the JSON itself --------------------------------------------------------------------------


def test_dashboard_is_importable_grafana_json() -> None:
    """Fixed uid and title, unique panel ids, panels on the 24-column grid without overlaps."""
    d = load()
    assert d["uid"] == "confmon-overview"
    assert d["title"] == "confmon — Hội nghị (overview)"
    assert 36 <= d["schemaVersion"] <= 41
    assert d["id"] is None  # an exported dashboard: Grafana assigns its own id on import
    ids = [p["id"] for p in all_panels(d)]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine
    assert expressions(d), "no queries at all"


def test_every_query_uses_the_datasource_variable_and_known_variables() -> None:
    """Panels and queries go through ${datasource}; every $variable used is defined."""
    d = load()
    defined = {v["name"] for v in d["templating"]["list"]}
    assert {"datasource", "district"} <= defined
    ds = next(v for v in d["templating"]["list"] if v["name"] == "datasource")
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    builtin = {"__rate_interval", "__interval", "__range", "__all"}
    for p in all_panels(d):
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
        used = set(VARIABLE.findall(json.dumps(p, ensure_ascii=False)))
        assert used <= defined | builtin, f"{p['title']}: undefined {used - defined - builtin}"
    assert variable_queries(d)["district"] == "label_values(confmon_point_info, district)"


def _state_colours(node: Any, found: list[tuple[str, str]]) -> None:
    """Collect (state, colour) from value mappings and per-state colour overrides."""
    if isinstance(node, dict):
        if node.get("type") == "value" and isinstance(node.get("options"), dict):
            for m in node["options"].values():
                if isinstance(m, dict) and m.get("text") in STATES:
                    found.append((m["text"], m["color"]))
        matcher = node.get("matcher", {})
        name = str(matcher.get("options", "")).removeprefix("→ ").removesuffix(" /min")
        if matcher.get("id") == "byName" and name in STATES:
            for prop in node.get("properties", []):
                if prop["id"] == "color" and prop["value"].get("mode") == "fixed":
                    found.append((name, prop["value"]["fixedColor"]))
                if prop["id"] == "thresholds":
                    steps = [s["color"] for s in prop["value"]["steps"]]
                    found.append((name, next(c for c in steps if c != "transparent")))
        for value in node.values():
            _state_colours(value, found)
    elif isinstance(node, list):
        for value in node:
            _state_colours(value, found)


def test_state_colours_match_the_terminal_dashboard() -> None:
    """Each of the six states has the same colour as on the terminal dashboard, everywhere."""
    found: list[tuple[str, str]] = []
    _state_colours(load(), found)
    assert {state for state, _ in found} == set(STATES)
    for state, colour in found:
        assert colour == GRAFANA_COLOUR[STYLE[state]], f"{state} is {colour}"


# --- against a real scrape -------------------------------------------------------------------


def test_every_metric_in_the_dashboard_is_exposed() -> None:
    """Metric names, label names and fixed label values in the queries all exist in a real scrape."""
    d = load()
    samples = scrape()
    for name, query in variable_queries(d).items():
        found = re.fullmatch(r"label_values\((confmon_[a-z_]+), *(\w+)\)", query)
        assert found, f"${name}: {query!r} is not label_values(metric, label)"
        metric, label = found.groups()
        assert metric in samples and all(label in ls for ls in samples[metric][1]), query
    for where, expr in expressions(d):
        for name in metric_names(expr):
            assert METRIC.fullmatch(name), f"{where}: {name} is not a confmon metric"
            assert name in samples, f"{where}: {name} is not exposed by confmon"
        for name in RATE_OF.findall(expr):
            kind = samples[name][0]
            assert kind in ("counter", "histogram"), f"{where}: rate() over {kind} {name}"
            assert name.endswith(("_total", "_bucket")), f"{where}: rate() over {name}"
        for name, body in SELECTOR.findall(expr):
            label_sets = samples[name][1]
            for label, op, value in MATCHER.findall(body):
                assert any(label in ls for ls in label_sets), f"{where}: {name} has no {label!r}"
                if "$" in value or op.startswith("!"):
                    continue
                alternatives = value.split("|") if op == "=~" else [value]
                present = {ls.get(label) for ls in label_sets}
                for alt in alternatives:
                    assert alt in present, f"{where}: no {name}{{{label}={alt!r}}} in a scrape"


def test_promtool_parses_every_query(tmp_path: Path) -> None:
    """promtool's PromQL parser accepts each query (as a recording rule) once variables are filled."""
    promtool = require_binary("promtool")
    rules = [
        {"record": f"dashboard:query_{i}", "expr": substitute(expr)}
        for i, (_, expr) in enumerate(expressions(load()))
    ]
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}), "utf-8")
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


async def test_prometheus_answers_every_panel_query(tmp_path: Path) -> None:
    """A real Prometheus scraping a fed monitor returns data for every query, and the right data."""
    async with serving(tmp_path, text=CONFIG) as (monitor, base):
        put_in_four_states(monitor)
        d = load()
        async with prometheus(tmp_path, [base.removeprefix("http://")]) as prom:
            # rate() over 1m needs a few samples in the window
            await prom.wait_for("count_over_time(confmon_readiness_ratio[1m]) >= 3", within=30)
            answers: dict[str, list[dict[str, Any]]] = {}
            for where, expr in expressions(d):
                result = await prom.query(substitute(expr))
                assert result, f"{where}: no data for {substitute(expr)}"
                answers[where] = result

            # what Grafana asks for the district picker
            async with (
                aiohttp.ClientSession() as s,
                s.get(
                    f"{prom.url}/api/v1/label/district/values",
                    params={"match[]": "confmon_point_info"},
                ) as resp,
            ):
                assert (await resp.json())["data"] == ["ba-vi", "son-tay"]

    def one(title: str) -> list[dict[str, Any]]:
        return next(v for k, v in answers.items() if k.startswith(title))

    # up 1, degraded 1, down 1, unknown 1: 98 % of 4 needs all 4, so 2 short
    assert float(one("Points short of the target")[0]["value"][1]) == 2
    not_up = {r["metric"]["name"]: r["metric"]["state"] for r in one("Points not up")}
    assert not_up == {
        "Huyện Ba Vì": "degraded",
        "Xã Tản Lĩnh": "down",
        'Xã "Ba" Trại': "unknown",
    }
    codes = {r["metric"]["name"]: r["value"][1] for r in one("District headquarters")}
    assert codes == {"Huyện Ba Vì": "2", "Thị xã Sơn Tây": "1"}  # degraded, up
    rows = {
        r["metric"]["name"]: float(r["value"][1])
        for k, v in answers.items()
        if k.startswith("Points per district [C]")  # down
        for r in v
    }
    assert rows == {"Huyện Ba Vì": 1.0, "Thị xã Sơn Tây": 0.0}
    mos = one("MOS: worst 10 points")
    assert [r["metric"]["name"] for r in mos] == ["Huyện Ba Vì"]


def test_top_row_counts_each_state_in_the_terminal_order() -> None:
    """The 'Points per state' stat has one query per state, in the terminal dashboard's order."""
    stat = next(p for p in all_panels(load()) if p["title"] == "Points per state")
    assert [t["legendFormat"] for t in stat["targets"]] == [s.value for s in STATES]
    for t in stat["targets"]:
        assert f'state="{t["legendFormat"]}"' in t["expr"]
