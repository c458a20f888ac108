"""`confmon run` under a low open-file limit, a flood of idle connections, an impatient Ctrl-C,
and bad --listen / --api-token values: the real process against the lab (127.60.0.0/16), plus
the descriptor budget and the option parsers on their own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from monitor.commands.common import parse_listen, parse_token
from monitor.errors import UsageError
from monitor.inventory import Inventory, parse_inventory
from monitor.lab.impairment import Impairment
from monitor.limits import MARGIN, MIN_API_CONNECTIONS, budget, plan
from tests.commands.running import events, hanoi_lab, running, start_run, until
from tests.helpers import CONFIGS, free_port

INTERVAL = 2.0
INFINITY = resource.RLIM_INFINITY


def nofile(soft: int, hard: int) -> Callable[[], None]:
    """A preexec_fn: the child starts with these open-file limits."""

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return lower


def soft_nofile(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit in /proc")


@contextlib.contextmanager
def descriptors_for_the_test(needed: int) -> object:
    """This process may open ``needed`` descriptors (the attacker's sockets), or skip."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != INFINITY and hard < needed:
        pytest.skip(f"the test opens {needed} sockets; the hard open-file limit is {hard}")
    if soft != INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def open_idle(port: int, n: int, partial: bool) -> list[asyncio.StreamWriter]:
    """``n`` connections that send nothing (or half a request head, with ``partial``)."""

    async def one() -> asyncio.StreamWriter | None:
        try:
            _r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        except (OSError, TimeoutError):
            return None
        if partial:
            w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: ")
        return w

    opened = await asyncio.gather(*(one() for _ in range(n)))
    return [w for w in opened if w is not None]


async def healthz(base: str) -> float:
    """Seconds /healthz took on a fresh connection (it must answer within 10 s)."""
    start = time.monotonic()
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as s,
        s.get(f"{base}/healthz", timeout=aiohttp.ClientTimeout(total=10)) as resp,
    ):
        assert resp.status == 200
    return time.monotonic() - start


def bad_events(db: Path) -> list[tuple[object, ...]]:
    return events(db, "state IN ('down', 'unreachable', 'unknown')")


async def test_a_flood_of_idle_connections_does_not_blind_the_monitor(tmp_path: Path) -> None:
    """`ulimit -n 1024`, and 1,100 idle or half-sent connections held open, then 100 more
    every second for 15 s: /healthz answers throughout, no probe fails for want of
    descriptors (no point goes down, unreachable or unknown), and the log stays small.
    At start the soft limit (256) was raised to what the 450 points need."""
    inv = hanoi_lab("127.60.0.1", interval=INTERVAL, stale_after=10.0)
    with descriptors_for_the_test(4000):
        async with running(tmp_path, inv, lab=False, preexec_fn=nofile(256, 1024)) as (run, _):
            await run.wait_all_up(450, within=60)
            soft = soft_nofile(run.proc.pid)
            assert 256 < soft <= 1024, soft
            assert bad_events(run.state_db) == []
            port = int(run.base.rsplit(":", 1)[1])
            log_before = len(run.log())
            held = await open_idle(port, 550, partial=False) + await open_idle(
                port, 550, partial=True
            )
            assert len(held) >= 1000  # the flood really happened
            took: list[float] = []
            try:
                end = time.monotonic() + 15
                while time.monotonic() < end:
                    held += await open_idle(port, 100, partial=len(took) % 2 == 1)
                    took.append(await healthz(run.base))
                    await asyncio.sleep(0.5)
                status = await run.get("/api/v1/status")
            finally:
                for w in held:
                    w.close()
            assert len(took) >= 10 and max(took) < 10, took
            await asyncio.sleep(INTERVAL)
            assert status["states"]["up"] == 450, status["states"]
            assert bad_events(run.state_db) == []
            grown = run.log()[log_before:]
            assert len(grown) < 20_000, grown[-3000:]
            assert "Too many open files" not in grown and "Traceback" not in grown
            assert "open-file limit" not in run.log()  # 1024 is enough for 450 points


def small_inventory(base: str) -> Inventory:
    text = f"""
monitor: {{name: "limits", interval: 1s, fail_after: 1}}
profiles:
  p: {{tcp: {{port: 9, timeout: 300ms}}}}
points:
  - {{id: a, name: "A", host: {base}1, profile: p}}
  - {{id: b, name: "B", host: {base}2, profile: p}}
"""
    return parse_inventory(text, "limits.yaml")


async def test_a_hard_limit_too_low_is_said_once_and_the_api_gives_way(tmp_path: Path) -> None:
    """Hard limit 200, below the ~400 the API's default cap would need: one warning saying
    what to set, the API's cap shrinks so probing keeps its share, and 150 idle connections
    (more than the process could hold) neither stop /healthz nor make a probe fail for want
    of descriptors."""
    inv = small_inventory("127.60.8.")
    run = await start_run(tmp_path, inv, preexec_fn=nofile(200, 200))
    try:

        async def serving() -> bool:
            with contextlib.suppress(aiohttp.ClientError, OSError, AssertionError):
                return await healthz(run.base) < 10
            return False

        await until(serving, 30, "confmon run serving")
        port = int(run.base.rsplit(":", 1)[1])
        held = await open_idle(port, 150, partial=False)
        try:
            for _ in range(5):
                assert await healthz(run.base) < 10
                await asyncio.sleep(0.3)
            await asyncio.sleep(2)  # two probe cycles under the flood
            points = {p["id"]: p for p in (await run.get("/api/v1/points"))["points"]}
        finally:
            for w in held:
                w.close()
        assert {p["state"] for p in points.values()} == {"down"}  # nothing listens on port 9
        assert all("refused" in p["reason"] for p in points.values()), points
    finally:
        code = await run.stop()
        await run.session.close()
    log = run.log()
    assert code == 0, log[-3000:]
    warnings = [
        json.loads(line)["message"] for line in log.splitlines() if "open-file limit" in line
    ]
    assert len(warnings) == 1, warnings
    assert "the open-file limit is 200" in warnings[0] and "LimitNOFILE=" in warnings[0]
    cap = re.search(r"the API takes at most (\d+) connections", warnings[0])
    assert cap is not None and MIN_API_CONNECTIONS <= int(cap.group(1)) < 150, warnings[0]
    assert "probes may fail" not in warnings[0]
    assert "Too many open files" not in log and "Traceback" not in log


async def test_ctrl_c_three_times_and_more_stops_cleanly_with_every_event_stored(
    tmp_path: Path,
) -> None:
    """A district is cut and another is cut while SIGINT after SIGINT arrives (every 10 ms
    until the process is gone): the first starts the stop, the next ones are said once and
    do not cut it short; the exit code is 0 and every state change the monitor logged is
    in the event log."""
    inv = hanoi_lab("127.60.4.1", interval=INTERVAL, stale_after=10.0)
    async with running(tmp_path, inv) as (run, lab):
        assert lab is not None
        await run.wait_all_up(450, within=60)
        lab.set_impairment("ba-vi", Impairment(down=True))

        async def cut() -> bool:
            return (await run.states()).get("unreachable") == 29

        await until(cut, 6 * INTERVAL + 10, "Ba Vì down, its 29 communes unreachable")
        lab.set_impairment("soc-son", Impairment(down=True))
        await asyncio.sleep(INTERVAL * 1.5)  # its changes are under way
        signals = 0
        async with asyncio.timeout(40):
            while run.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    run.proc.send_signal(signal.SIGINT)
                    signals += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(run.proc.wait()), 0.01)
        assert signals >= 3
        assert run.proc.returncode == 0, (run.proc.returncode, run.log()[-1500:])
    log = run.log()
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    said = [r["message"] for r in records if r["message"].startswith("already stopping")]
    assert len(said) <= 1, said
    assert sum(1 for r in records if r["message"] == "shutting down") == 1
    logged = sorted((r["point"], r["from"], r["to"]) for r in records if "to" in r)
    stored = sorted((p, prev, state) for _i, p, prev, state, _why in events(run.state_db))
    assert logged == stored  # nothing shown was lost on the way out
    assert ("ba-vi", "up", "down") in stored
    assert sum(1 for p, _f, to in stored if p.startswith("ba-vi.") and to == "unreachable") == 29


async def _confmon(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "monitor",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**{k: v for k, v in os.environ.items() if k != "CONFMON_API_TOKEN"}, **(env or {})},
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, err.decode(), time.monotonic() - start


@pytest.fixture
def config(tmp_path: Path) -> Path:
    from monitor.inventory.writer import to_yaml

    path = tmp_path / "small.yaml"
    path.write_text(to_yaml(small_inventory("127.60.9.")), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("listen", "code", "message"),
    [
        ("not a host:9201", 2, "'not a host' is neither an IP address nor a host name"),
        ("nosuchhost.invalid:9201", 2, "the name does not resolve"),
        ("192.0.2.77:9201", 2, "not an address of this machine"),
        ("127.0.0.1:99999", 2, "the port must be 1 to 65535"),
        ("[::1:9201", 2, "is not an IPv6 address in brackets"),
    ],
)
async def test_a_bad_listen_address_fails_before_anything_starts(
    tmp_path: Path, config: Path, listen: str, code: int, message: str
) -> None:
    """A --listen that cannot be served is one line and exit 2 before the event log is
    opened or a probe sent (the state db is never created)."""
    db = tmp_path / "never.sqlite3"
    rc, err, _ = await _confmon(
        "run", "-c", str(config), "--listen", listen, "--state-db", str(db), "--no-icmp"
    )
    assert rc == code, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and not db.exists()


async def test_a_listen_address_in_use_is_exit_1_before_probing(
    tmp_path: Path, config: Path
) -> None:
    """Another program on the port: one line, exit 1, nothing opened."""
    import socket

    db = tmp_path / "never.sqlite3"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        rc, err, _ = await _confmon(
            "run", "-c", str(config), "--listen", f"127.0.0.1:{port}", "--state-db", str(db)
        )
    assert rc == 1 and "the address is in use" in err, err
    assert len(err.strip().splitlines()) == 1 and not db.exists()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--api-token", ""], {}, "--api-token is empty (an unset variable?)"),
        (["--api-token", "   "], {}, "--api-token is empty"),
        (["--api-token", "two words"], {}, "printable ASCII without spaces"),
        (["--api-token", "tök"], {}, "printable ASCII without spaces"),
        ([], {"CONFMON_API_TOKEN": ""}, "CONFMON_API_TOKEN is empty"),
        ([], {"CONFMON_API_TOKEN": " \t"}, "CONFMON_API_TOKEN is empty"),
        (["--metrics-auth"], {}, "--metrics-auth needs a token"),
        (["--max-connections", "3"], {}, "out of range"),
    ],
)
async def test_tokens_that_would_open_or_lock_the_api_are_refused(
    tmp_path: Path, config: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    """An empty token (an unset variable) would turn authentication off, a blank one lock
    everyone out: both are one line and exit 2, whether from the option or the environment."""
    db = tmp_path / "never.sqlite3"
    listen = f"127.0.0.1:{free_port()}"
    rc, err, _ = await _confmon(
        "run", "-c", str(config), "--listen", listen, "--state-db", str(db), *args, env=env
    )
    assert rc == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not db.exists()


def test_parse_listen_takes_addresses_and_names_and_refuses_junk() -> None:
    """Addresses and host names pass; spaces, escapes, numbers that are not addresses fail."""
    assert parse_listen("127.0.0.1:9108") == ("127.0.0.1", 9108)
    assert parse_listen(":9108") == ("127.0.0.1", 9108)
    assert parse_listen("[::1]:9108") == ("::1", 9108)
    assert parse_listen("monitor.example.org:80") == ("monitor.example.org", 80)
    for junk in (
        "not a host:1",
        "\x1b[2J:1",
        "0x7f000001:1",
        "10.0.0.300:1",
        "a..b:1",
        "h:",
        "h:x",
    ):
        with pytest.raises(UsageError) as caught:
            parse_listen(junk)
        assert "\x1b" not in str(caught.value)


def test_parse_token_strips_and_refuses() -> None:
    """None stays None; surrounding whitespace goes; empty, blank or non-ASCII are refused."""
    assert parse_token(None, "--api-token") is None
    assert parse_token("s3cret\n", "--api-token") == "s3cret"
    for bad in ("", " ", "\n", "a b", "tök", "a\x1bb"):
        with pytest.raises(UsageError):
            parse_token(bad, "--api-token")


def test_budget_counts_socket_probes_up_to_the_concurrency() -> None:
    """450 Hanoi points (sip + media each, http at 30 headquarters) need the concurrency's 512
    probe sockets, the ICMP engine's two, the API's cap and the process's share."""
    from monitor.inventory import load_inventory

    inv = load_inventory(CONFIGS / "hanoi.yaml")
    need = budget(inv, api_connections=256, open_now=20)
    assert need.probes == min(inv.settings.concurrency, 930)
    assert need.engines == 2 and need.api == 258 and need.process == 20 + MARGIN
    assert need.total < 1024  # the usual service default is enough for the Hanoi inventory
    assert budget(inv, api_connections=256, open_now=20, probing=False).probes == 0
    small = budget(small_inventory("127.60.9."), api_connections=0, open_now=10)
    assert (small.probes, small.engines, small.api) == (2, 0, 0)


def test_plan_raises_the_soft_limit_or_shrinks_the_api_under_a_short_hard_one() -> None:
    """Soft below the need and hard above it: the soft limit goes to the need. Hard below:
    all of it, the API's cap shrinks to what probing leaves (never below the minimum), and
    a warning says what to set."""
    inv = hanoi_lab("127.60.0.1")
    need = budget(inv, api_connections=256, open_now=20)
    assert plan(need, 256, 4096).soft == need.total
    assert plan(need, 4096, 4096) == plan(need, INFINITY, INFINITY)
    assert plan(need, 4096, 4096).soft is None and plan(need, 4096, 4096).warning is None
    short = plan(need, 256, 800)
    assert short.soft == 800
    assert short.api_connections == 800 - need.without_api - 2 < 256
    assert short.warning is not None and f"LimitNOFILE={need.total}" in short.warning
    assert "probes may fail" not in short.warning
    starved = plan(need, 256, 300)
    assert starved.api_connections == MIN_API_CONNECTIONS
    assert starved.warning is not None and "probes may fail" in starved.warning


async def test_an_error_of_the_core_stop_reaches_the_caller_after_the_rest_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events that could not be stored make Monitor.stop() raise: open_app stops the API
    first (its port is closed by then) and raises that error, the process's one line."""
    import socket

    from monitor.app import AppOptions, open_app
    from monitor.core.service import Monitor
    from monitor.errors import ConfmonError

    port = free_port()
    seen: dict[str, bool] = {}
    stop = Monitor.stop

    async def failing_stop(self: Monitor) -> None:
        with socket.socket() as probe:
            seen["api_closed"] = probe.connect_ex(("127.0.0.1", port)) != 0
        await stop(self)
        raise ConfmonError("3 state changes could not be stored in events.sqlite3 (disk full)")

    monkeypatch.setattr(Monitor, "stop", failing_stop)
    opts = AppOptions(state_db=tmp_path / "ev.sqlite3", listen=("127.0.0.1", port), probe=False)
    with pytest.raises(ConfmonError, match="could not be stored"):
        async with open_app(small_inventory("127.60.9."), opts) as app:
            assert app.api is not None and app.api.ports == [port]
    assert seen == {"api_closed": True}
