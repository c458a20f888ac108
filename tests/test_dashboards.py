"""The Grafana dashboards: generated, sound JSON in Grafana's schema, only metrics that confmon
really exposes, queries Prometheus accepts.

The metric check is made against a real scrape of a :class:`~monitor.core.service.Monitor`
(not against a list kept by hand). What the queries return from a real Prometheus scraping
``confmon run`` against the lab is checked in ``tests/test_dashboards_e2e.py``.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dashboards import generate
from monitor.core.health import STATES
from monitor.core.service import Monitor
from monitor.dashboard.model import STATE_ORDER
from monitor.dashboard.view import STYLE
from tests.grafana_schema import problems
from tests.helpers import ROOT, require_binary
from tests.outputs.fixtures import bad, feed, good, inventory

FILES = {name: ROOT / "dashboards" / name for name in generate.DASHBOARDS}
UIDS = {
    "confmon-overview.json": "confmon-overview",
    "confmon-district.json": "confmon-district",
    "confmon-point.json": "confmon-point",
}

#: what Grafana puts in for each variable when the queries are run here
VARIABLES = {
    "district": "ba-vi",
    "point": "ba-vi",
    "probe": ".*",
    "job": "confmon",
    "__rate_interval": "15s",
    "__range": "120s",
}
BUILTIN = {
    "__rate_interval",
    "__interval",
    "__range",
    "__all",
    "__data",
    "__url_time_range",
    "__field",
}
#: labels Prometheus adds to every scraped series
TARGET_LABELS = {"job", "instance"}
#: series that are Prometheus's own, about the confmon job
PROMETHEUS_OWN = {"up", "scrape_duration_seconds"}
METRIC = re.compile(r"\bconfmon(?:_[a-z]+)+\b|\bconfmon:[a-z_]+:[a-z_]+\b")
SELECTOR = re.compile(r"\b(confmon_[a-z_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
RATE_OF = re.compile(r"\b(?:rate|irate|increase)\(\s*(confmon_[a-z_]+)")
KEYWORDS = {"and", "or", "unless", "bool", "offset", "end", "start"}
VARIABLE = re.compile(r"\$\{?([A-Za-z_]\w*)")

Dashboard = dict[str, Any]
Samples = dict[str, tuple[str, list[dict[str, str]]]]  # sample name -> (family type, label sets)


def load(name: str) -> Dashboard:
    data = json.loads(FILES[name].read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def all_panels(d: Dashboard) -> Iterator[dict[str, Any]]:
    for p in d["panels"]:
        yield p
        yield from p.get("panels", [])  # panels inside collapsed rows


def expressions(d: Dashboard) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel query and every annotation query."""
    out = [
        (f"{p['title']} [{t['refId']}]", t["expr"])
        for p in all_panels(d)
        for t in p.get("targets", [])
    ]
    out += [(f"annotation {a['name']}", a["expr"]) for a in d["annotations"]["list"] if "expr" in a]
    return out


def variable_queries(d: Dashboard) -> dict[str, str]:
    return {v["name"]: v["definition"] for v in d["templating"]["list"] if v["type"] == "query"}


def metric_names(expr: str) -> list[str]:
    """Every metric name in a PromQL expression (what is left once strings, label lists,
    ranges, functions and keywords are taken out)."""
    rest = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    rest = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", rest)
    rest = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", rest)
    rest = re.sub(r"@\s*(?:end|start)\(\)", " ", rest)
    words = re.findall(r"(?<![\w.$])([A-Za-z_:][\w:]*)\b(?!\s*\()", rest)
    return [w for w in words if w not in KEYWORDS]


def substitute(expr: str) -> str:
    out = re.sub(r"\$\{?(\w+)\}?", lambda m: VARIABLES.get(m.group(1), m.group(0)), expr)
    assert not VARIABLE.search(out), f"unknown template variable left in {out!r}"
    return out


def scrape() -> Samples:
    """A monitor's whole /metrics, in four states, with the telemetry of confmon server and of
    the alerts as well (agents, rejected results, deliveries)."""
    m = Monitor(inventory())
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
    m.telemetry.cycle_duration.observe(0.2)
    m.telemetry.watch_agents(lambda: {"ba-vi-1": (True, now)})
    m.telemetry.watch_outbox(lambda: {"zalo": 0})
    m.telemetry.rejected.labels("malformed").inc()
    m.telemetry.notifications.labels("zalo", "delivered").inc()
    m.telemetry.overruns.inc(0)
    text = m.writer.render() + m.telemetry.render()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, (family.type, []))[1].append(dict(s.labels))
    return out


# --- generated --------------------------------------------------------------------------------


def test_the_json_is_what_generate_writes(capsys: pytest.CaptureFixture[str]) -> None:
    """Each dashboard file is the output of dashboards/generate.py (edit that, not the JSON)."""
    assert generate.main(["--check"]) == 0, capsys.readouterr().err


def test_generate_check_names_a_stale_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--check exits 1 and names the file when a dashboard was edited by hand."""
    for name, path in FILES.items():
        (tmp_path / name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "confmon-point.json").write_text("{}", encoding="utf-8")
    monkeypatch.setattr(generate, "HERE", tmp_path)
    assert generate.main(["--check"]) == 1
    assert "out of date: confmon-point.json" in capsys.readouterr().err


# --- the JSON itself --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FILES))
def test_dashboard_is_importable_grafana_json(name: str) -> None:
    """Fixed uid, current schema, unique panel ids, panels on the 24-column grid without overlaps."""
    d = load(name)
    assert d["uid"] == UIDS[name]
    assert d["title"].startswith("confmon — ")
    assert d["schemaVersion"] == generate.SCHEMA_VERSION == 41
    assert d["id"] is None  # an exported dashboard: Grafana assigns its own id on import
    ids = [p["id"] for p in all_panels(d)]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine
        assert p["description"] if p["type"] != "row" else True, f"{p['title']} says nothing"
    assert expressions(d), "no queries at all"


@pytest.mark.parametrize("name", list(FILES))
def test_grafana_schema_accepts_every_key_and_value(name: str) -> None:
    """Loaded into grafana-foundation-sdk's models (Grafana's own schema), nothing is dropped
    as unknown and every enum holds a value the schema lists."""
    assert problems(load(name)) == []


def test_the_schema_check_catches_a_misspelt_option() -> None:
    """The check above can fail: a misspelt key and a wrong enum value are both found."""
    d = load("confmon-overview.json")
    stat = next(p for p in d["panels"] if p["type"] == "stat")
    stat["options"]["textmode"] = stat["options"].pop("textMode")
    series = next(p for p in d["panels"] if p["type"] == "timeseries")
    series["fieldConfig"]["defaults"]["custom"]["drawStyle"] = "lines"
    found = problems(d)
    assert any("textmode: not in Grafana's schema" in p for p in found), found
    assert any("draw_style: 'lines' is not one of" in p for p in found), found


@pytest.mark.parametrize("name", list(FILES))
def test_every_query_uses_the_datasource_variable_and_known_variables(name: str) -> None:
    """Panels, queries and annotations go through ${datasource} (no hard-coded uid); every
    $variable used is defined; variable queries are label_values over confmon's series."""
    d = load(name)
    defined = {v["name"] for v in d["templating"]["list"]}
    ds = next(v for v in d["templating"]["list"] if v["name"] == "datasource")
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    assert "uid" not in json.dumps(d["templating"]).replace('"uid": "${datasource}"', "")
    for p in all_panels(d):
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
        used = set(VARIABLE.findall(json.dumps(p, ensure_ascii=False)))
        assert used <= defined | BUILTIN, f"{p['title']}: undefined {used - defined - BUILTIN}"
    annotations = [a for a in d["annotations"]["list"] if "expr" in a]
    assert annotations, "no state-change annotations"
    for a in annotations:
        assert a["datasource"]["uid"] == "${datasource}" and a["useValueForTime"] is True
        assert set(VARIABLE.findall(a["expr"])) <= defined
    for query in variable_queries(d).values():
        assert re.fullmatch(r"label_values\(confmon_[a-z_]+(\{[^}]*\})?, *\w+\)", query), query


def test_links_lead_to_dashboards_and_variables_that_exist() -> None:
    """Every /d/UID link names a dashboard of ours and only variables that dashboard defines."""
    variables = {
        load(name)["uid"]: {v["name"] for v in load(name)["templating"]["list"]} for name in FILES
    }
    found = 0
    for name in FILES:
        for url in re.findall(r'"url": "(/d/[^"]+)"', json.dumps(load(name), ensure_ascii=False)):
            uid = url.split("/")[2]
            assert uid in variables, url
            for var in re.findall(r"var-(\w+)=", url):
                assert var in variables[uid], f"{url}: {uid} has no ${var}"
            found += 1
    assert found >= 4


def _state_colours(node: Any, found: list[tuple[str, str]]) -> None:
    """Collect (state, colour) from value mappings and per-state colour overrides."""
    if isinstance(node, dict):
        if node.get("type") == "value" and isinstance(node.get("options"), dict):
            for m in node["options"].values():
                if isinstance(m, dict) and m.get("text") in STATES:
                    found.append((m["text"], m["color"]))
        matcher = node.get("matcher", {})
        label = str(matcher.get("options", "")).removeprefix("→ ").removesuffix(" /min")
        if matcher.get("id") == "byName" and label in STATES:
            for prop in node.get("properties", []):
                if prop["id"] == "color" and prop["value"].get("mode") == "fixed":
                    found.append((label, prop["value"]["fixedColor"]))
                if prop["id"] == "thresholds":
                    steps = [s["color"] for s in prop["value"]["steps"]]
                    found.append((label, next(c for c in steps if c != "transparent")))
        for value in node.values():
            _state_colours(value, found)
    elif isinstance(node, list):
        for value in node:
            _state_colours(value, found)


@pytest.mark.parametrize("name", list(FILES))
def test_state_colours_match_the_terminal_dashboard(name: str) -> None:
    """Each of the six states has the same colour as on the terminal dashboard, everywhere."""
    found: list[tuple[str, str]] = []
    _state_colours(load(name), found)
    assert {state for state, _ in found} == set(STATES)
    for state, colour in found:
        assert colour == generate.GRAFANA_COLOUR[STYLE[state]], f"{state} is {colour}"


def test_severity_codes_follow_the_terminal_order() -> None:
    """Tables sort by the severity code: down first, then unreachable, degraded, unknown,
    maintenance, up (the terminal dashboard's "needs attention" order)."""
    ranked = sorted(generate.CODE, key=lambda s: -generate.CODE[s])
    assert tuple(ranked) == STATE_ORDER


# --- against a real scrape -------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FILES))
def test_every_metric_in_the_dashboard_is_exposed(name: str) -> None:
    """Metric names, label names and fixed label values in the queries all exist in a real scrape."""
    d = load(name)
    samples = scrape()
    for var, query in variable_queries(d).items():
        found = re.fullmatch(r"label_values\((confmon_[a-z_]+)(?:\{[^}]*\})?, *(\w+)\)", query)
        assert found, f"${var}: {query!r} is not label_values(metric, label)"
        metric, label = found.groups()
        assert metric in samples, query
        assert label in TARGET_LABELS or all(label in ls for ls in samples[metric][1]), query
    for where, expr in expressions(d):
        for metric in metric_names(expr):
            if metric in PROMETHEUS_OWN:
                continue
            assert METRIC.fullmatch(metric), f"{where}: {metric} is not a confmon metric"
            assert metric in samples, f"{where}: {metric} is not exposed by confmon"
        for metric in RATE_OF.findall(expr):
            kind = samples[metric][0]
            assert kind in ("counter", "histogram"), f"{where}: rate() over {kind} {metric}"
            assert metric.endswith(("_total", "_bucket")), f"{where}: rate() over {metric}"
        for metric, body in SELECTOR.findall(expr):
            label_sets = samples[metric][1]
            for label, op, value in MATCHER.findall(body):
                assert any(label in ls for ls in label_sets), f"{where}: {metric} has no {label!r}"
                if "$" in value or op.startswith("!"):
                    continue
                alternatives = value.split("|") if op == "=~" else [value]
                present = {ls.get(label) for ls in label_sets}
                for alt in alternatives:
                    assert alt in present, f"{where}: no {metric}{{{label}={alt!r}}} in a scrape"


def test_promtool_parses_every_query(tmp_path: Path) -> None:
    """promtool's PromQL parser accepts each query of each dashboard (as a recording rule)
    once the variables are filled in."""
    promtool = require_binary("promtool")
    rules = [
        {"record": f"dashboard:query_{i}", "expr": substitute(expr)}
        for i, (_, expr) in enumerate(e for name in FILES for e in expressions(load(name)))
    ]
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}), "utf-8")
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


def test_top_row_counts_each_state_in_the_terminal_order() -> None:
    """The 'Points per state' stat has one query per state, in the terminal dashboard's order."""
    stat = next(
        p for p in all_panels(load("confmon-overview.json")) if p["title"] == "Points per state"
    )
    assert [t["legendFormat"] for t in stat["targets"]] == [s.value for s in STATES]
    for t in stat["targets"]:
        assert f'state="{t["legendFormat"]}"' in t["expr"]


def test_the_readiness_target_comes_from_the_metric() -> None:
    """No typed-in target: the gauge's threshold and the target line are confmon_readiness_target."""
    d = load("confmon-overview.json")
    assert "readiness_target" not in {v["name"] for v in d["templating"]["list"]}
    gauge = next(p for p in all_panels(d) if p["type"] == "gauge")
    config = next(t for t in gauge["transformations"] if t["id"] == "configFromData")
    source = next(t for t in gauge["targets"] if t["refId"] == config["options"]["configRefId"])
    assert "confmon_readiness_target" in source["expr"]
    assert config["options"]["mappings"][0]["handlerKey"] == "threshold1"


# --- Grafana's behaviour, read in its source (no Grafana runs here) ---------------------------


def _overrides(d: Dashboard) -> Iterator[tuple[str, dict[str, Any]]]:
    for p in all_panels(d):
        for o in p.get("fieldConfig", {}).get("overrides", []):
            yield p["title"], {prop["id"]: prop["value"] for prop in o["properties"]}


@pytest.mark.parametrize("name", list(FILES))
def test_text_coloured_cells_stay_readable(name: str) -> None:
    """A table cell in color-text mode takes its text colour from the threshold step
    (DefaultCell's getCellStyle): a transparent step would hide every figure in range."""
    for title, props in _overrides(load(name)):
        if props.get("custom.cellOptions", {}).get("type") == "color-text":
            colours = [s["color"] for s in props["thresholds"]["steps"]]
            assert "transparent" not in colours, title


@pytest.mark.parametrize("name", list(FILES))
def test_coloured_thresholds_are_shown(name: str) -> None:
    """Thresholds on a table column colour nothing unless the column has a colour mode."""
    for p in all_panels(load(name)):
        if p["type"] != "table":
            continue
        for o in p["fieldConfig"]["overrides"]:
            props = {prop["id"] for prop in o["properties"]}
            if "thresholds" in props:
                assert "custom.cellOptions" in props, (p["title"], o["matcher"]["options"])


@pytest.mark.parametrize("name", list(FILES))
def test_stat_tiles_named_per_row_pick_numeric_fields(name: str) -> None:
    """With a displayName, a field's name is that template (getFieldDisplayName), so a
    reduceOptions.fields pattern would match no field and the tiles would say No data."""
    for p in all_panels(load(name)):
        if p["type"] == "stat" and p["fieldConfig"]["defaults"].get("displayName"):
            assert p["options"]["reduceOptions"]["fields"] == "", p["title"]
            assert p["options"]["reduceOptions"]["limit"] >= 450, "a tile for each of 450 rooms"


def test_threshold_from_the_target_metric_is_green() -> None:
    """Config from query results adds its threshold step in red unless told a colour
    (fieldToConfigMapping's threshold1 handler): the gauge would be red at any readiness."""
    gauge = next(p for p in all_panels(load("confmon-overview.json")) if p["type"] == "gauge")
    config = next(t for t in gauge["transformations"] if t["id"] == "configFromData")
    for m in config["options"]["mappings"]:
        assert m["handlerArguments"]["threshold"]["color"] == "green"
