"""The session report of a real demo: `confmon demo --scenario uplink-loss --no-dashboard`
(the 450 Hanoi points in the lab, Ba Vì's uplink cut and restored) with its event log in a
file, then `confmon report` over the demo's window in every format; the HTML printed to PDF
by headless Chromium.

The scenario is played at ``--speed 3`` (the cut at 5 s, the repair at 25 s: 20 s out) so
that the demo runs 44 s, not 90; the monitor's timing is the shipped one (interval 5 s,
fail_after 2). The inventory is configs/hanoi.yaml on ports of its own (see
tests/commands/test_demo.py), so a demo already running on the machine is not disturbed.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import sqlite3
import subprocess
import sys
import time
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from monitor.inventory import load_inventory
from monitor.lab.scenario import SCENARIO_DIR, load_scenario
from tests.commands.test_demo import demo_files, run_cli
from tests.helpers import CONFIGS, ROOT, free_port, require_binary
from tests.report.test_render import SCHEMA, csv_blocks

SPEED = 3.0
DURATION = 44.0
HANOI = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")


@dataclass
class Session:
    db: Path
    reports: dict[str, Path]
    demo_output: str


def scenario_cut() -> float:
    """How long the uplink-loss scenario keeps Ba Vì cut, as played at SPEED (seconds)."""
    scenario = load_scenario(
        SCENARIO_DIR / "uplink-loss.yaml", load_inventory(CONFIGS / "hanoi.yaml")
    )
    [cut] = [s.at for s in scenario.steps if s.impair == "down"]
    [repair] = [s.at for s in scenario.steps if s.clear]
    return (repair - cut) / SPEED


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    """The demo played once, then its report written in the four formats."""
    tmp = tmp_path_factory.mktemp("report-e2e")
    inventory, _ = demo_files(tmp)
    db = tmp / "session.sqlite3"
    started = time.time()
    demo = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitor",
            "demo",
            "--no-dashboard",
            "--scenario",
            "uplink-loss",
            "--speed",
            f"{SPEED:g}",
            "--duration",
            f"{DURATION:g}",
            "-c",
            str(inventory),
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--state-db",
            str(db),
        ],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
        timeout=DURATION + 60,
        check=False,
    )
    ended = time.time()
    assert demo.returncode == 0, demo.stderr
    window = [
        "--from",
        datetime.datetime.fromtimestamp(started, HANOI).isoformat(),
        "--to",
        datetime.datetime.fromtimestamp(ended, HANOI).isoformat(),
    ]
    reports = {}
    for fmt in ("json", "html", "md", "csv"):
        out = tmp / f"session.{fmt}"
        done = run_cli(
            "report", "--state-db", str(db), "-c", str(inventory), *window, "-o", str(out)
        )
        assert done.returncode == 0 and done.stderr == "", done.stderr
        reports[fmt] = out
    return Session(db, reports, demo.stdout)


def log_rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


def test_one_incident_ba_vi_with_its_communes_for_the_length_of_the_cut(session: Session) -> None:
    """One outage, Huyện Ba Vì: its headquarters down and its 29 communes unreachable, from
    the first room's change to the last room back as the event log has them, lasting the
    scenario's cut within one interval; every other district 100% available."""
    doc = json.loads(session.reports["json"].read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    inv = load_inventory(CONFIGS / "hanoi.yaml")
    communes = inv.points["ba-vi"].children
    assert len(communes) == 29
    interval = inv.settings.interval

    [incident] = doc["incidents"]
    assert (incident["cause"], incident["cause_name"]) == ("ba-vi", "Huyện Ba Vì")
    assert incident["rooms"] == 30 and incident["rooms_by_state"] == {"down": 1, "unreachable": 29}
    assert set(incident["points"]) == {"ba-vi", *communes}
    assert incident["end"] is not None and not incident["before_window"]
    assert abs(incident["duration"] - scenario_cut()) <= interval, (incident, session.demo_output)
    # the same moments as the event log's
    [(first_out,)] = log_rows(
        session.db,
        "SELECT MIN(at) FROM events WHERE cause = 'ba-vi' AND state IN ('down', 'unreachable')",
    )
    [(last_back,)] = log_rows(
        session.db,
        "SELECT MAX(at) FROM events WHERE cause = 'ba-vi' AND state = 'up' "
        "AND previous IN ('down', 'unreachable')",
    )
    start = datetime.datetime.fromisoformat(incident["start"]).timestamp()
    end = datetime.datetime.fromisoformat(incident["end"]).timestamp()
    assert start == pytest.approx(first_out, abs=1e-3) and end == pytest.approx(last_back, abs=1e-3)
    assert incident["time_to_detect"] > 0 and incident["time_to_recover"] > 0
    assert incident["reason"].startswith("2 failed cycles (sip:")

    summary = doc["summary"]
    assert (summary["rooms"], summary["districts"], summary["rooms_out"]) == (450, 30, 30)
    assert summary["outages"] == 1 and summary["worst_district"] == "ba-vi"
    districts = {d["id"]: d for d in doc["districts"]}
    assert districts["ba-vi"]["name"] == "Huyện Ba Vì" and districts["ba-vi"]["rooms"] == 30
    assert districts["ba-vi"]["availability"] < 1.0
    assert {k: d["availability"] for k, d in districts.items() if k != "ba-vi"} == dict.fromkeys(
        (k for k in districts if k != "ba-vi"), 1.0
    )
    hq = next(r for r in doc["rooms"] if r["id"] == "ba-vi")
    assert abs(hq["seconds"]["down"] - scenario_cut()) <= interval
    # the demo ran inside the window: the only time not monitored is its start and stop
    assert all(g["kind"] in ("not_running", "no_data") for g in doc["gaps"])


def test_the_csv_and_the_markdown_say_the_same(session: Session) -> None:
    """The CSV's incident row (read with the csv module) and the Markdown's incident row."""
    blocks = csv_blocks(session.reports["csv"].read_text(encoding="utf-8"))
    [row] = blocks["incidents"]
    assert (row["cause_name"], row["rooms"], row["rooms_unreachable"]) == (
        "Huyện Ba Vì",
        "30",
        "29",
    )
    assert len(blocks["rooms"]) == 450 and len(blocks["districts"]) == 30
    md = session.reports["md"].read_text(encoding="utf-8")
    [line] = [ln for ln in md.splitlines() if ln.startswith("| 1 | Huyện Ba Vì |")]
    assert "30 (1 mất kết nối, 29 không truy cập được)" in line


def test_the_html_prints_to_a4_with_its_timeline_and_tables(
    session: Session, tmp_path: Path
) -> None:
    """Headless Chromium prints the HTML to PDF: the timeline and the availability chart name
    the 30 districts, the incident table is there with its headings, and the appendix; the
    page count is that of a filed report, not hundreds of pages."""
    chromium = require_binary("chromium")
    pdftotext = require_binary("pdftotext")
    pdf = tmp_path / "session.pdf"
    printed = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            session.reports["html"].as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert printed.returncode == 0 and pdf.exists(), printed.stderr
    text = subprocess.run(
        [pdftotext, str(pdf), "-"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=True,
    ).stdout
    pages = text.count("\f")
    assert 3 <= pages <= 20, pages
    words = " ".join(text.split())  # a heading wrapped in its cell is still one phrase
    for heading in (
        "BÁO CÁO TÌNH TRẠNG KẾT NỐI CÁC ĐIỂM CẦU",
        "Diễn biến theo quận, huyện, thị xã",
        "Độ khả dụng theo quận, huyện, thị xã",
        "Sự cố mất kết nối",
        "Nguyên nhân",
        "Phát hiện sau",
        "Khôi phục sau",
        "Phụ lục: chi tiết từng điểm cầu",
        "30 (1 mất kết nối, 29 không truy cập được)",
        f"Trang 1 / {pages}",
    ):
        assert heading in words, heading
    inv = load_inventory(CONFIGS / "hanoi.yaml")
    pages_text = [" ".join(page.split()) for page in text.split("\f")]
    for district in inv.districts():
        # the timeline on the first page, the availability chart after it
        assert district.name in pages_text[0], district.name
        assert " ".join(pages_text[:2]).count(district.name) >= 2, district.name
    assert "Xã Tản Lĩnh" in text  # a commune of Ba Vì, in the appendix, diacritics intact
