"""The four formats of one report: the same figures, texts from outside escaped for each, the
JSON valid against docs/report.schema.json, the CSV readable by the csv module, the HTML
self-contained."""

from __future__ import annotations

import csv
import datetime
import io
import json
import re
from pathlib import Path

import jsonschema
import pytest

from monitor.core.events import State
from monitor.report import as_csv, as_html, as_json, as_markdown
from monitor.report.compute import Report, compute
from monitor.report.source import read_log
from tests.helpers import ROOT
from tests.report.logs import T0, change, first_results, write_log

SCHEMA = json.loads((ROOT / "docs" / "report.schema.json").read_text(encoding="utf-8"))

#: names and a reason as a hostile or careless sheet could have them
HOSTILE = '=HYPERLINK("http://x.invalid/","Xã <b>Tản</b> | Lĩnh")'
REASON = "2 failed cycles (sip: no response) \x1b[2J *bold* <i>"


@pytest.fixture
async def hostile_report(tmp_path: Path) -> Report:
    """An outage of d (its commune d.a named HOSTILE), a degraded room, read without -c."""
    events = [
        *first_results(-10),
        change("d", State.UNKNOWN, State.UP, -10, name="Huyện Ba Vì"),
        change("d.a", State.UNKNOWN, State.UP, -10, name=HOSTILE),
        change("d", State.UP, State.DOWN, 100, evidence=93, reason=REASON, name="Huyện Ba Vì"),
        change("d.a", State.UP, State.UNREACHABLE, 101, cause="d", evidence=95, name=HOSTILE),
        change("d", State.DOWN, State.UP, 200, evidence=195, name="Huyện Ba Vì"),
        change("d.a", State.UNREACHABLE, State.UP, 201, cause="d", evidence=196, name=HOSTILE),
        change(
            "m",
            State.UP,
            State.DEGRADED,
            300,
            evidence=290,
            reason="loss 5.0% > 2.0% (13 of 250 packets)",
            metrics={"rtt": 0.2, "jitter": 0.03, "loss": 0.05, "mos": 3.1},
            name="Quận Ba Đình",
        ),
    ]
    db = await write_log(tmp_path / "e.sqlite3", events)
    extract = read_log(db, T0, T0 + 600, T0 + 7200)
    return compute(
        extract, T0, T0 + 600, now=T0 + 7200, timezone="Asia/Ho_Chi_Minh", title="Hội nghị <thử>"
    )


def test_json_validates_against_its_schema_and_carries_the_figures(hostile_report: Report) -> None:
    """docs/report.schema.json (2020-12) accepts it; times parse; figures as computed."""
    doc = json.loads(as_json.render(hostile_report))
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    [incident] = doc["incidents"]
    assert incident["cause_name"] == "Huyện Ba Vì" and incident["rooms"] == 2
    assert incident["duration"] == 101.0 and incident["time_to_detect"] == 7.0
    start = datetime.datetime.fromisoformat(incident["start"])
    assert start.timestamp() == T0 + 100 and start.utcoffset() == datetime.timedelta(hours=7)
    assert "\x1b" not in json.dumps(doc, ensure_ascii=False)
    assert incident["reason"].startswith("2 failed cycles") and "\\x1b[2J" in incident["reason"]
    [degraded] = doc["degraded"]
    assert degraded["figures"]["loss"] == 0.05 and degraded["name"] == "Quận Ba Đình"


def csv_blocks(text: str) -> dict[str, list[dict[str, str]]]:
    """The CSV's blocks: name -> rows as dicts, read back with the csv module."""
    blocks: dict[str, list[dict[str, str]]] = {}
    rows = list(csv.reader(io.StringIO(text)))
    i = 0
    while i < len(rows):
        name, heading = rows[i][0], rows[i + 1]
        i += 2
        body = []
        while i < len(rows) and rows[i]:
            body.append(dict(zip(heading, rows[i], strict=True)))
            i += 1
        blocks[name] = body
        i += 1
    return blocks


def test_csv_reads_back_in_blocks_with_formula_cells_guarded(hostile_report: Report) -> None:
    """Every block there, in order; the incident row's figures; a name that is a formula is
    text to a spreadsheet (a ' in front)."""
    blocks = csv_blocks(as_csv.render(hostile_report))
    assert list(blocks) == list(as_csv.SECTIONS)
    [incident] = blocks["incidents"]
    assert incident["cause_name"] == "Huyện Ba Vì" and incident["rooms"] == "2"
    assert incident["start"] == "2026-05-28 08:01:40" and incident["duration_seconds"] == "101.000"
    assert (incident["rooms_down"], incident["rooms_unreachable"]) == ("1", "1")
    room = next(r for r in blocks["rooms"] if r["point"] == "d.a")
    assert room["name"] == "'" + HOSTILE and float(room["unreachable_seconds"]) == 100.0
    assert not any(
        cell.startswith(("=", "+", "@"))
        for rows in blocks.values()
        for row in rows
        for cell in row.values()
    )


def test_markdown_has_the_incident_row_with_outside_text_escaped(hostile_report: Report) -> None:
    """The incident is one table row; pipes, brackets and stars in names are escaped, so the
    table keeps its columns."""
    text = as_markdown.render(hostile_report)
    rows = [ln for ln in text.splitlines() if ln.startswith("| 1 | Huyện Ba Vì |")]
    assert len(rows) == 1
    assert "2 (1 mất kết nối, 1 không truy cập được)" in rows[0]
    assert re.search(r"\| 1 phút 41 giây \| 7 giây \| 6 giây \|", rows[0]), rows[0]
    assert "\\*bold\\*" in rows[0] and "\\<i\\>" in rows[0] and "\x1b" not in text
    hostile = next(ln for ln in text.splitlines() if "HYPERLINK" in ln)
    assert "\\| Lĩnh" in hostile and "\\<b\\>" in hostile
    cells = re.split(r"(?<!\\)\|", hostile)
    assert len(cells) == 7  # 5 columns and the two ends


def test_html_is_self_contained_utf8_and_escapes_every_outside_text(hostile_report: Report) -> None:
    """One file: charset declared, no script, no link, no URL loaded; names and reasons are
    escaped in the tables and in the charts' tooltips; Vietnamese letters kept."""
    page = as_html.render(hostile_report)
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    assert '<html lang="vi">' in page
    for loaded in ("<script", "<link", "@import", "src=", "href=", "url(http"):
        assert loaded not in page, loaded
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert urls <= {"http://www.w3.org/2000/svg", "http://x.invalid/&quot;,&quot;Xã"}, urls
    assert "<b>Tản</b>" not in page and "&lt;b&gt;Tản&lt;/b&gt;" in page
    assert "Hội nghị &lt;thử&gt;" in page and "<i>" not in page and "\x1b" not in page
    assert "Huyện Ba Vì" in page and "Quận Ba Đình" in page
    assert page.count("<svg") == 2 and "<title>Huyện Ba Vì " in page
    assert "@page" in page and "size: A4" in page
