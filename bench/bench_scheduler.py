"""CPU of the probing process (scheduler, probes, health model) against fping, in one run.

Usage (root for ICMP; fping installed):

    .venv/bin/python bench/bench_scheduler.py                    # 450 points, full profile
    .venv/bin/python bench/bench_scheduler.py --case sip10k      # 10,000 points, icmp + sip

What is measured: one process running :class:`monitor.core.scheduler.Scheduler` with a
:class:`~monitor.probes.base.ProbeContext` and a sink that feeds every cycle into a
:class:`~monitor.core.health.HealthModel`, exactly the probing half of ``confmon run``. Its CPU
(user + system, ``time.process_time``, every thread) over ``--seconds`` after a warm-up of
one interval is divided by the wall time: that is the share of one core it used.

The points are real lab points (:class:`monitor.lab.Lab`: SIP over UDP and TCP, media
echo) on the lab plan's loopback addresses (``synthetic_inventory`` numbers hosts from
127.20.0.1), served by child processes so that the lab's CPU is not counted. One child
serves the 450 points; the 10,000-point lab needs ~21,500 descriptors and this machine's
hard ``RLIMIT_NOFILE`` may be 20,000, so ``sip10k`` splits the districts over two children
(``--lab-procs``). The kernel answers ICMP itself.

Cases:

* ``full450``: 450 points; every 5 s 5 ICMP echoes 20 ms apart and one SIP OPTIONS over
  UDP; every 30 s a 50-packet RTP stream (20 ms pacing) to the media echo. Target: at most
  5 % of one core (issue 15; it was 2 % before).
* ``sip10k``: 10,000 points, ICMP and SIP OPTIONS/UDP every 5 s. Target: at most 50 % of
  one core and no overrun.

The peer, run in the same invocation after the scheduler has stopped (never at the same
time: every raw ICMP socket receives a copy of every echo reply, so running both at once
would bill each for the other's replies): fping doing the ICMP part of the same load alone,
5 echoes to every point every 5 s, spread over the cycle (one ``fping -q -c 5 -p 20 -i GAP``
run per cycle; see :func:`fping_cycles`). Its CPU is the children's rusage
(``RUSAGE_CHILDREN``) over its wall time. The ratio printed is confmon's CPU for the
*whole* profile against fping's for ICMP alone, so it says what the SIP, media and health
work cost on top of a C pinger's floor; it is not a like-for-like engine comparison
(``bench/bench_icmp.py`` is that).

When the profile sends more datagrams than its echoes (SIP requests, media streams), a
second fping run sends as many echoes per second as the profile sends packets
(:func:`packets_per_cycle`: 14 per point per 5 s for the full profile, against 5): what a
C program pays on this machine for the same number of packets, sent and answered. Its
ratio says how much confmon costs per packet over that.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.collector import settle  # noqa: E402
from monitor.core.health import HealthModel, State  # noqa: E402
from monitor.core.scheduler import Scheduler, SchedulerStats  # noqa: E402
from monitor.inventory import Inventory, Point  # noqa: E402
from monitor.inventory.synthetic import FULL_PROFILE, synthetic_inventory  # noqa: E402
from monitor.loops import new_event_loop  # noqa: E402
from monitor.probes import icmp  # noqa: E402
from monitor.probes.base import ProbeContext, ProbeResult  # noqa: E402

ICMP_SIP: dict[str, Any] = {
    "icmp": FULL_PROFILE["icmp"],
    "sip": FULL_PROFILE["sip"],
}


@dataclass(frozen=True)
class Case:
    """One benchmark configuration."""

    name: str
    points: int
    profile: dict[str, Any]
    target_cpu: float  # share of one core
    lab_procs: int
    describe: str


CASES = {
    "full450": Case(
        "full450",
        450,
        FULL_PROFILE,
        0.05,
        1,
        "icmp 5x20ms + sip/udp every 5 s, media 50x20ms every 30 s",
    ),
    "sip10k": Case("sip10k", 10_000, ICMP_SIP, 0.50, 2, "icmp 5x20ms + sip/udp every 5 s"),
}


def build_inventory(
    points: int, profile: dict[str, Any], first_host: str = "127.20.0.1"
) -> Inventory:
    """The synthetic inventory (hosts ``first_host`` upwards), the same in parent and children."""
    return synthetic_inventory(
        points, profile=profile, monitor={"interval": "5s"}, first_host=first_host
    )


def part_of(inv: Inventory, part: int, parts: int) -> Inventory:
    """The districts ``part`` of ``parts`` (contiguous) with every point below them."""
    roots = inv.roots[part * len(inv.roots) // parts : (part + 1) * len(inv.roots) // parts]
    keep = set(roots)
    points = {pid: p for pid, p in inv.points.items() if p.district in keep}
    return dataclasses.replace(inv, points=points, roots=tuple(roots))


# --- the lab children ---------------------------------------------------------------------


async def lab_child(spec: dict[str, Any]) -> None:
    """Serve one part of the lab until stdin closes; one JSON line on stdout when ready."""
    from monitor.lab import Lab

    case = CASES[spec["case"]]
    inv = build_inventory(spec["points"], case.profile, spec["first_host"])
    inv = part_of(inv, spec["part"], spec["parts"])
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with Lab(inv, seed=1) as lab:
        print(json.dumps({"points": len(inv.points), "sockets": len(lab.endpoints)}), flush=True)
        await reader.read()  # EOF: the parent is done (or gone)
        stats = lab.stats()
    print(json.dumps(stats), flush=True)


@dataclass
class LabProcess:
    """A running lab child."""

    proc: subprocess.Popen[str]
    points: int
    sockets: int
    cpu_start: float = 0.0
    cpu_end: float = 0.0

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)


def start_labs(case: Case, points: int, parts: int, first_host: str) -> list[LabProcess]:
    """Start ``parts`` lab children (in parallel) and wait until every one listens."""
    procs = []
    for part in range(parts):
        spec = {
            "case": case.name,
            "points": points,
            "part": part,
            "parts": parts,
            "first_host": first_host,
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "--lab-child", json.dumps(spec)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    labs = []
    for proc in procs:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        if not line:
            for other in procs:
                other.kill()
            raise SystemExit(f"lab child failed:\n{proc.stderr.read()}")
        ready = json.loads(line)
        labs.append(LabProcess(proc, ready["points"], ready["sockets"]))
    return labs


def stop_labs(labs: Sequence[LabProcess]) -> list[dict[str, Any]]:
    out = []
    for lab in labs:
        assert lab.proc.stdin is not None and lab.proc.stdout is not None
        lab.proc.stdin.close()
    for lab in labs:
        assert lab.proc.stdout is not None
        try:
            out.append(json.loads(lab.proc.stdout.readline() or "{}"))
            lab.proc.wait(timeout=30)
        except (subprocess.TimeoutExpired, json.JSONDecodeError):
            lab.proc.kill()
            lab.proc.wait()
    return out


# --- measuring ----------------------------------------------------------------------------


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc (clock-tick resolution)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def context_switches(pid: int | str = "self") -> int:
    """Voluntary context switches of a process's threads: how often they blocked (woke up)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
    return total


def set_timer_slack(ms: float) -> None:
    """``prctl(PR_SET_TIMERSLACK)``: let the kernel fire this thread's timeouts up to ``ms`` late."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(29, int(ms * 1_000_000), 0, 0, 0) != 0:  # 29 = PR_SET_TIMERSLACK
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_TIMERSLACK) failed")


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    n = len(ordered)
    return {
        "n": n,
        "p50": ordered[n // 2],
        "p95": ordered[min(n - 1, int(n * 0.95))],
        "p99": ordered[min(n - 1, int(n * 0.99))],
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
    }


@dataclass
class Measure:
    """What the probing process did over the measured window."""

    seconds: float
    cpu: float
    user: float
    system: float
    stats_before: SchedulerStats
    stats_after: SchedulerStats
    cycle_seconds: list[float] = field(default_factory=list)
    media_seconds: list[float] = field(default_factory=list)
    outcomes: Counter[tuple[str, bool]] = field(default_factory=Counter)
    states: dict[str, int] = field(default_factory=dict)
    max_rss_mb: float = 0.0
    wakeups: int = 0
    #: what made points degraded at the end: "sip rtt", "icmp loss", ... -> points
    degraded_by: Counter[str] = field(default_factory=Counter)

    @property
    def share(self) -> float:
        return self.cpu / self.seconds


async def measure(
    inv: Inventory,
    warmup: float,
    seconds: float,
    labs: Sequence[LabProcess] = (),
    profile_to: str | None = None,
    settled: bool = True,
) -> Measure:
    """Run the scheduler; measure the window [warmup, warmup + seconds].

    ``settled``: tune the garbage collector once start-up is over, as ``confmon run`` and
    ``confmon agent`` do (:func:`monitor.collector.settle`); False keeps CPython's defaults.
    """
    model = HealthModel(inv, now=time.time())
    recording = False
    cycles: list[float] = []
    media: list[float] = []
    outcomes: Counter[tuple[str, bool]] = Counter()

    def sink(point: Point, results: Sequence[ProbeResult], elapsed: float) -> None:
        model.ingest(point.id, results, time.time())
        if recording:
            (media if results[0].probe == "media" else cycles).append(elapsed)
            for r in results:
                outcomes[(r.probe, r.ok)] += 1

    async with ProbeContext() as ctx:
        await icmp.engine(ctx)  # fail now, with the fix, if ICMP is not permitted
        scheduler = Scheduler(inv, ctx, sink)
        if settled:
            settle()
        task = asyncio.get_running_loop().create_task(scheduler.run())
        try:
            await asyncio.sleep(warmup)
            recording = True
            before = dataclasses.replace(scheduler.stats)
            profiler = cProfile.Profile() if profile_to else None
            if profiler is not None:
                profiler.enable()
            for lab in labs:
                lab.cpu_start = lab.cpu()
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            switches0 = context_switches()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await asyncio.sleep(seconds)
            cpu1, wall1 = time.process_time(), time.perf_counter()
            switches1 = context_switches()
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            for lab in labs:
                lab.cpu_end = lab.cpu()
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(str(profile_to))
            recording = False
            after = dataclasses.replace(scheduler.stats)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    degraded_by: Counter[str] = Counter()
    for h in model.points.values():
        if h.state == State.DEGRADED:
            worst = {r.probe: r for r in h.latest.values() if r.rtt is not None}
            slowest = max(worst.values(), key=lambda r: r.rtt or 0.0, default=None)
            for reason in h.quality_reason.split(", "):
                what = reason.split(" ", 1)[0]
                if what == "rtt" and slowest is not None:
                    what = f"{slowest.probe} rtt"
                degraded_by[what] += 1
    return Measure(
        seconds=wall1 - wall0,
        cpu=cpu1 - cpu0,
        user=r1.ru_utime - r0.ru_utime,
        system=r1.ru_stime - r0.ru_stime,
        stats_before=before,
        stats_after=after,
        cycle_seconds=cycles,
        media_seconds=media,
        outcomes=outcomes,
        states=dict(model.summary()["states"]),
        max_rss_mb=r1.ru_maxrss / 1024,
        wakeups=switches1 - switches0,
        degraded_by=degraded_by,
    )


# --- the peer -----------------------------------------------------------------------------


@dataclass
class PeerRun:
    """fping's figures over its run."""

    command: list[str]
    seconds: float
    cpu: float
    sent: int
    received: int

    @property
    def share(self) -> float:
        return self.cpu / self.seconds


def fping_gap_ms(points: int) -> float:
    """fping's ``-i`` so that one cycle (5 echoes to each of ``points``) fills ~4.5-4.8 s of 5.

    fping oversleeps short gaps (asked for 0.09 ms it averages ~0.17 ms here), so large
    target lists get a smaller figure than 4.5 s / (5 x points), found by trial on this
    machine; ``--fping-gap`` overrides it.
    """
    if points <= 1000:
        return round(900 / points, 3)
    return 0.02


def fping_cycles(
    hosts: Sequence[str], seconds: float, gap_ms: float, interval: float = 5.0, count: int = 5
) -> PeerRun:
    """The ICMP part of the load: every ``interval``, ``count`` echoes to every host, by fping.

    One ``fping -c 5`` run per cycle, started on a fixed grid (or at once if the previous
    run overran its slot), for ``seconds`` rounded up to whole cycles. Count mode rather
    than loop mode because fping's loop mode cannot sustain 10,000 echoes/s: its 65,536
    sequence numbers expire after 10 s ("not enough sequence numbers available").
    """
    fping = shutil.which("fping")
    if fping is None:
        raise SystemExit("fping is not installed (apt-get install fping)")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(hosts) + "\n")
        targets = f.name
    command = [fping, "-q", "-c", str(count), "-p", "20", "-i", f"{gap_ms:g}", "-t", "1000"]
    command += ["-b", "56", "-f", targets]
    sent = received = 0
    cycles = max(1, round(seconds / interval))
    try:
        cpu_before = children_cpu()  # RUSAGE_CHILDREN: children already waited for
        started = time.perf_counter()
        for k in range(cycles):
            time.sleep(max(0.0, started + k * interval - time.perf_counter()))
            proc = subprocess.run(command, capture_output=True, text=True, check=False)
            for line in (proc.stdout + proc.stderr).splitlines():
                if "xmt/rcv/%loss" in line:
                    xmt, rcv = line.split("=", 1)[1].split("/")[:2]
                    sent, received = sent + int(xmt), received + int(rcv)
        time.sleep(max(0.0, started + cycles * interval - time.perf_counter()))
        wall = time.perf_counter() - started
        cpu = children_cpu() - cpu_before
    finally:
        os.unlink(targets)
    shown = [*command[:-2], "-f", "<targets file>", f"(once every {interval:g} s)"]
    return PeerRun(shown, wall, cpu, sent, received)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- report -------------------------------------------------------------------------------


def loadavg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def packets_per_cycle(inv: Inventory) -> float:
    """Datagrams one point's profile sends per monitor interval (first transmissions only).

    ICMP: its echoes; SIP over UDP: one request; media: its stream, spread over the
    intervals of its period. The other probes (TCP, HTTP) are connections, not counted.
    """
    profile = next(iter(inv.profiles.values()))
    interval = inv.settings.interval
    total = 0.0
    if profile.icmp is not None:
        total += profile.icmp.count
    if profile.sip is not None and profile.sip.transport == "udp":
        total += 1
    if profile.media is not None:
        total += profile.media.packets * interval / profile.media.every
    return total


def report(
    case: Case,
    m: Measure,
    peer: PeerRun,
    labs: Sequence[LabProcess],
    same_packets: PeerRun | None = None,
) -> None:
    stats0, stats1 = m.stats_before, m.stats_after
    cycles = stats1.cycles - stats0.cycles
    overruns = stats1.overruns - stats0.overruns
    ok = {p: m.outcomes[(p, True)] for p, _ in m.outcomes}
    total = Counter[str]()
    for (p, _), n in m.outcomes.items():
        total[p] += n
    lab_cpu = sum(lab.cpu_end - lab.cpu_start for lab in labs)
    print(f"case {case.name}: {case.points} points, {case.describe}")
    print(
        f"confmon (Scheduler + ProbeContext + HealthModel), {m.seconds:.1f} s after warm-up: "
        f"CPU {m.cpu:.2f} s (user {m.user:.2f}, sys {m.system:.2f}) = "
        f"{m.share * 100:.2f} % of one core; max RSS {m.max_rss_mb:.0f} MB"
    )
    print(
        f"  scheduler: {cycles} cycles in the window ({cycles / m.seconds:.1f}/s), "
        f"overruns {overruns} in the window ({stats1.overruns} since start), "
        f"max dispatcher lag {stats1.max_lag_seconds * 1000:.1f} ms"
    )
    print(
        f"  wake-ups (voluntary context switches): {m.wakeups / m.seconds:.0f}/s, "
        f"{m.cpu / max(1, m.wakeups) * 1e6:.0f} us of CPU per wake-up"
    )
    print("  probes ok/run: " + ", ".join(f"{p} {ok.get(p, 0)}/{n}" for p, n in total.items()))
    for name, values in (("icmp+sip cycle", m.cycle_seconds), ("media stream", m.media_seconds)):
        pc = percentiles(values)
        if pc["n"]:
            print(
                f"  {name} duration: n={pc['n']:.0f} p50 {pc['p50'] * 1000:.1f} ms, "
                f"p95 {pc['p95'] * 1000:.1f} ms, p99 {pc['p99'] * 1000:.1f} ms, "
                f"max {pc['max'] * 1000:.1f} ms"
            )
    print(f"  health at the end: {m.states}")
    if m.degraded_by:
        print(f"  degraded because of: {dict(m.degraded_by.most_common())}")
    print(
        f"  (lab children, not counted: {lab_cpu / m.seconds * 100:.1f} % of one core "
        f"over the window, {sum(lab.points for lab in labs)} points in {len(labs)} processes)"
    )
    print(
        f"peer fping (ICMP only, 5 echoes per point per 5 s): {peer.seconds:.1f} s, "
        f"CPU {peer.cpu:.2f} s = {peer.share * 100:.2f} % of one core; "
        f"{peer.received}/{peer.sent} replies ({peer.sent / peer.seconds:.0f} echoes/s)"
    )
    print(f"  command: {' '.join(peer.command)}")
    if same_packets is not None:
        print(
            f"peer fping sending as many echoes as the profile sends packets: "
            f"{same_packets.sent / same_packets.seconds:.0f} echoes/s, CPU {same_packets.cpu:.2f} s"
            f" = {same_packets.share * 100:.2f} % of one core; {same_packets.received}/"
            f"{same_packets.sent} replies; confmon / this peer: {m.share / same_packets.share:.2f}x"
        )
        print(f"  command: {' '.join(same_packets.command)}")
    verdict = "met" if m.share <= case.target_cpu else "MISSED"
    if case.name == "sip10k" and overruns:
        verdict = "MISSED (overruns)"
    print(
        f"ratio confmon (full load) / fping (ICMP only) CPU: {m.share / peer.share:.1f}x; "
        f"target <= {case.target_cpu * 100:g} % of one core: {verdict}"
        + (
            f" (by {m.share / case.target_cpu:.2f}x)"
            if m.share > case.target_cpu
            else f" ({m.share / case.target_cpu * 100:.0f} % of the budget)"
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), default="full450")
    parser.add_argument("--points", type=int, help="override the case's number of points")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window (60)")
    parser.add_argument("--warmup", type=float, default=5.0, help="before the window (5)")
    parser.add_argument("--peer-seconds", type=float, default=30.0, help="how long fping runs (30)")
    parser.add_argument(
        "--only", metavar="PROBES", help="run only these probes of the profile, e.g. icmp,sip"
    )
    parser.add_argument("--fping-gap", type=float, metavar="MS", help="fping -i (see the code)")
    parser.add_argument("--lab-procs", type=int, help="lab child processes (case default)")
    parser.add_argument("--cprofile", metavar="FILE", help="cProfile the window (slows it)")
    parser.add_argument(
        "--gc-defaults",
        action="store_true",
        help="keep CPython's collector settings (confmon run tunes them: monitor/collector.py)",
    )
    parser.add_argument(
        "--timer-slack",
        type=float,
        metavar="MS",
        help="experiment: prctl(PR_SET_TIMERSLACK) for the probing process",
    )
    parser.add_argument(
        "--loop",
        choices=("default", "asyncio", "uvloop"),
        default="default",
        help="event loop of the probing process (default: what confmon run picks)",
    )
    parser.add_argument(
        "--first-host",
        default="127.20.0.1",
        help="first loopback address of the lab points (another block beside a running lab)",
    )
    parser.add_argument("--lab-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lab_child:
        asyncio.run(lab_child(json.loads(args.lab_child)))
        return

    case = CASES[args.case]
    points = args.points or case.points
    case = dataclasses.replace(case, points=points)
    print(
        f"{datetime.datetime.now().isoformat(timespec='seconds')} {platform.node()} "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {loadavg()}, RLIMIT_NOFILE {resource.getrlimit(resource.RLIMIT_NOFILE)}"
    )
    started = time.perf_counter()
    inv = build_inventory(points, case.profile, args.first_host)
    if args.only:
        only = set(args.only.split(","))
        inv = inv.without_probes(set(case.profile) - only)
        case = dataclasses.replace(case, describe=f"{case.describe}, ONLY {args.only}")
    labs = start_labs(case, points, args.lab_procs or case.lab_procs, args.first_host)
    print(
        f"lab ready in {time.perf_counter() - started:.1f} s: "
        + ", ".join(f"{lab.points} points/{lab.sockets} sockets" for lab in labs)
    )
    if args.timer_slack is not None:
        set_timer_slack(args.timer_slack)
        case = dataclasses.replace(
            case, describe=f"{case.describe}, timer slack {args.timer_slack:g} ms"
        )
    try:
        with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
            loop_name = type(runner.get_loop()).__module__
            collector = "CPython's defaults" if args.gc_defaults else "settled as confmon run does"
            case = dataclasses.replace(
                case, describe=f"{case.describe}, loop {loop_name}, collector {collector}"
            )
            m = runner.run(
                measure(inv, args.warmup, args.seconds, labs, args.cprofile, not args.gc_defaults)
            )
        gap = args.fping_gap or fping_gap_ms(points)
        hosts = [p.host for p in inv.points.values()]
        peer = fping_cycles(hosts, args.peer_seconds, gap)
        # a profile sending more than its echoes (SIP, media) also gets a peer sending as
        # many packets: what a C program pays on this machine for the same traffic
        count = round(packets_per_cycle(inv))
        same = None
        if count > 5:
            same = fping_cycles(hosts, args.peer_seconds, gap * 5 / count, count=count)
        report(case, m, peer, labs, same)
        print(f"load average at the end {loadavg()}")
    finally:
        stop_labs(labs)


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "asyncio":
        return asyncio.new_event_loop
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return new_event_loop


if __name__ == "__main__":
    main()
