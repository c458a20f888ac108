"""What one wake-up from idle costs on this machine, with and without an event loop.

Usage: ``.venv/bin/python bench/bench_wakeups.py [--seconds 10] [--rates 50,100,250]``

A probing process at 450 points sleeps between short bursts of work: about a hundred
wake-ups a second (the scheduler's 20 ms grid, the answers that come back a moment
after a send). This measures the price of a wake-up by itself, so that the share of
``bench_scheduler.py``'s figure that no code change in confmon can remove is known:

* **confmon's loop**: the event loop of confmon's probing thread (:mod:`monitor.loops`,
  uvloop where installed) waking at a fixed rate on an absolute schedule and doing nothing;
* **the peer**: a plain ``time.sleep`` loop in a child process (no event loop, no
  selector), waking at the same rate. Its CPU is the child's rusage.

Each prints the share of one core it used and the CPU per wake-up; the ratio is the
event loop's cost over the bare sleep's. On bare metal a wake-up costs a few
microseconds; on a virtual machine whose vCPU the hypervisor parks when idle it can cost
a hundred or more, and the work done right after it runs on cold caches.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.loops import loop_name, new_event_loop


def dues(rate: float, seconds: float, start: float) -> Iterator[float]:
    """The wake-up times of the schedule both sides keep: ``rate`` a second from ``start``."""
    n = 1
    while n / rate <= seconds:
        yield start + n / rate
        n += 1


async def loop_wakeups(rate: float, seconds: float) -> tuple[float, int]:
    """Wake ``rate`` times a second for ``seconds``; (CPU seconds, wake-ups)."""
    loop = asyncio.get_running_loop()
    cpu0 = time.process_time()
    n = 0
    for due in dues(rate, seconds, loop.time()):
        await asyncio.sleep(max(0.0, due - loop.time()))
        n += 1
    return time.process_time() - cpu0, n


def sleep_wakeups(rate: float, seconds: float) -> None:
    """The peer's side, in the child: the same schedule with ``time.sleep``."""
    for due in dues(rate, seconds, time.monotonic()):
        time.sleep(max(0.0, due - time.monotonic()))


def peer_wakeups(rate: float, seconds: float) -> float:
    """:func:`sleep_wakeups` in a child process; its CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, __file__, "--peer", str(rate), str(seconds)], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per rate and side (10)")
    parser.add_argument("--rates", default="50,100,250", help="wake-ups per second to try")
    parser.add_argument("--peer", nargs=2, type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        sleep_wakeups(*args.peer)
        return
    rates = [float(r) for r in args.rates.split(",")]
    loop = new_event_loop()
    # a child that starts and stops: its fixed cost, taken off every peer run
    startup = peer_wakeups(1.0, 0.0)
    print(
        f"{platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"confmon's loop {loop_name(loop)}, load average {os.getloadavg()[0]:.2f}; "
        f"{args.seconds:g} s per rate and side"
    )
    try:
        for rate in rates:
            cpu, n = loop.run_until_complete(loop_wakeups(rate, args.seconds))
            peer = max(peer_wakeups(rate, args.seconds) - startup, 1e-9)
            print(
                f"  {rate:5g}/s  confmon's loop {100 * cpu / args.seconds:5.2f} % of one core, "
                f"{1e6 * cpu / n:6.1f} us per wake-up   time.sleep "
                f"{100 * peer / args.seconds:5.2f} %, {1e6 * peer / n:6.1f} us   "
                f"ratio {cpu / peer:.2f}"
            )
    finally:
        loop.close()


if __name__ == "__main__":
    main()
