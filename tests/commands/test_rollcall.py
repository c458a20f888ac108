"""`confmon rollcall` against the lab: exit codes, the not-ready table, JSON and CSV."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from monitor.inventory import load_inventory
from monitor.inventory.writer import to_yaml
from monitor.lab.addresses import lab_inventory
from monitor.lab.impairment import Impairment
from monitor.lab.lab import Lab
from tests.helpers import CONFIGS


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[tuple[Lab, Path]]:
    """The 450 Hanoi points in the lab, and an inventory file pointing at them."""
    inv = lab_inventory(load_inventory(CONFIGS / "hanoi.yaml"), IPv4Address("127.31.0.1"))
    path = tmp_path / "lab-hanoi.yaml"
    path.write_text(to_yaml(inv), encoding="utf-8")
    async with Lab(inv, seed=7) as running:
        yield running, path


async def rollcall(path: Path, *args: str, icmp: bool = False) -> tuple[int, str, str, float]:
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "monitor",
        "rollcall",
        "-c",
        str(path),
        *([] if icmp else ["--no-icmp"]),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "160"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode(), time.monotonic() - start


async def test_all_ready_exits_0(lab: tuple[Lab, Path]) -> None:
    """Every lab point answers: READY, 450/450, exit 0."""
    code, out, _, _ = await rollcall(lab[1])
    assert code == 0, out
    assert "READY: 450/450 points ready, readiness 100.0% (target 98%)" in out


async def test_impaired_points_exit_1_with_a_table_by_district(lab: tuple[Lab, Path]) -> None:
    """Two district uplinks down and a 503 endpoint: NOT READY, exit 1, listed by district."""
    running, path = lab
    running.set_impairment("thach-that", Impairment(down=True))
    running.set_impairment("my-duc", Impairment(down=True))
    running.set_impairment("chuong-my.dong-phuong-yen", Impairment(sip_status=503))
    code, out, _, _ = await rollcall(path)
    assert code == 1
    assert "NOT READY: 408/450 points ready" in out
    assert "Huyện Thạch Thất" in out and "Huyện Mỹ Đức" in out
    assert "unreachable" in out and "uplink thach-that is down" in out
    code, out, _, _ = await rollcall(path, "--format", "json")
    data = json.loads(out)
    assert code == 1 and data["ok"] is False and data["ready"] == 408
    states = {r["point"]: r["state"] for r in data["not_ready"]}
    assert states["thach-that"] == "down" and states["thach-that.lien-quan"] == "unreachable"
    assert states["my-duc"] == "down"
    assert states["chuong-my.dong-phuong-yen"] == "degraded"
    reasons = {r["point"]: r["reason"] for r in data["not_ready"]}
    assert "sip: 503 Service Unavailable" in reasons["chuong-my.dong-phuong-yen"]
    code, out, _, _ = await rollcall(path, "--format", "csv")
    assert out.splitlines()[0].startswith("district,point,name,host,state,reason")
    assert len(out.splitlines()) == 1 + len(states)


async def test_a_district_that_pings_but_has_no_sip_is_not_ready(lab: tuple[Lab, Path]) -> None:
    """With ICMP on, Ba Vì's rooms still answer ping (the kernel does) but their SIP, media
    and status pages are dead (the lab's cut reaches every point below the HQ): each is down
    with "host answers icmp; sip: ...", none is counted ready, none is called unreachable
    (their paths are up), and the rollcall exits 1."""
    from tests.helpers import require_root

    require_root("ICMP from the rollcall")
    running, path = lab
    running.set_impairment("ba-vi", Impairment(down=True))
    code, out, _, _ = await rollcall(path, "--format", "json", icmp=True)
    data = json.loads(out)
    assert code == 1 and data["ok"] is False and data["ready"] == 420, out
    rows = {r["point"]: r for r in data["not_ready"]}
    assert {p.split(".")[0] for p in rows} == {"ba-vi"} and len(rows) == 30
    assert {r["state"] for r in rows.values()} == {"down"}
    assert all(r["reason"].startswith("host answers icmp; sip: ") for r in rows.values()), rows


async def test_json_reports_the_pass_duration(lab: tuple[Lab, Path]) -> None:
    """The pass over 450 lab points reports its own duration; the figure is recorded in bench/."""
    code, out, _, _ = await rollcall(lab[1], "--format", "json")
    assert code == 0
    assert json.loads(out)["seconds"] > 0


async def test_bad_config_exits_2(tmp_path: Path) -> None:
    """A broken inventory is one line and exit 2."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("points: []\n", encoding="utf-8")
    code, out, err, _ = await rollcall(bad)
    assert code == 2 and out == ""
    assert err.strip() == f"{bad}:1: points: no points: list at least one meeting point"
