"""``confmon alerts test -c FILE [--receiver NAME]``: send a marked test message.

The message says plainly that it is a test (``TIN NHẮN THỬ``; for the Alertmanager
formats an alert named ``ConfmonTest`` with severity ``none``). It goes straight to the
receiver, not through the outbox: the point is to see at once whether the URL, the
secret and the chat are right. Exit 0 when every receiver tried accepted it, 1 when one
did not (its answer is printed), 2 for a bad config or an unknown receiver.
"""

from __future__ import annotations

import argparse

from monitor.commands.common import Subparsers
from monitor.errors import UsageError

__all__ = ["add_parser"]


def _handle_test(args: argparse.Namespace) -> int:
    import asyncio

    from monitor.alerts.service import send_test
    from monitor.inventory import load_inventory
    from monitor.text import quoted

    inv = load_inventory(args.config)
    receivers = inv.alerts.receivers
    if not receivers:
        raise UsageError(f"{args.config} has no alerts: receivers to test")
    if args.receiver is not None:
        chosen = [r for r in receivers if r.name in args.receiver]
        unknown = sorted(set(args.receiver) - {r.name for r in chosen})
        if unknown:
            names = ", ".join(r.name for r in receivers)
            raise UsageError(
                f"--receiver {quoted(unknown[0])}: not a receiver of {args.config} "
                f"(configured: {names})"
            )
        receivers = chosen

    from monitor.alerts.config import resolve_secret

    for r in receivers:  # every secret first: a missing one stops before anything is sent
        resolve_secret(r)

    async def run() -> int:
        failed = 0
        for r in receivers:
            outcome, rendered = await send_test(inv, r)
            ok = outcome.result == "delivered"
            failed += not ok
            mark = "ok" if ok else "FAILED"
            kind = {"retry": " (temporary: the outbox would retry)", "failed": " (refused)"}
            print(
                f"{r.name} ({r.format}): {mark}: {outcome.detail}{kind.get(outcome.result, '')}",
                flush=True,
            )
            if args.verbose:
                print(f"  {rendered.summary}")
        return 1 if failed else 0

    return asyncio.run(run())


def add_parser(sub: Subparsers) -> None:
    """Register ``confmon alerts``."""
    p = sub.add_parser(
        "alerts",
        help="alert receivers: send a test message",
        description="Work with the alert receivers of an inventory's alerts: section.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = actions.add_parser(
        "test",
        help="send a clearly marked test message to receivers now and report each answer",
        description=(
            "Send a test message (marked as such: not an incident) straight to each receiver "
            "(or those named with --receiver) and print its answer. Exit 0 when all accepted "
            "it, 1 when one did not, 2 for a bad config or an unknown receiver. Secrets are "
            "read from the environment or files as the receiver says (secret_env, secret_file)."
        ),
    )
    t.add_argument("-c", "--config", required=True, metavar="FILE", help="inventory YAML")
    t.add_argument(
        "--receiver",
        action="append",
        metavar="NAME",
        help="only this receiver (repeat for more); default: every receiver",
    )
    t.add_argument("-v", "--verbose", action="store_true", help="also print each message's text")
    t.set_defaults(handler=_handle_test)
