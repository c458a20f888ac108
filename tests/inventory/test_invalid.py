"""One invalid inventory per validation rule, each with its exact one-line message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monitor.cli import main

DATA = Path(__file__).parent / "testdata"

EXPECTED = {
    "unknown-key": "3: monitor.fail_afer: unknown key (did you mean 'fail_after'?); expected one of: "
    "name, interval, fail_after, recover_after, stale_after, readiness_target, timezone, concurrency,"
    " event_retention, quality_window",
    "duplicate-id": "10: points[0].points[1].id: duplicate id 'ba-vi.tan-linh' (first used on line 9)",
    "bad-duration": "3: profiles.room.icmp.spacing: '20 msec' is not a duration: write e.g. 500ms, 5s or 1m",
    "bad-percentage": "1: thresholds.loss: '120%' is out of range: a ratio is between 0% and 100% (0..1)",
    "unknown-profile": "4: points[0].profile: unknown profile 'meeting-rom' (did you mean 'meeting-room'?);"
    " defined: meeting-room",
    "bad-host": "11: points[1].points[1].host: '10.0.0.300' is not an IP address or host name",
    "empty": "1: the file is empty; expected a YAML mapping",
    "yaml-syntax": "4: YAML syntax error: while scanning a quoted scalar: found unexpected end of stream"
    " (at line 6)",
    "non-utf8": "4: byte 0xe3 is not valid UTF-8; save the file as UTF-8",
    "cycle": "5: points[1].parent: parent chain forms a cycle: b -> c -> b",
    "duplicate-key": "7: points[0].name: duplicate key (first defined on line 5)",
    "unknown-parent": "5: points[1].parent: parent 'b' is not the id of any point",
    "missing-name": "4: points[0].name: required field is missing",
    "bad-id": "4: points[0].id: 'Ba Vi' is not a valid id: use lowercase ASCII letters, digits, '-' and"
    " '_', with '.' between parts (e.g. ba-vi.tan-linh)",
    "no-points": "3: points: no points: list at least one meeting point",
    "stale-after": "1: monitor.stale_after: 5s must be longer than monitor.interval (10s), or every point"
    " would flap to unknown",
    "timezone": "1: monitor.timezone: 'Asia/Hanoi_City' is not a known time zone (e.g. Asia/Ho_Chi_Minh)",
    "empty-profile": "2: profiles.room: profile runs no probe: add icmp, tcp, http, sip or media",
    "wrong-type": "2: monitor.fail_after: expected a whole number, got 'two'",
    "no-profile": "4: points[0]: no profile: set 'profile' on this point (defined: room)",
    "not-a-mapping": "1: expected a mapping with 'points:' at the top, got a list",
    "bad-port": "3: profiles.room.sip.port: must be at most 65535, got 70000",
    "infinite-duration": "1: monitor.interval: inf is not a positive, finite duration",
    "alias-loop": "1: profiles.again: an alias refers to a value that contains it",
    "reachable-by": "1: profiles.room: reachable_by names 'tcp', which this profile does not run"
    " (it runs: icmp)",
    "empty-reachable-by": "1: profiles.room: reachable_by is empty: name at least one probe the"
    " profile runs (icmp, sip), or leave it out for the default",
    "required": "2: profiles.room: required names 'media', which this profile does not run"
    " (it runs: icmp, sip)",
}


def test_every_invalid_file_has_an_expected_message() -> None:
    """Each invalid-*.yaml file is covered by EXPECTED, and vice versa."""
    files = {p.stem.removeprefix("invalid-") for p in DATA.glob("invalid-*.yaml")}
    assert files == set(EXPECTED)


@pytest.mark.parametrize("rule", sorted(EXPECTED))
def test_invalid_config_gives_one_exact_line_and_exit_2(
    rule: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config prints exactly one line naming file, line and field, and exits 2."""
    path = DATA / f"invalid-{rule}.yaml"
    assert main(["check-config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [f"{path}:{EXPECTED[rule]}"]


def test_several_problems_are_all_reported_in_line_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file with three mistakes lists all three, sorted by line, one per line: the unknown
    profile too, although the other two are schema errors."""
    path = tmp_path / "three.yaml"
    path.write_text(
        "profiles:\n  room: {icmp: {}}\npoints:\n"
        "  - {id: a, name: A, host: 10.0.0.256, profile: room}\n"
        "  - {id: b, name: B, host: 10.0.0.2, profile: rom}\n"
        "  - {id: c, name: C, host: 10.0.0.3, profile: room, colour: red}\n",
        encoding="utf-8",
    )
    assert main(["check-config", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[1] for line in lines] == ["4", "5", "6"]
    path.write_text(path.read_text().replace("10.0.0.256", "10.0.0.1").replace(", colour: red", ""))
    assert main(["check-config", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{path}:5: points[1].profile: unknown profile 'rom' (did you mean 'room'?); defined: room"
    ]


def test_missing_file_is_one_line_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    """A path that does not exist gives one line and exit 2."""
    assert main(["check-config", "/nonexistent/confmon.yaml"]) == 2
    assert capsys.readouterr().err == (
        "/nonexistent/confmon.yaml: cannot read file: No such file or directory\n"
    )


def test_real_process_prints_no_traceback() -> None:
    """`python -m monitor check-config` on a broken file: exit 2, one stderr line, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "check-config", str(DATA / "invalid-non-utf8.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1


def test_alias_bomb_is_refused_quickly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 'billion laughs' file is one line and exit 2, not an exhausted machine."""
    lines = ['a0: ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    lines[0] = "a0: &a0 " + lines[0][4:]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["check-config", str(bomb)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "aliases expand too far" in err
