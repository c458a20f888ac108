"""`confmon run` keeps its promises under abuse: reload storms, API floods, kill -9, restarts
during an outage, and signals at any moment of start-up. Each test runs the real process
against the 450-point lab on its own loopback block."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
import textwrap
import time
from pathlib import Path

import aiohttp

from monitor.lab.impairment import Impairment
from tests.commands.running import count_events, events, hanoi_lab, running, start_run, until

INTERVAL = 2.0
#: Ba Vì: the headquarters and its 29 communes
BA_VI = 30


async def district_cut(run: object, lab: object, district: str, communes: int) -> None:
    """Cut a district in the lab and wait until it is down with its communes unreachable."""
    lab.set_impairment(district, Impairment(down=True))  # type: ignore[attr-defined]

    async def cut() -> bool:
        s = await run.states()  # type: ignore[attr-defined]
        return s.get("down") == 1 and s.get("unreachable") == communes

    await until(cut, 6 * INTERVAL + 5, f"{district} down, {communes} unreachable")


async def test_reload_storm_keeps_states_and_probes(tmp_path: Path) -> None:
    """POST /-/reload every 0.4 s for 20 s: no point turns unknown, the cut district stays
    down with its communes unreachable, and no state changes at all."""
    inv = hanoi_lab("127.40.0.1", interval=INTERVAL, stale_after=10.0)
    async with running(tmp_path, inv) as (run, lab):
        await run.wait_all_up(450)
        await district_cut(run, lab, "ba-vi", BA_VI - 1)
        await asyncio.sleep(INTERVAL)  # let the cut settle
        before = count_events(run.state_db)
        cycles = (await run.get("/api/v1/status"))["scheduler"]["cycles"]
        storm_start = time.monotonic()
        storm_end = storm_start + 20.0
        reloads = 0
        samples = 0
        while time.monotonic() < storm_end:
            async with run.session.post(f"{run.base}/-/reload") as resp:
                assert resp.status == 200, await resp.text()
            reloads += 1
            await asyncio.sleep(0.4)
            if reloads % 3 == 0:
                states = await run.point_states()
                samples += 1
                assert states["ba-vi"] == "down"
                assert all(
                    s == "unreachable" for p, s in states.items() if p.startswith("ba-vi.")
                ), {p: s for p, s in states.items() if p.startswith("ba-vi.")}
                others = {s for p, s in states.items() if p.split(".")[0] != "ba-vi"}
                assert others == {"up"}, others
        assert reloads >= 30 and samples >= 10
        assert count_events(run.state_db) == before, events(run.state_db, "id > ?", (before,))
        # probing went on at its pace: 450 points every 2 s (a restart per reload would
        # lose the cycles in flight and start from zero each time)
        done = (await run.get("/api/v1/status"))["scheduler"]["cycles"] - cycles
        expected = 450 * (time.monotonic() - storm_start) / INTERVAL
        assert done >= 0.8 * expected, (done, expected)


FLOOD = textwrap.dedent(
    """
    import asyncio, sys, time
    import aiohttp

    async def main(url, seconds, rate):
        done = 0
        async with aiohttp.ClientSession() as s:
            end = time.monotonic() + seconds
            async def worker():
                nonlocal done
                while time.monotonic() < end:
                    t = time.monotonic()
                    async with s.get(url) as r:
                        await r.read()
                    done += 1
                    await asyncio.sleep(max(0.0, 4 / rate - (time.monotonic() - t)))
            await asyncio.gather(*(worker() for _ in range(4)))
        print(done)

    asyncio.run(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3])))
    """
)


async def test_api_flood_changes_no_state(tmp_path: Path) -> None:
    """/metrics at ~80 requests a second for 20 s raises no state change: probing is not
    hostage to the API. The lab (the network) runs as its own process at a higher priority
    and the flooding client at the lowest, so what is tested is the monitor, not how a
    2-core machine shares out its CPU between the network and its attacker."""
    inv = hanoi_lab("127.41.0.1", interval=INTERVAL, stale_after=10.0)
    async with running(tmp_path, inv, lab=False) as (run, _):
        await run.wait_all_up(450)
        await asyncio.sleep(2 * INTERVAL)
        before = count_events(run.state_db)
        flood = await asyncio.create_subprocess_exec(
            "nice",
            "-n",
            "19",
            sys.executable,
            "-c",
            FLOOD,
            f"{run.base}/metrics",
            "20",
            "80",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(flood.communicate(), 60)
        assert flood.returncode == 0
        requests = int(out.decode().strip())
        assert requests >= 20 * 40, requests  # the flood really happened
        await asyncio.sleep(INTERVAL)
        assert count_events(run.state_db) == before, events(run.state_db, "id > ?", (before,))


async def read_sse_ids(
    session: aiohttp.ClientSession, url: str, seen: list[tuple[int, str, str]]
) -> None:
    with contextlib.suppress(aiohttp.ClientError, asyncio.CancelledError, ConnectionError):
        async with session.get(url, headers={"Last-Event-ID": "0"}) as resp:
            kind = ""
            async for raw in resp.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "state":
                    data = json.loads(line[6:])
                    seen.append((data["id"], data["point"], data["to"]))


async def test_kill_9_loses_nothing_that_was_shown(tmp_path: Path) -> None:
    """Every event an SSE client saw is in the event log after kill -9 in the middle of a
    district's burst of 30 changes."""
    inv = hanoi_lab("127.42.0.1", interval=INTERVAL, stale_after=10.0)
    from monitor.lab.lab import Lab

    async with Lab(inv, seed=3) as lab:
        run = await start_run(tmp_path, inv)
        try:
            await run.wait_all_up(450)
            seen: list[tuple[int, str, str]] = []
            reader = asyncio.get_running_loop().create_task(
                read_sse_ids(run.session, f"{run.base}/api/v1/stream", seen)
            )

            async def replayed() -> bool:
                return len(seen) >= 450

            await until(replayed, 20, "the stream replays the first 450 events")
            lab.set_impairment("ba-vi", Impairment(down=True))

            async def burst_started() -> bool:
                return any(p.startswith("ba-vi") and s != "up" for _, p, s in seen)

            await until(burst_started, 6 * INTERVAL + 5, "Ba Vì's burst on the stream")
            run.proc.send_signal(signal.SIGKILL)
            await asyncio.wait_for(run.proc.wait(), 10)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        finally:
            if run.proc.returncode is None:
                run.proc.kill()
                await run.proc.wait()
            await run.session.close()
    stored = {(i, p, s) for i, p, _, s, _ in events(run.state_db)}
    shown = set(seen)
    assert shown <= stored, sorted(shown - stored)[:5]
    assert any(p.startswith("ba-vi") and s != "up" for _, p, s in shown)


async def test_restart_during_an_outage_raises_no_false_down(tmp_path: Path) -> None:
    """With recover_after 1, a restart while Sóc Sơn is down changes nothing in its subtree:
    no commune flashes unreachable -> down."""
    inv = hanoi_lab("127.43.0.1", interval=INTERVAL, stale_after=10.0, recover_after=1)
    from monitor.lab.lab import Lab

    communes = sum(1 for p in inv.points.values() if p.parent == "soc-son")
    async with Lab(inv, seed=3) as lab:
        run = await start_run(tmp_path, inv)
        try:
            await run.wait_all_up(450)
            await district_cut(run, lab, "soc-son", communes)
            assert await run.stop() == 0
        finally:
            await run.session.close()
        last = count_events(run.state_db)
        run = await start_run(tmp_path, inv, name="restart")
        try:

            async def serving() -> bool:
                return bool(await run.states())

            await until(serving, 20, "the restarted monitor answers")
            await asyncio.sleep(4 * INTERVAL)
            states = await run.point_states()
            assert states["soc-son"] == "down"
            assert {s for p, s in states.items() if p.startswith("soc-son.")} == {"unreachable"}
        finally:
            assert await run.stop() == 0
            await run.session.close()
    after = events(run.state_db, "id > ?", (last,))
    assert [e for e in after if e[1].split(".")[0] == "soc-son"] == []


async def test_sighup_before_the_loop_runs_does_not_kill(tmp_path: Path) -> None:
    """SIGHUP 0.3 s after start (before any handler of the event loop) is survived, and the
    monitor then runs normally and stops with exit 0."""
    inv = hanoi_lab("127.44.0.1", interval=INTERVAL, stale_after=10.0)
    async with running(tmp_path, inv) as (run, _):
        await asyncio.sleep(0.3)
        run.proc.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.3)
        run.proc.send_signal(signal.SIGHUP)
        await run.wait_all_up(450)
        assert run.proc.returncode is None


async def test_signals_while_start_up_waits_on_a_locked_database(tmp_path: Path) -> None:
    """While another process holds the event log locked: SIGHUP is remembered (one scheduler,
    not two); after the lock is gone the monitor runs; SIGTERM during the wait exits at once."""
    inv = hanoi_lab("127.44.0.1", interval=INTERVAL, stale_after=10.0)
    db = tmp_path / "events.sqlite3"
    from monitor.lab.lab import Lab

    async with Lab(inv, seed=3):
        lock = sqlite3.connect(db, isolation_level=None)
        lock.execute("PRAGMA journal_mode=DELETE")
        lock.execute("BEGIN EXCLUSIVE")
        run = await start_run(tmp_path, inv, name="locked")
        try:
            await asyncio.sleep(1.5)
            for _ in range(3):
                run.proc.send_signal(signal.SIGHUP)
                await asyncio.sleep(0.2)
            assert run.proc.returncode is None
            assert await run.states() == {}  # still starting
            lock.execute("ROLLBACK")
            await run.wait_all_up(450, within=60)
            first = (await run.get("/api/v1/status"))["scheduler"]["cycles"]
            await asyncio.sleep(5 * INTERVAL)
            cycles = (await run.get("/api/v1/status"))["scheduler"]["cycles"] - first
            # 450 points every 2 s for 10 s: 2,250 cycles; a second scheduler would double it
            assert 1500 <= cycles <= 3000, cycles
            assert run.log().count('"message": "monitoring 450 points') == 1
            assert await run.stop() == 0
        finally:
            if run.proc.returncode is None:
                run.proc.kill()
            await run.session.close()

        lock.execute("BEGIN EXCLUSIVE")
        run = await start_run(tmp_path, inv, name="term")
        try:
            await asyncio.sleep(1.5)
            started = time.monotonic()
            assert await run.stop(within=10) == 0
            assert time.monotonic() - started < 5
        finally:
            if run.proc.returncode is None:
                run.proc.kill()
            await run.session.close()
            lock.execute("ROLLBACK")
            lock.close()


async def test_reload_of_a_fifo_fails_at_once_and_shutdown_still_works(tmp_path: Path) -> None:
    """A config replaced by a FIFO (no writer) fails that reload with one line; the next
    reload works; SIGTERM is not held up."""
    inv = hanoi_lab("127.44.0.1", interval=INTERVAL, stale_after=10.0)
    async with running(tmp_path, inv) as (run, _):
        await run.wait_all_up(450)
        saved = run.config.read_bytes()
        run.config.unlink()
        os.mkfifo(run.config)
        async with run.session.post(f"{run.base}/-/reload") as resp:
            assert resp.status == 400
            assert "not a regular file" in json.dumps(await resp.json())
        run.proc.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        run.config.unlink()
        run.config.write_bytes(saved)
        async with run.session.post(f"{run.base}/-/reload") as resp:
            assert resp.status == 200, await resp.text()
        assert (await run.states()).get("up") == 450
