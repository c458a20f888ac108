"""`confmon report` on the command line: good runs to a file and to stdout, --help, and every
mistake as one line on stderr with exit 2 (no traceback)."""

from __future__ import annotations

import datetime
import json
import zoneinfo
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.commands.report import parse_time
from monitor.core.events import State
from monitor.errors import UsageError
from tests.commands.test_demo import run_cli
from tests.outputs.test_eventlog_hostile import foreign, foreign_app, garbage
from tests.report.logs import CONFIG, T0, change, first_results, write_log

HANOI = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")


def iso(offset: float) -> str:
    return datetime.datetime.fromtimestamp(T0 + offset, HANOI).isoformat()


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    events = [*first_results(-10), change("d", State.UP, State.DOWN, 100, evidence=93)]
    return await write_log(tmp_path / "e.sqlite3", events)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["report", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_report_to_a_file_and_to_stdout(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The suffix picks the format; -o - with --format writes to stdout; --force overwrites."""
    inv = tmp_path / "inv.yaml"
    inv.write_text(CONFIG, encoding="utf-8")
    window = ["--state-db", str(db), "--from", iso(0), "--to", iso(600)]
    out_file = tmp_path / "r.json"
    assert run(capsys, *window, "-c", str(inv), "-o", str(out_file)) == (0, "", "")
    doc = json.loads(out_file.read_text(encoding="utf-8"))
    assert doc["summary"]["outages"] == 1 and doc["report"]["title"] == "confmon"
    code, out, err = run(capsys, *window, "--format", "md", "-o", "-")
    assert code == 0 and err == "" and out.startswith("# Báo cáo tình trạng kết nối")
    assert run(capsys, *window, "-o", str(out_file), "--force")[0] == 0
    assert json.loads(out_file.read_text(encoding="utf-8"))["report"]["inventory"] is None


def test_help_names_the_formats_and_the_times(capsys: pytest.CaptureFixture[str]) -> None:
    """--help: exit 0, the options, the time forms and the formats."""
    with pytest.raises(SystemExit) as exited:
        main(["report", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for word in ("--state-db", "--from", "--to", "-o", ".html", ".md", ".csv", ".json", "HH:MM"):
        assert word in text, word


def test_times_read_as_hh_mm_today_iso_or_now() -> None:
    """HH:MM is today in the time zone; ISO without an offset is in it, with one is as said."""
    now = datetime.datetime(2026, 11, 26, 10, 0, tzinfo=HANOI).timestamp()
    at = datetime.datetime(2026, 11, 26, 8, 0, tzinfo=HANOI).timestamp()
    assert parse_time("08:00", "--from")(HANOI, now) == at
    assert parse_time("8:00:00", "--from")(HANOI, now) == at
    assert parse_time("2026-11-26T08:00", "--from")(HANOI, now) == at
    assert parse_time("2026-11-26 01:00Z", "--from")(HANOI, now) == at
    assert parse_time("2026-11-26T09:00+08:00", "--from")(HANOI, now) == at
    assert parse_time("now", "--to")(HANOI, now) == now
    for bad in ("25:00", "8h", "yesterday", "2026-13-01T00:00", "", "08:60", "٠٨:٠٠"):
        with pytest.raises(UsageError, match="not a time; give HH:MM"):
            parse_time(bad, "--from")


def _make(kind: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        if kind == "dir":
            path.mkdir()
        elif kind == "empty":
            path.write_bytes(b"")
        else:
            {"garbage": garbage, "foreign": foreign, "foreign_app": foreign_app}[kind](path)

    return make


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--from", "25:00"], "--from '25:00': not a time; give HH:MM"),
        (["--to", "soon"], "--to 'soon': not a time"),
        (["--from", "+600", "--to", "+0"], "--from is after --to"),
        (["--from", "+100", "--to", "+100"], "are the same time: the window is empty"),
        (["--from", "2999-01-01T00:00", "--to", "2999-01-02T00:00"], "is in the future"),
        (["--from", "+-7000", "--to", "+-6000"], "before the event log's first state change"),
        (["-o", "report.txt"], "the file's suffix picks the format (.csv, .htm, .html, .json"),
        (["-o", "-"], "-o - writes to standard output: say which format with --format"),
        (["--state-db", ""], "--state-db is empty"),
        (["--state-db", "missing.sqlite3"], "missing.sqlite3: no such file; pass the event log"),
        (["--state-db", "dir"], "is not a regular file"),
        (["--state-db", "empty"], "is not a confmon event log (it is empty)"),
        (["--state-db", "garbage"], "is not a confmon event log (not an SQLite database)"),
        (["--state-db", "foreign"], "is not a confmon event log (another program's database, with"),
        (["--state-db", "foreign_app"], "(another program's database: application id"),
        (["-c", "missing.yaml"], "missing.yaml: cannot read file"),
        (["--format", "pdf"], "argument --format: invalid choice: 'pdf'"),
    ],
)
def test_each_mistake_is_one_line_and_exit_2(
    db: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    said: str,
) -> None:
    """Bad times, an empty or reversed window, a window before the log, an unknown suffix,
    a missing, empty or foreign file: one line on stderr naming what to do, exit 2."""
    monkeypatch.chdir(tmp_path)
    options = {"--state-db": str(db), "--from": "+0", "--to": "+600", "-o": "r.html"}
    extra: list[str] = []
    it = iter(args)
    for key in it:
        value = next(it)
        if key in options:
            options[key] = value
        else:
            extra += [key, value]
    if options["--state-db"] in ("dir", "empty", "garbage", "foreign", "foreign_app"):
        _make(options["--state-db"])(tmp_path / options["--state-db"])
    for key in ("--from", "--to"):
        if options[key].startswith("+"):
            options[key] = iso(float(options[key][1:]))
    argv = [x for kv in options.items() for x in kv] + extra
    code, out, err = run(capsys, *argv)
    assert code == 2, err
    assert out == "" and len(err.splitlines()) == 1 and said in err, err
    assert "Traceback" not in err and not (tmp_path / "r.html").exists()


def test_an_existing_output_is_kept_without_force(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-o onto an existing file: refused in one line (exit 2), the file untouched."""
    target = tmp_path / "r.md"
    target.write_text("keep me", encoding="utf-8")
    code, _, err = run(
        capsys, "--state-db", str(db), "--from", iso(0), "--to", iso(600), "-o", str(target)
    )
    assert code == 2 and "exists; pass --force to overwrite it" in err
    assert target.read_text(encoding="utf-8") == "keep me"


def test_a_real_process_says_one_line_without_a_traceback(tmp_path: Path) -> None:
    """`python -m monitor report` on a file that is not a log: exit 2, one stderr line."""
    bad = tmp_path / "notes.sqlite3"
    bad.write_text("meeting notes\n", encoding="utf-8")
    proc = run_cli(
        *("report", "--state-db", str(bad), "--from", "08:00", "--to", "09:00"),
        *("-o", str(tmp_path / "r.html")),
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"confmon: {bad} is not a confmon event log (not an SQLite database); pass the event "
        "log a monitor writes (its --state-db)"
    ]
