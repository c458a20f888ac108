"""`confmon demo` as a user runs it: the dashboard in a real terminal (tmux), headless, bad input.

The demo simulates the 450 Hanoi points on 127.20.0.1 onwards. So that these tests
do not collide with a demo or lab already running on the machine (it would hold
127.20.x:5060), they pass ``-c`` with a copy of ``configs/hanoi.yaml`` whose only
change is the SIP, media and HTTP ports; the points, names, tree and timing are the
shipped ones (interval 5 s, fail_after 2).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shlex
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from monitor.inventory import load_inventory
from monitor.lab.scenario import SCENARIO_DIR
from tests.helpers import CONFIGS, ROOT, free_port, require_binary

CUT_AT = 2.0  # seconds after the monitor started
#: the shipped timing: after the cut, Ba Vì is DOWN within fail_after (2) × interval (5 s)
#: (its first failing probe comes within one interval) plus the 1 s SIP timeout; the rest
#: is margin for a loaded machine
DOWN_WITHIN = CUT_AT + 2 * 5.0 + 1.0 + 28.0


def ba_vi_communes() -> list[str]:
    inv = load_inventory(CONFIGS / "hanoi.yaml")
    return list(inv.points["ba-vi"].children)


def _port_free_both(port: int, host: str = "127.20.0.1") -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def demo_files(tmp_path: Path) -> tuple[Path, Path]:
    """The Hanoi inventory on ports of its own, and a scenario cutting Ba Vì's headquarters."""
    # below the kernel's ephemeral range (32768-60999), so no client socket of another
    # process can be holding one of them by chance
    ports: list[int] = []
    while len(ports) < 3:
        port = random.randrange(20000, 32000)
        if port not in ports and _port_free_both(port):
            ports.append(port)
    text = (CONFIGS / "hanoi.yaml").read_text(encoding="utf-8")
    for old, new in zip(("5060", "7078", "8080"), ports, strict=True):
        assert f"port: {old}" in text
        text = text.replace(f"port: {old}", f"port: {new}")
    inventory = tmp_path / "hanoi-test-ports.yaml"
    inventory.write_text(text, encoding="utf-8")
    scenario = tmp_path / "cut-ba-vi.yaml"
    scenario.write_text(
        "name: cut-ba-vi\n"
        "description: Ba Vì headquarters loses its uplink\n"
        "steps:\n"
        f"  - {{at: {CUT_AT:g}s, points: [ba-vi], impair: down, note: uplink cut}}\n",
        encoding="utf-8",
    )
    return inventory, scenario


def test_dashboard_in_tmux_shows_the_cut_district_and_exits_cleanly(tmp_path: Path) -> None:
    """In a 120×40 tmux pane: Ba Vì HQ✖ with 29 communes ○ and "✖ 1 down"; Ctrl-C exits 0, screen restored."""
    tmux = require_binary("tmux")
    inventory, scenario = demo_files(tmp_path)
    exit_file = tmp_path / "exit"
    port = free_port()
    demo = shlex.join(
        [
            sys.executable,
            "-m",
            "monitor",
            "demo",
            "-c",
            str(inventory),
            "--scenario",
            str(scenario),
            "--listen",
            f"127.0.0.1:{port}",
        ]
    )
    # the pane outlives the demo (sleep) so what the demo left on screen can be read
    pane = f"{demo}; echo EXIT=$? > {shlex.quote(str(exit_file))}; exec sleep 120"
    socket_name = f"confmon-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    env.pop("TMUX", None)

    def tmux_run(*args: str) -> str:
        proc = subprocess.run(
            [tmux, "-u", "-f", "/dev/null", "-L", socket_name, *args],
            capture_output=True,
            text=True,
            encoding="utf-8",
            env=env,
            timeout=20,
            check=True,
        )
        return proc.stdout

    def capture() -> str:
        return tmux_run("capture-pane", "-p", "-t", "demo")

    try:
        tmux_run("new-session", "-d", "-s", "demo", "-x", "120", "-y", "40", "-c", str(ROOT), pane)
        deadline = time.monotonic() + DOWN_WITHIN
        screen = ""
        while time.monotonic() < deadline:
            screen = capture()
            row = next((ln for ln in screen.splitlines() if ln.startswith("Huyện Ba Vì")), "")
            if "HQ✖ " + "○" * 29 in row and "0/30" in row and "✖ 1 down" in screen:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"Ba Vì never showed down/unreachable; last screen:\n{screen}")
        lines = screen.splitlines()
        assert len(lines) <= 40 and all(len(ln) <= 120 for ln in lines)
        assert "○ 29 unreachable" in screen and "readiness" in screen
        assert "Needs attention" in screen and "Events" in screen
        assert "Huyện Ba Vì — uplink down" in screen  # the outage is one row

        # the keys: search Ba Vì without diacritics, open its detail, come back
        def wait_screen(text: str, within: float = 15) -> str:
            deadline = time.monotonic() + within
            while time.monotonic() < deadline:
                shown = capture()
                if text in shown:
                    return shown
                time.sleep(0.2)
            raise AssertionError(f"never showed {text!r}; last screen:\n{capture()}")

        tmux_run("send-keys", "-t", "demo", "/", "ba vi")
        wait_screen("Search: ba vi")
        tmux_run("send-keys", "-t", "demo", "Enter")
        detail = wait_screen("29 rooms unreachable behind it")
        assert "state    down since" in detail and "Probes (latest result)" in wait_screen("Probes")
        tmux_run("send-keys", "-t", "demo", "Escape")
        wait_screen("Search: ba vi")
        tmux_run("send-keys", "-t", "demo", "Escape")
        wait_screen("Needs attention")

        tmux_run("send-keys", "-t", "demo", "C-c")
        deadline = time.monotonic() + 20
        while not exit_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert exit_file.exists(), f"the demo did not exit after Ctrl-C:\n{capture()}"
        time.sleep(0.3)  # the shell wrote the file; let it finish the line
        assert exit_file.read_text().strip() == "EXIT=0"
        after = capture()
        assert "Traceback" not in after and "Error" not in after, after
        # the alternate screen is left and the cursor is shown again: the terminal is usable
        assert "Needs attention" not in after, after
        modes = tmux_run("display-message", "-p", "-t", "demo", "#{alternate_on} #{cursor_flag}")
        assert modes.split() == ["0", "1"]
    finally:
        subprocess.run(
            [tmux, "-L", socket_name, "kill-server"],
            capture_output=True,
            env=env,
            timeout=20,
            check=False,
        )


async def test_headless_demo_reports_the_district_and_its_communes(tmp_path: Path) -> None:
    """--no-dashboard --duration: one line per change, Ba Vì down and its communes unreachable, exit 0."""
    inventory, scenario = demo_files(tmp_path)
    duration = CUT_AT + 20.0
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "monitor",
        "demo",
        "--no-dashboard",
        "--duration",
        f"{duration:g}",
        "-c",
        str(inventory),
        "--scenario",
        str(scenario),
        "--listen",
        f"127.0.0.1:{free_port()}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        out_b, err_b = await asyncio.wait_for(proc.communicate(), duration + 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out, err = out_b.decode(), err_b.decode()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and err.strip().endswith("demo stopped"), err

    started = re.search(r"started in ([0-9.]+) s", out)
    assert started is not None, out
    assert float(started.group(1)) < 10.0  # measured at ~0.2 s in bench/bench_dashboard.py
    assert "-- scenario cut-ba-vi +2s: uplink cut" in out

    changes = re.findall(r"^\d\d:\d\d:\d\d (\S+) +.*\(([a-z0-9.-]+)\): (.*)$", out, re.M)
    to = {point: state for state, point, _ in changes}
    assert to.get("ba-vi") == "down", out
    communes = ba_vi_communes()
    assert len(communes) == 29
    assert {c: to.get(c) for c in communes} == dict.fromkeys(communes, "unreachable"), out
    assert all(
        reason.startswith("uplink ba-vi ")
        for state, point, reason in changes
        if point in communes and state == "unreachable"
    )
    # one root cause: nothing outside Ba Vì went down or unreachable
    assert {p for s, p, _ in changes if s in ("down", "unreachable")} == {"ba-vi", *communes}
    first = sum(int(n) for n in re.findall(r"^(\d+) points up \(first results\)$", out, re.M))
    assert 420 <= first <= 450, out  # every point outside Ba Vì came up
    # the alert it would send, printed, not sent: one message for the district
    alerts = re.findall(r"^-- alert to demo \(not sent: demo\): (.*)$", out, re.M)
    assert len(alerts) == 1 and "SỰ CỐ · Huyện Ba Vì" in alerts[0], out
    assert re.search(r"^   Tổng: 30 điểm — 1 mất kết nối, 29 không truy cập được$", out, re.M), out


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_unknown_scenario_lists_the_available_ones() -> None:
    """--scenario nonsense: exit 2 and one line naming every shipped scenario."""
    proc = run_cli("demo", "--no-dashboard", "--scenario", "nonsense", "--duration", "5")
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "nonsense" in lines[0] and "unknown scenario" in lines[0]
    shipped = sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))
    assert len(shipped) >= 5
    assert all(name in lines[0] for name in shipped)


def test_scenario_with_an_unknown_point_names_file_and_line(tmp_path: Path) -> None:
    """A scenario step naming a point that does not exist: exit 2, "FILE:LINE: ..." on one line."""
    scenario = tmp_path / "typo.yaml"
    scenario.write_text(
        "name: typo\n"
        "steps:\n"
        "  - {at: 5s, points: [ba-vi], impair: down}\n"
        "  - {at: 9s, points: [ba-vii], clear: true}\n",
        encoding="utf-8",
    )
    proc = run_cli("demo", "--no-dashboard", "--scenario", str(scenario), "--duration", "5")
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{scenario}:4: ")
    assert "'ba-vii' matches no point" in lines[0]


def test_the_printed_alert_reads_as_the_chat_shows_it(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's receiver speaks Slack, whose text escapes <, > and &: the dry run prints
    what the chat would show ("jitter 35 ms > 30 ms"), not the escapes."""
    from monitor.alerts.formats import Rendered
    from monitor.commands.demo import _print_alert

    text = "🟡 SỰ CỐ · Huyện Sóc Sơn\n   • Xã Minh Trí: jitter 35 ms &gt; 30 ms &amp; loss &lt;1%"
    _print_alert("demo", Rendered(b"", "application/json", "x", text))
    out = capsys.readouterr().out
    assert "jitter 35 ms > 30 ms & loss <1%" in out and "&gt;" not in out
