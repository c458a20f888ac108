"""``confmon server``: the monitor of ``confmon run``, fed by agents over MQTT instead of probing.

Health, metrics, the API, the event log and the dashboard are the same as in
``run``; the points are shared out among the agents as the inventory's
``agents:`` section says (see :mod:`monitor.transport.server`).
"""

from __future__ import annotations

import argparse

from monitor.commands.common import Subparsers, add_logging_options
from monitor.commands.mqttopts import add_broker_options, broker_from_args
from monitor.commands.run import add_serving_options, serve_from_args

SERVER_USER = "confmon-server"


def _handle(args: argparse.Namespace) -> int:
    return serve_from_args(args, broker_from_args(args, default_user=SERVER_USER))


def add_parser(sub: Subparsers) -> None:
    """Register ``confmon server``."""
    p = sub.add_parser(
        "server",
        help="the monitor for agents: health, /metrics and API, event log, fed over MQTT",
        description=(
            "Share the inventory's points out among the agents that report to the MQTT broker "
            "(the 'agents:' section: balanced or by-district, replicas), judge their results "
            "like 'confmon run', and serve /metrics, the JSON API and the event stream. "
            "SIGHUP or POST /-/reload re-reads the config; SIGINT/SIGTERM stop cleanly."
        ),
    )
    add_serving_options(p)
    add_broker_options(p)
    add_logging_options(p)
    p.set_defaults(handler=_handle)
