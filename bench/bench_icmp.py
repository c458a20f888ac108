"""confmon's ICMP engine against fping, on the same loopback targets, in one run.

Usage: ``.venv/bin/python bench/bench_icmp.py [--targets 10000] [--rounds 3]`` (root, or
an unprivileged-ICMP ``ping_group_range``; fping installed).

Both sides send ``--count`` (5) echo requests of 56 payload bytes to each of
``--targets`` distinct addresses in 127.0.0.0/8 and wait at most 1 s for each reply:

* fping: ``fping -q -c 5 -i 0 -p 20 -t 1000 -b 56 -f <file>``: no pause between any two
  packets (``-i 0``), at least 20 ms between two packets to one target (``-p 20``).
* confmon: one :class:`~monitor.probes.icmp.IcmpEngine`, one ``ping()`` per target, all
  started at once (``asyncio.gather``), ``spacing=0.020`` (each target's requests 20 ms
  apart, the same per-target period as fping's ``-p 20``), ``timeout=1.0``.

fping's default period (``-p 1000``, one echo per target per second) is run once too, as
a reference only: it measures the period, not the engine (4 periods + the last reply).

Wall time is from start to the last result; loss is lost replies over requests sent.
The rounds alternate fping and confmon and the medians are compared, so a neighbour's
CPU load on a shared machine hits both sides alike. CPU time is user + system, of this
process for confmon and of the child for fping.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.collector import settle
from monitor.loops import loop_name, new_event_loop
from monitor.probes.icmp import IcmpEngine

COUNT = 5
SPACING_MS = 20
TIMEOUT_MS = 1000
SIZE = 56
FPING_LINE = re.compile(r"^(\S+)\s*: xmt/rcv/%loss = (\d+)/(\d+)/")


@dataclass
class Run:
    """One measured run of one side."""

    wall: float
    cpu: float
    sent: int
    received: int

    @property
    def loss(self) -> float:
        return 1 - self.received / self.sent if self.sent else 1.0


def loopback_targets(n: int) -> list[str]:
    """``n`` distinct addresses 127.1.0.1, 127.1.0.2, ... (the kernel answers all of 127/8)."""
    return [f"127.{1 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}" for i in range(1, n + 1)]


def fping_command(fping: str, target_file: str) -> list[str]:
    return [
        fping,
        "-q",
        "-c",
        str(COUNT),
        "-i",
        "0",
        "-p",
        str(SPACING_MS),
        "-t",
        str(TIMEOUT_MS),
        "-b",
        str(SIZE),
        "-f",
        target_file,
    ]


def run_fping(command: list[str], n: int) -> Run:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sent = received = seen = 0
    for line in done.stderr.splitlines():  # with -q, fping prints its summary on stderr
        match = FPING_LINE.match(line)
        if match:
            seen += 1
            sent += int(match[2])
            received += int(match[3])
    if seen != n:
        raise SystemExit(f"fping reported {seen} of {n} targets:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(wall, cpu, sent, received)


async def run_confmon(targets: list[str]) -> Run:
    async with await IcmpEngine.open() as engine:
        cpu_before = time.process_time()
        started = time.perf_counter()
        results = await asyncio.gather(
            *(
                engine.ping(
                    t, count=COUNT, spacing=SPACING_MS / 1000, timeout=TIMEOUT_MS / 1000, size=SIZE
                )
                for t in targets
            )
        )
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        leaked = engine.in_flight
    if leaked:
        raise SystemExit(f"engine left {leaked} outstanding requests")
    wrong = [r.target for r in results if r.details.get("address") != r.target]
    if wrong:
        raise SystemExit(f"results for the wrong target: {wrong[:5]}")
    sent = sum(int(r.details["sent"]) for r in results)
    received = sum(int(r.details["received"]) for r in results)
    return Run(wall, cpu, sent, received)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--no-reference",
        dest="reference",
        action="store_false",
        help="skip the one run of fping with its default 1 s period (about 4 s)",
    )
    parser.add_argument(
        "--loop",
        choices=("default", "asyncio", "uvloop"),
        default="default",
        help="confmon's event loop (default: what the probing thread of confmon run uses)",
    )
    parser.add_argument(
        "--gc-defaults",
        action="store_true",
        help="keep CPython's collector settings (confmon run tunes them: monitor/collector.py)",
    )
    args = parser.parse_args()
    factory = {"default": new_event_loop, "asyncio": asyncio.new_event_loop}.get(args.loop)
    if factory is None:
        import uvloop

        factory = uvloop.new_event_loop
    probe_loop = factory()
    if not args.gc_defaults:
        settle()  # as confmon run and confmon agent do once start-up is over
    collector = "CPython's defaults" if args.gc_defaults else "settled as confmon run does"
    print(f"confmon's loop: {loop_name(probe_loop)}, collector {collector}")
    fping = shutil.which("fping") or "/usr/bin/fping"
    if not os.access(fping, os.X_OK):
        raise SystemExit("fping is not installed (apt-get install fping)")
    targets = loopback_targets(args.targets)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="confmon-bench-") as f:
        f.write("\n".join(targets) + "\n")
        f.flush()
        command = fping_command(fping, f.name)
        fping_runs: list[Run] = []
        confmon_runs: list[Run] = []
        for _ in range(args.rounds):
            fping_runs.append(run_fping(command, len(targets)))
            confmon_runs.append(probe_loop.run_until_complete(run_confmon(targets)))
        default_command = [fping, "-q", "-c", str(COUNT), "-i", "0", "-f", f.name]
        default_run = run_fping(default_command, len(targets)) if args.reference else None

    def show(name: str, runs: list[Run]) -> float:
        wall = statistics.median(r.wall for r in runs)
        cpu = statistics.median(r.cpu for r in runs)
        sent = sum(r.sent for r in runs)
        received = sum(r.received for r in runs)
        walls = " ".join(f"{r.wall:.2f}" for r in runs)
        print(
            f"{name:8} wall {wall:6.2f} s (runs: {walls})   cpu {cpu:5.2f} s   "
            f"loss {1 - received / sent if sent else 1:.4%} ({sent - received} of {sent})"
        )
        return wall

    print(
        f"{len(targets)} loopback targets x {COUNT} echoes, {SIZE}-byte payload, "
        f"timeout {TIMEOUT_MS} ms, median of {args.rounds} alternating rounds; "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.machine()}"
    )
    print(f"fping:   {' '.join(command[:-1])} <file of targets>")
    print(
        f"confmon: IcmpEngine.ping(target, count={COUNT}, spacing={SPACING_MS / 1000}, "
        f"timeout={TIMEOUT_MS / 1000}, size={SIZE}) for every target at once (asyncio.gather)"
    )
    print(
        f"pacing:  both keep >= {SPACING_MS} ms between two echoes to one target; fping "
        "sends back to back across targets (-i 0), confmon as fast as its loop can"
    )
    fping_wall = show("fping", fping_runs)
    confmon_wall = show("confmon", confmon_runs)
    if default_run is not None:
        print(
            f"reference: {' '.join(default_command[:-1])} <file>: wall {default_run.wall:.2f} s, "
            f"cpu {default_run.cpu:.2f} s, loss {default_run.loss:.4%} "
            "(default -p 1000: the period, not the engine, sets its time; not compared)"
        )
    ratio = confmon_wall / fping_wall
    verdict = "met" if ratio <= 1.5 else "MISSED"
    print(f"ratio    confmon/fping wall = {ratio:.2f} (target <= 1.50: {verdict})")


if __name__ == "__main__":
    main()
