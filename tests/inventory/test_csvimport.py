"""`confmon inventory import/export`: spreadsheets in, YAML out, and back."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.cli import main
from monitor.inventory import load_inventory
from tests.helpers import CONFIGS

HANOI = CONFIGS / "hanoi.yaml"

SHEET = """id,name,parent,host,profile
ba-vi,Huyện Ba Vì,,10.21.0.1,meeting-room
ba-vi.tan-linh,Xã Tản Lĩnh,ba-vi,10.21.1.17,
son-tay,Thị xã Sơn Tây,,10.21.2.1,meeting-room
son-tay.duong-lam,"Xã Đường Lâm, Sơn Tây",son-tay,10.21.2.20,
"""


def test_import_writes_a_valid_nested_inventory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A four-row sheet becomes a YAML inventory that check-config accepts, names intact."""
    sheet = tmp_path / "sites.csv"
    sheet.write_text(SHEET, encoding="utf-8")
    out = tmp_path / "sites.yaml"
    assert main(["inventory", "import", str(sheet), "-o", str(out)]) == 0
    inv = load_inventory(out)
    assert list(inv.points) == ["ba-vi", "ba-vi.tan-linh", "son-tay", "son-tay.duong-lam"]
    assert inv.points["son-tay.duong-lam"].name == "Xã Đường Lâm, Sơn Tây"
    assert inv.points["ba-vi.tan-linh"].parent == "ba-vi"
    assert inv.points["ba-vi.tan-linh"].profile == "meeting-room"
    assert "Xã Tản Lĩnh" in out.read_text(encoding="utf-8")  # not \\u-escaped
    assert "wrote" in capsys.readouterr().err
    # refuses to overwrite without --force
    assert main(["inventory", "import", str(sheet), "-o", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err


def test_hanoi_round_trips_through_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """export -> import --base gives back exactly the same 450 points."""
    original = load_inventory(HANOI)
    csv_path, yaml_path = tmp_path / "hanoi.csv", tmp_path / "hanoi.yaml"
    assert main(["inventory", "export", str(HANOI), "-o", str(csv_path)]) == 0
    assert (
        main(["inventory", "import", str(csv_path), "--base", str(HANOI), "-o", str(yaml_path)])
        == 0
    )
    again = load_inventory(yaml_path)
    assert again.points == original.points
    assert again.profiles == original.profiles
    assert again.settings == original.settings and again.thresholds == original.thresholds
    # and the CSV itself is stable
    csv2 = tmp_path / "again.csv"
    assert main(["inventory", "export", str(yaml_path), "-o", str(csv2)]) == 0
    assert csv2.read_text(encoding="utf-8") == csv_path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            "a,A,,10.0.0.1,meeting-room\nb,B,a,10.0.0.999,\n",
            "3: points[1].host: '10.0.0.999' is not an IP address or host name",
        ),
        (
            "a,A,,10.0.0.1,meeting-room\na,A2,,10.0.0.2,meeting-room\n",
            "3: points[1].id: duplicate id 'a' (first used on line 2)",
        ),
        (
            "a,A,,10.0.0.1,meeting-room\nb,B,zz,10.0.0.2,\n",
            "3: points[1].parent: parent 'zz' is not the id of any point",
        ),
        (
            "a,A,b,10.0.0.1,meeting-room\nb,B,a,10.0.0.2,meeting-room\n",
            "2: points[0].parent: parent chain forms a cycle: a -> b -> a",
        ),
        (
            "a,A,,10.0.0.1,nope\n",
            "2: points[0].profile: unknown profile 'nope'; defined: meeting-room",
        ),
        ("a,A,,10.0.0.1,meeting-room,extra\n", "2: more cells than header columns"),
    ],
)
def test_bad_rows_are_reported_by_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: str, message: str
) -> None:
    """Each bad row is named by its line in the CSV; nothing is written."""
    sheet = tmp_path / "bad.csv"
    sheet.write_text("id,name,parent,host,profile\n" + rows, encoding="utf-8")
    out = tmp_path / "out.yaml"
    assert main(["inventory", "import", str(sheet), "-o", str(out)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"{sheet}:{message}"]
    assert not out.exists()


def test_bad_header_and_encoding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong header or a non-UTF-8 sheet is one clear line."""
    sheet = tmp_path / "bad.csv"
    sheet.write_text("id,name,host\na,A,10.0.0.1\n", encoding="utf-8")
    assert main(["inventory", "import", str(sheet)]) == 2
    assert capsys.readouterr().err == (
        f"{sheet}:1: header: missing column(s) parent, profile; expected id,name,parent,host,profile[,level]\n"
    )
    sheet.write_bytes(
        "id,name,parent,host,profile\na,Xã Tân,,10.0.0.1,meeting-room\n".encode("latin-1")
    )
    assert main(["inventory", "import", str(sheet)]) == 2
    assert (
        capsys.readouterr().err == f"{sheet}:2: not valid UTF-8; export the sheet as 'CSV UTF-8'\n"
    )


def test_excel_bom_is_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Spreadsheets saved as 'CSV UTF-8' start with a BOM; the header still matches."""
    sheet = tmp_path / "bom.csv"
    sheet.write_bytes(b"\xef\xbb\xbf" + SHEET.encode("utf-8"))
    assert main(["inventory", "import", str(sheet)]) == 0
    assert "Huyện Ba Vì" in capsys.readouterr().out


def test_yaml_writer_keeps_maintenance_and_reachability(tmp_path: Path) -> None:
    """Writing an inventory back out keeps its maintenance windows and reachable_by."""
    from monitor.inventory import parse_inventory
    from monitor.inventory.writer import to_yaml

    text = (
        "profiles: {room: {icmp: {}, sip: {}, reachable_by: [sip]}}\n"
        "maintenance:\n"
        '  - {points: [a], start: "2026-11-26 08:00", end: "2026-11-26 10:00", reason: "thay router"}\n'
        '  - {points: [a], days: [sat, sun], from: "22:00", to: "02:00"}\n'
        "points:\n  - {id: a, name: Ả, host: 10.0.0.1, profile: room}\n"
    )
    inv = parse_inventory(text)
    again = parse_inventory(to_yaml(inv))
    assert again.maintenance == inv.maintenance and again.profiles == inv.profiles
    assert again.maintenance[0].reason == "thay router"
