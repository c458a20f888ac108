"""``confmon run``: probes, health, event log and the HTTP API in one process.

Clean shutdown on SIGINT/SIGTERM (probes in flight are cancelled, the event log
is flushed); SIGHUP re-reads the config like ``POST /-/reload``.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.commands.argtypes import whole_number
from monitor.commands.common import (
    Subparsers,
    add_logging_options,
    api_token,
    parse_listen,
    suggest_no_icmp,
)
from monitor.errors import UsageError
from monitor.outputs.httpserver import DEFAULT_MAX_CONNECTIONS

if TYPE_CHECKING:
    from monitor.app import App
    from monitor.inventory import Inventory
    from monitor.transport.mqtt import BrokerConfig

__all__ = [
    "RunOptions",
    "add_serving_options",
    "default_state_db",
    "run_monitor",
    "serve_from_args",
]

log = logging.getLogger("confmon")


@dataclass
class RunOptions:
    """What ``confmon run`` was asked to do."""

    config: Path
    listen: tuple[str, int] = ("127.0.0.1", 9108)
    state_db: Path | None = None
    token: str | None = None
    icmp: bool = True
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    metrics_auth: bool = False
    #: ``confmon server``: results come from agents through this broker; nothing is probed
    broker: BrokerConfig | None = None


def default_state_db(config: Path) -> Path:
    """Where the event log lives unless ``--state-db`` says otherwise."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "confmon" / f"{config.stem}.sqlite3"


async def run_monitor(inv: Inventory, opts: RunOptions) -> int:
    """Run until a signal; returns the exit code."""
    from monitor.app import AppOptions, serve

    state_db = opts.state_db or default_state_db(opts.config)
    app_opts = AppOptions(
        config_path=opts.config,
        state_db=state_db,
        listen=opts.listen,
        token=opts.token,
        icmp="on" if opts.icmp else "off",
        max_connections=opts.max_connections,
        metrics_auth=opts.metrics_auth,
        probe=opts.broker is None,
        broker=opts.broker,
    )

    def started(app: App) -> None:
        host, port = opts.listen
        source = f"agents through {opts.broker}" if opts.broker else "probing"
        log.info(
            "monitoring %d points from %s (%s); metrics and API on http://%s:%d/ ; events in %s",
            len(app.inv.points),
            opts.config,
            source,
            f"[{host}]" if ":" in host else host,
            port,
            state_db,
        )

    with suggest_no_icmp():
        return await serve(inv, app_opts, on_start=started)


# --- the command line -----------------------------------------------------------------


def serve_from_args(args: argparse.Namespace, broker: BrokerConfig | None = None) -> int:
    """``confmon run`` (``broker`` None) or ``confmon server``, from their parsed options."""
    from monitor.exiting import run_service
    from monitor.inventory import load_inventory
    from monitor.logs import setup_logging

    # the options first: a usage error costs nothing, not even reading the inventory
    listen = parse_listen(args.listen)
    if args.state_db is not None and not args.state_db.strip():
        raise UsageError("--state-db is empty (an unset variable?): give a path, or leave it out")
    token = api_token(args.api_token)
    if args.metrics_auth and token is None:
        raise UsageError("--metrics-auth needs a token (--api-token or CONFMON_API_TOKEN)")
    inv = load_inventory(args.config)
    opts = RunOptions(
        config=Path(args.config),
        listen=listen,
        state_db=Path(args.state_db) if args.state_db else None,
        token=token,
        icmp=not getattr(args, "no_icmp", False),
        max_connections=args.max_connections,
        metrics_auth=args.metrics_auth,
        broker=broker,
    )
    setup_logging(args.log_format, args.log_level)
    return run_service(run_monitor(inv, opts))


def _handle(args: argparse.Namespace) -> int:
    return serve_from_args(args)


def add_serving_options(p: argparse.ArgumentParser) -> None:
    """The options ``run`` and ``server`` share: the config, the API, the event log."""
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
        help="require 'Authorization: Bearer TOKEN' everywhere but /metrics, /healthz and "
        "/readyz (or set CONFMON_API_TOKEN); printable ASCII, never empty",
    )
    p.add_argument(
        "--metrics-auth",
        action="store_true",
        help="/metrics needs the token too (Prometheus: 'authorization: {credentials_file: ...}')",
    )
    p.add_argument(
        "--max-connections",
        type=whole_number(8, 65536),
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help="HTTP connections held at once; at the cap the oldest idle one makes room "
        "(default: %(default)s)",
    )


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
    add_serving_options(p)
    p.add_argument(
        "--no-icmp", action="store_true", help="do not run ICMP probes (no raw/ping socket needed)"
    )
    add_logging_options(p)
    p.set_defaults(handler=_handle)
