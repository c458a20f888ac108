"""``confmon run``: probes, health, event log and the HTTP API in one process.

Clean shutdown on SIGINT/SIGTERM (probes in flight are cancelled, the event log
is flushed); SIGHUP re-reads the config like ``POST /-/reload``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from monitor.commands.common import Subparsers, add_logging_options, parse_listen
from monitor.core.service import Monitor
from monitor.errors import ConfigError, ConfmonError
from monitor.inventory import Inventory
from monitor.outputs.api import start_api

__all__ = ["RunOptions", "default_state_db", "run_monitor"]

log = logging.getLogger("confmon")


@dataclass
class RunOptions:
    """What ``confmon run`` was asked to do."""

    config: Path
    listen: tuple[str, int] = ("127.0.0.1", 9108)
    state_db: Path | None = None
    token: str | None = None
    icmp: bool = True


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


# --- the command line -----------------------------------------------------------------


def _handle(args: argparse.Namespace) -> int:
    import asyncio

    from monitor.inventory import load_inventory
    from monitor.logs import setup_logging

    inv = load_inventory(args.config)
    opts = RunOptions(
        config=Path(args.config),
        listen=parse_listen(args.listen),
        state_db=Path(args.state_db) if args.state_db else None,
        token=args.api_token or os.environ.get("CONFMON_API_TOKEN") or None,
        icmp=not args.no_icmp,
    )
    setup_logging(args.log_format, args.log_level)
    return asyncio.run(run_monitor(inv, opts))


def add_parser(sub: Subparsers) -> None:
    """Register ``confmon run``."""
    p = sub.add_parser(
        "run",
        help="single-node monitor: probes, health, /metrics and API, event log",
        description=(
            "Probe every point of the inventory, keep their health, and serve /metrics, the "
            "JSON API (/api/v1/...) and an SSE stream. SIGHUP or POST /-/reload re-reads the "
            "config; SIGINT/SIGTERM stop cleanly."
        ),
    )
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="inventory YAML")
    p.add_argument(
        "--listen",
        default="127.0.0.1:9108",
        metavar="HOST:PORT",
        help="HTTP address (default: %(default)s)",
    )
    p.add_argument(
        "--state-db",
        metavar="PATH",
        help="SQLite event log (default: $XDG_STATE_HOME/confmon/<config name>.sqlite3)",
    )
    p.add_argument(
        "--api-token",
        metavar="TOKEN",
        help="require 'Authorization: Bearer TOKEN' on /api and /-/ (or set CONFMON_API_TOKEN)",
    )
    p.add_argument(
        "--no-icmp", action="store_true", help="do not run ICMP probes (no raw/ping socket needed)"
    )
    add_logging_options(p)
    p.set_defaults(handler=_handle)
