"""Loading valid inventories: defaults, the tree, inheritance and the shipped Hanoi config."""

from __future__ import annotations

import json
import unicodedata
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.cli import main
from monitor.inventory import load_inventory, parse_inventory
from monitor.inventory.units import format_duration, parse_duration, parse_host, parse_ratio
from tests.helpers import CONFIGS

HANOI = CONFIGS / "hanoi.yaml"


def test_defaults_follow_the_design_brief() -> None:
    """Omitted settings take the documented defaults (5 s, 2/2 cycles, 20 s stale, 98 %)."""
    inv = parse_inventory(
        "profiles: {room: {icmp: {}}}\npoints: [{id: a, name: A, host: h, profile: room}]"
    )
    s, t = inv.settings, inv.thresholds
    assert (s.interval, s.fail_after, s.recover_after, s.stale_after) == (5.0, 2, 2, 20.0)
    assert s.readiness_target == pytest.approx(0.98)
    assert s.timezone == "Asia/Ho_Chi_Minh"
    assert (t.rtt, t.jitter, t.loss, t.mos) == (pytest.approx(0.15), pytest.approx(0.03), 0.02, 3.6)
    icmp = inv.profiles["room"].icmp
    assert icmp is not None and (icmp.count, icmp.spacing, icmp.timeout) == (5, 0.02, 1.0)


def test_tree_levels_districts_and_profile_inheritance() -> None:
    """Children inherit the profile, know their district, and get level by depth."""
    inv = parse_inventory(
        """
profiles: {hq: {icmp: {}}, room: {sip: {}}}
points:
  - id: ba-vi
    name: "Huyện Ba Vì"
    host: 10.21.0.1
    profile: hq
    points:
      - {id: ba-vi.tan-linh, name: "Xã Tản Lĩnh", host: 10.21.1.17}
      - id: ba-vi.ba-trai
        name: "Xã Ba Trại"
        host: 10.21.1.18
        profile: room
        points: [{id: ba-vi.ba-trai.school, name: "Trường", host: 10.21.1.19}]
  - {id: flat, name: Flat, host: 10.21.0.2, parent: ba-vi}
"""
    )
    p = inv.points
    assert list(p) == ["ba-vi", "ba-vi.tan-linh", "ba-vi.ba-trai", "ba-vi.ba-trai.school", "flat"]
    assert p["ba-vi.tan-linh"].profile == "hq"
    assert p["ba-vi.ba-trai.school"].profile == "room"
    assert [p[i].level for i in p] == ["district", "commune", "commune", "site", "commune"]
    assert {x.district for x in p.values()} == {"ba-vi"}
    assert p["flat"].parent == "ba-vi" and "flat" in p["ba-vi"].children
    assert [x.id for x in inv.descendants("ba-vi")] == list(p)[1:]
    assert p["ba-vi.tan-linh"].name == "Xã Tản Lĩnh"


def test_hanoi_has_450_points_30_districts_420_communes() -> None:
    """The shipped inventory holds Hanoi's 30 district-level and 420 commune-level units."""
    inv = load_inventory(HANOI)
    assert len(inv.points) == 450
    assert Counter(p.level for p in inv.points.values()) == {"district": 30, "commune": 420}
    names = [d.name for d in inv.districts()]
    assert sum(n.startswith("Quận ") for n in names) == 12
    assert sum(n.startswith("Huyện ") for n in names) == 17
    assert names.count("Thị xã Sơn Tây") == 1
    communes = [p.name for p in inv.points.values() if p.level == "commune"]
    kinds = Counter(
        n.split(" ")[0] if not n.startswith("Thị trấn") else "Thị trấn" for n in communes
    )
    assert kinds["Xã"] + kinds["Thị trấn"] == 366 and kinds["Phường"] == 54
    assert inv.points["ba-vi.tan-linh"].name == "Xã Tản Lĩnh"
    assert all(unicodedata.is_normalized("NFC", p.name) for p in inv.points.values())
    hosts = [p.host for p in inv.points.values()]
    assert len(set(hosts)) == 450 and all(h.startswith("10.24.") for h in hosts)


def test_check_config_json_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints a machine-readable summary with counts per level, district and profile."""
    assert main(["check-config", str(HANOI), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["points"] == 450
    assert data["levels"] == {"district": 30, "commune": 420}
    assert len(data["districts"]) == 30
    assert sum(d["points"] for d in data["districts"]) == 450
    assert data["profiles"]["meeting-room"]["points"] == 420
    assert data["profiles"]["district-hq"]["probes"] == ["icmp", "http", "sip", "media"]
    ba_vi = next(d for d in data["districts"] if d["id"] == "ba-vi")
    assert ba_vi["name"] == "Huyện Ba Vì"


def test_check_config_human_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """The human summary names the meeting, the totals and districts with diacritics."""
    assert main(["check-config", str(HANOI)]) == 0
    out = capsys.readouterr().out
    assert "Hội nghị HĐND TP Hà Nội" in out
    assert "450 points: 30 district, 420 commune" in out
    assert "Huyện Ba Vì" in out and "meeting-room" in out


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("20ms", 0.02),
        ("5s", 5.0),
        ("1m30s", 90.0),
        ("1.5s", 1.5),
        ("2h", 7200.0),
        (3, 3.0),
        (0.25, 0.25),
    ],
)
def test_durations(text: str | float, seconds: float) -> None:
    """Durations accept Go-style units and plain seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "5", "5 parsecs", "-1s", "0s", "s", "5s5", True, None, [1]])
def test_bad_durations_are_rejected(bad: object) -> None:
    """Anything that is not a positive duration raises ValueError quoting the value."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@given(st.integers(min_value=1, max_value=10**7))
def test_format_duration_round_trips(ms: int) -> None:
    """format_duration output parses back to the same number of seconds."""
    assert parse_duration(format_duration(ms / 1000)) == pytest.approx(ms / 1000)


@pytest.mark.parametrize(("text", "ratio"), [("2%", 0.02), ("0.5%", 0.005), (0.02, 0.02), (1, 1.0)])
def test_ratios(text: str | float, ratio: float) -> None:
    """Ratios accept percentages and numbers in 0..1."""
    assert parse_ratio(text) == pytest.approx(ratio)


@pytest.mark.parametrize("bad", ["2", "abc%", "-1%", "101%", 2, True])
def test_bad_ratios_are_rejected(bad: object) -> None:
    """Percentages out of range or without % raise ValueError."""
    with pytest.raises(ValueError):
        parse_ratio(bad)


@pytest.mark.parametrize(
    ("host", "normal"),
    [
        ("10.24.1.1", "10.24.1.1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("MCU.hanoi.gov.vn", "mcu.hanoi.gov.vn"),
    ],
)
def test_hosts(host: str, normal: str) -> None:
    """Addresses are normalised; host names are lower-cased."""
    assert parse_host(host) == normal


@pytest.mark.parametrize("bad", ["10.0.0.300", "-bad.example", "a_b.example", "a..b", 7])
def test_bad_hosts(bad: object) -> None:
    """Malformed addresses and names are rejected (short forms such as 1.2.3 and the empty
    host have messages of their own: tests/inventory/test_hostile.py)."""
    with pytest.raises(ValueError, match="is not an IP address or host name"):
        parse_host(bad)
