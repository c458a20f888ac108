"""``confmon agent``: probe the points the server assigns (or a local config's) and publish
the results over MQTT. See :mod:`monitor.transport.agent`."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from monitor.commands.argtypes import number_in
from monitor.commands.common import Subparsers, add_logging_options, suggest_no_icmp
from monitor.commands.mqttopts import add_broker_options, broker_from_args

if TYPE_CHECKING:
    from monitor.transport.agent import AgentOptions

__all__ = ["run_agent"]

log = logging.getLogger("confmon")


async def run_agent(opts: AgentOptions) -> int:
    """Run the agent until SIGINT/SIGTERM; returns the exit code."""
    import asyncio
    import signal

    from monitor.collector import settle
    from monitor.probes.base import ProbeContext
    from monitor.transport.agent import Agent

    if "icmp" not in opts.disabled:
        # said now, not when the first assignment arrives and 200 probes fail
        from monitor.probes import icmp

        async with ProbeContext() as ctx:
            await icmp.engine(ctx)
    agent = Agent(opts)
    settle()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if agent.stopping:
            log.warning("already stopping (sending what is buffered, at most a few seconds)")
        agent.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        await agent.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    stats = agent.stats()
    log.info(
        "agent %s stopped: %d results published, %d dropped, %d unsent",
        opts.agent,
        stats["published"],
        stats["dropped"],
        stats["buffered"],
    )
    return 0


def _buffer(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of results") from None
    if not 100 <= n <= 10_000_000:
        raise argparse.ArgumentTypeError(f"{n} is out of range (100 to 10,000,000 results)")
    return n


#: monitor.core.results.DESCRIBE_EVERY, written out: importing it would load msgspec at
#: every start of the command line (tests/transport/test_describe.py checks they agree)
DESCRIBE_EVERY = 60.0


def _handle(args: argparse.Namespace) -> int:
    from monitor.exiting import run_service
    from monitor.inventory import load_inventory
    from monitor.logs import setup_logging
    from monitor.transport.agent import AgentOptions
    from monitor.transport.mqtt import check_agent_id

    agent = check_agent_id(args.id)
    broker = broker_from_args(args, default_user=agent)
    if broker.username is not None and broker.username != agent:
        log.warning(
            "broker user %s is not the agent id %s: the shipped ACL lets an agent publish only "
            "under its own user name",
            broker.username,
            agent,
        )
    inv = load_inventory(args.config) if args.config is not None else None
    opts = AgentOptions(
        broker=broker,
        agent=agent,
        inventory=inv,
        buffer=args.buffer,
        disabled=frozenset({"icmp"}) if args.no_icmp else frozenset(),
        describe_every=args.describe_every,
    )
    setup_logging(args.log_format, args.log_level)
    with suggest_no_icmp():
        return run_service(run_agent(opts))


def add_parser(sub: Subparsers) -> None:
    """Register ``confmon agent``."""
    p = sub.add_parser(
        "agent",
        help="probe the points the server assigns and publish results over MQTT",
        description=(
            "Connect out to the MQTT broker, take this agent's points from the server's "
            "retained assignment (or from -c FILE), probe them, and publish the results in "
            "batches. Keeps probing while the broker is away and sends the buffered results "
            "when it is back. SIGINT/SIGTERM stop cleanly (status 'offline')."
        ),
    )
    add_broker_options(p)
    p.add_argument(
        "--id",
        required=True,
        metavar="ID",
        help="this agent's id (letters, digits, '.', '_', '-'), e.g. agent-ba-vi",
    )
    p.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="probe this inventory instead of waiting for the server's assignment",
    )
    p.add_argument(
        "--buffer",
        type=_buffer,
        default=100_000,
        metavar="N",
        help="results kept while the broker is unreachable; the oldest go first (default: %(default)s)",
    )
    p.add_argument(
        "--describe-every",
        type=number_in(0, 86_400, unit=" seconds"),
        default=DESCRIBE_EVERY,
        metavar="SECONDS",
        help=(
            "send a steady probe's phases and details this often; failures and changes are "
            "always sent with them, 0 sends them with every result (default: %(default)g)"
        ),
    )
    p.add_argument(
        "--no-icmp", action="store_true", help="do not run ICMP probes (no raw/ping socket needed)"
    )
    add_logging_options(p)
    p.set_defaults(handler=_handle)
