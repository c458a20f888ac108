"""``confmon run``: probes, health, event log and the HTTP API in one process.

Clean shutdown on SIGINT/SIGTERM (probes in flight are cancelled, the event log
is flushed); SIGHUP re-reads the config like ``POST /-/reload``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from monitor.api import start_api
from monitor.errors import ConfigError, ConfmonError, UsageError
from monitor.inventory import Inventory
from monitor.service import Monitor

__all__ = ["RunOptions", "default_state_db", "parse_listen", "run_monitor"]

log = logging.getLogger("confmon")


@dataclass
class RunOptions:
    """What ``confmon run`` was asked to do."""

    config: Path
    listen: tuple[str, int] = ("127.0.0.1", 9108)
    state_db: Path | None = None
    token: str | None = None
    icmp: bool = True


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT`` or ``:PORT`` (loopback) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9108")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def default_state_db(config: Path) -> Path:
    """Where the event log lives unless ``--state-db`` says otherwise."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "confmon" / f"{config.stem}.sqlite3"


async def check_icmp(monitor: Monitor) -> None:
    """Fail early, with the fix, when the inventory needs ICMP and the process may not ping."""
    if any(p.icmp is not None for p in monitor.inv.profiles.values()):
        await monitor.ctx.icmp()


async def run_monitor(inv: Inventory, opts: RunOptions) -> int:
    """Run until a signal; returns the exit code."""
    state_db = opts.state_db or default_state_db(opts.config)
    monitor = Monitor(
        inv,
        state_db=state_db,
        config_path=opts.config,
        disabled_probes=frozenset() if opts.icmp else frozenset({"icmp"}),
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    reloads: set[asyncio.Task[None]] = set()

    def reload() -> None:
        async def go() -> None:
            with contextlib.suppress(ConfigError):  # already logged; the old config stays
                await monitor.reload()

        task = loop.create_task(go())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        try:
            await check_icmp(monitor)
        except ConfmonError as exc:
            raise ConfmonError(f"{exc} (or run with --no-icmp)") from None
        await monitor.start()
        host, port = opts.listen
        runner = await start_api(monitor, host, port, opts.token)
        log.info(
            "monitoring %d points from %s; metrics and API on http://%s:%d/ ; events in %s",
            len(inv.points),
            opts.config,
            f"[{host}]" if ":" in host else host,
            port,
            state_db,
        )
        try:
            await stop.wait()
            log.info("shutting down")
        finally:
            monitor.close_streams()  # SSE clients leave now, not after aiohttp's grace period
            for task in reloads:
                task.cancel()
            await runner.cleanup()
    finally:
        await monitor.stop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    return 0
