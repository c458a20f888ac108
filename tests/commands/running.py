"""`confmon run` as a separate process against the lab: the harness of the end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import aiohttp

from monitor.inventory import Inventory, load_inventory
from monitor.inventory.writer import to_yaml
from monitor.lab.addresses import lab_inventory
from monitor.lab.lab import Lab
from tests.helpers import CONFIGS, free_port


def hanoi_lab(base: str, **settings: object) -> Inventory:
    """The 450 Hanoi points on lab addresses from ``base``, with monitor settings changed."""
    inv = lab_inventory(load_inventory(CONFIGS / "hanoi.yaml"), IPv4Address(base))
    return inv.__class__(**{**inv.__dict__, "settings": inv.settings.model_copy(update=settings)})


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def until(check: Any, within: float, what: str) -> float:
    """Poll ``check()`` (async, truthy when done); returns the seconds it took."""
    start = time.monotonic()
    try:
        async with asyncio.timeout(within):
            while not await check():  # noqa: ASYNC110 - polling another process's API
                await asyncio.sleep(0.25)
    except TimeoutError:
        raise AssertionError(f"not within {within:g}s: {what}") from None
    return time.monotonic() - start


@dataclass
class Running:
    """A started ``confmon run`` process."""

    proc: asyncio.subprocess.Process
    base: str
    config: Path
    state_db: Path
    log_path: Path
    session: aiohttp.ClientSession
    exit_code: int | None = field(default=None)

    async def get(self, path: str) -> Any:
        return await get_json(self.session, f"{self.base}{path}")

    async def states(self) -> dict[str, int]:
        try:
            return dict((await self.get("/api/v1/status"))["states"])
        except (aiohttp.ClientError, OSError):
            return {}

    async def point_states(self) -> dict[str, str]:
        return {p["id"]: p["state"] for p in (await self.get("/api/v1/points"))["points"]}

    async def wait_all_up(self, n: int, within: float = 40.0) -> None:
        async def ready() -> bool:
            return (await self.states()).get("up") == n

        await until(ready, within, f"all {n} lab points up")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8")

    async def stop(self, sig: int = signal.SIGTERM, within: float = 20.0) -> int:
        """Signal the process and wait ``within`` seconds for its exit code; one that is
        still there then is killed (nothing outlives its test) and fails the test."""
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        try:
            self.exit_code = await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(
                f"{self.log_path.stem} did not end within {within:g}s of signal {sig}:\n"
                + self.log()[-2000:]
            ) from None
        return self.exit_code


async def start_run(
    tmp_path: Path,
    inv: Inventory,
    *args: str,
    state_db: Path | None = None,
    name: str = "run",
    preexec_fn: Callable[[], object] | None = None,
    command: str = "run",
    env: dict[str, str] | None = None,
) -> Running:
    """Start ``confmon run`` (or ``command``: ``server``) on ``inv`` (written to tmp_path),
    JSON logs to a file; ``preexec_fn`` runs in the child before it starts (e.g. to lower
    its limits); ``env`` is added to the child's environment."""
    import os

    config = tmp_path / "lab-hanoi.yaml"
    if not config.exists():
        config.write_text(to_yaml(inv), encoding="utf-8")
    port = free_port()
    db = state_db or tmp_path / "events.sqlite3"
    log_path = tmp_path / f"{name}.log"
    with log_path.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "monitor",
            command,
            "-c",
            str(config),
            "--listen",
            f"127.0.0.1:{port}",
            "--state-db",
            str(db),
            *(["--no-icmp"] if command == "run" else []),
            "--log-format",
            "json",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
            preexec_fn=preexec_fn,
            env={**os.environ, **(env or {})},
        )
    return Running(proc, f"http://127.0.0.1:{port}", config, db, log_path, aiohttp.ClientSession())


@contextlib.asynccontextmanager
async def lab_process(tmp_path: Path, inv: Inventory, nice: int = -10) -> AsyncIterator[None]:
    """The lab as its own process, at a higher priority than the tests: it plays the network,
    which must stay responsive however loaded the machine under test is. ``inv`` must be on
    lab addresses already (from :func:`hanoi_lab`)."""
    config = tmp_path / "lab-hanoi.yaml"
    if not config.exists():
        config.write_text(to_yaml(inv), encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        "nice",
        "-n",
        str(nice),
        sys.executable,
        "-m",
        "monitor",
        "lab",
        "-c",
        str(config),
        "--seed",
        "3",
        "--control-port",
        "0",
        "--lab-base",
        next(iter(inv.points.values())).host,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    try:
        lines: list[str] = []
        async with asyncio.timeout(60):
            while not lines or not lines[-1].startswith("ready in "):
                line = (await proc.stdout.readline()).decode()
                if not line:
                    raise AssertionError(f"the lab exited early: {lines}")
                lines.append(line.rstrip("\n"))
        yield
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 20)


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, inv: Inventory, *args: str, lab: bool = True, **kw: Any
) -> AsyncIterator[tuple[Running, Lab | None]]:
    """``confmon run`` and the lab until the block ends; then a clean stop, which must exit 0
    with no traceback. The lab runs in this process (its impairments can be changed), or with
    ``lab=False`` as a process of its own at a higher priority (see :func:`lab_process`)."""
    async with contextlib.AsyncExitStack() as stack:
        the_lab = await stack.enter_async_context(Lab(inv, seed=3)) if lab else None
        if not lab:
            await stack.enter_async_context(lab_process(tmp_path, inv))
        run = await start_run(tmp_path, inv, *args, **kw)
        try:
            yield run, the_lab
        finally:
            code = await run.stop()
            await run.session.close()
        err = run.log()
        assert code == 0, err[-3000:]
        assert "Traceback" not in err, err[-3000:]


def count_events(db: Path, **where: str) -> int:
    """Events in an event log, filtered by column values."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as conn:
        sql = "SELECT COUNT(*) FROM events"
        if where:
            sql += " WHERE " + " AND ".join(f"{k} = ?" for k in where)
        return int(conn.execute(sql, tuple(where.values())).fetchone()[0])


def events(db: Path, sql_where: str = "1", args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    """(id, point, previous, state, reason) rows of an event log, in id order."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(
            f"SELECT id, point, previous, state, reason FROM events WHERE {sql_where} ORDER BY id",
            tuple(args),
        ).fetchall()
