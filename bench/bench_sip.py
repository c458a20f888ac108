"""Benchmark: 10,000 SIP OPTIONS in 5 s through confmon's SIP engine, against SIPp doing the same.

Usage (Kamailio and SIPp installed: Debian packages kamailio and sip-tester):

    .venv/bin/python bench/bench_sip.py                 # 10,000 OPTIONS over 5 s, each target
    .venv/bin/python bench/bench_sip.py --count 20000 --seconds 5

For each target, two senders run one after the other (never together, so neither pays
for the other's packets), each sending ``--count`` OPTIONS over UDP spread evenly over
``--seconds`` and waiting for every answer:

* **confmon**: ``monitor.probes.sip.probe`` for each request, on the event loop confmon's
  probing thread uses (:mod:`monitor.loops`), all through one ProbeContext, so through
  one shared socket (:class:`monitor.probes.sip.SipEngine`). Its CPU is this process's
  (``time.process_time``, user + system) over the run.
* **the peer, SIPp** (a C++ SIP traffic generator): the same rate with an OPTIONS
  scenario (:data:`SCENARIO`, 500 ms retransmission like RFC 3261's T1), ``-r`` calls per
  second, ``-m`` calls in all. Its CPU is the child's rusage.

Targets: **Kamailio** (started here on a free port of 127.0.0.1 with tests/kamailio.py's
config, answering OPTIONS statelessly with 200), and **the lab** (one lab SIP endpoint,
served by a child process, so its CPU is not ours). A third row sends confmon's count to
450 lab points at once (as a 450-room inventory does), which SIPp cannot do (one remote
address per run). The ratio printed is confmon's CPU over SIPp's.
"""

from __future__ import annotations

import argparse
import asyncio
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
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.collector import settle  # noqa: E402
from monitor.inventory.model import SipSettings  # noqa: E402
from monitor.loops import loop_name, new_event_loop  # noqa: E402
from monitor.probes.base import ProbeContext  # noqa: E402
from monitor.probes.sip import probe  # noqa: E402
from tests.kamailio import running_kamailio  # noqa: E402

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="confmon bench: OPTIONS keepalive">
  <send retrans="500">
    <![CDATA[
      OPTIONS sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: <sip:sipp@[local_ip]>;tag=[call_number]
      To: <sip:[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 OPTIONS
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Accept: application/sdp
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
"""

LAB_CHILD = """
import asyncio, json, sys
from monitor.inventory.synthetic import synthetic_inventory
from monitor.lab import Lab

async def main() -> None:
    inv = synthetic_inventory(int(sys.argv[1]), first_host=sys.argv[2],
                              profile={"sip": {"transport": "udp", "port": 5060, "timeout": "1s"}})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with Lab(inv, seed=1):
        print(json.dumps([p.host for p in inv.points.values()]), flush=True)
        await reader.read()

asyncio.run(main())
"""


@dataclass
class Run:
    who: str
    target: str
    sent: int
    answered: int
    wall: float
    cpu: float
    rtts: list[float]

    def line(self) -> str:
        share = 100 * self.cpu / self.wall
        rtt = ""
        if self.rtts:
            q = statistics.quantiles(self.rtts, n=100)
            rtt = f", rtt p50 {1000 * q[49]:.2f} ms p95 {1000 * q[94]:.2f} ms"
        return (
            f"  {self.who:<8} {self.target:<24} {self.answered}/{self.sent} answered in "
            f"{self.wall:.2f} s, CPU {self.cpu:.2f} s = {share:.1f} % of one core, "
            f"{1e6 * self.cpu / max(1, self.sent):.0f} us per request{rtt}"
        )


async def confmon_run(who: str, hosts: list[str], port: int, count: int, seconds: float) -> Run:
    loop = asyncio.get_running_loop()
    settings = SipSettings.model_validate({"port": port, "timeout": "2s"})
    results: list[asyncio.Task[object]] = []
    async with ProbeContext() as ctx:
        cpu0, t0 = time.process_time(), loop.time()
        start = t0 + 0.05
        for i in range(count):
            due = start + i * seconds / count
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            results.append(asyncio.ensure_future(probe(hosts[i % len(hosts)], settings, ctx)))
        done = [await r for r in results]
        wall, cpu = loop.time() - t0, time.process_time() - cpu0
    ok = [r for r in done if r.ok]  # type: ignore[attr-defined]
    target = hosts[0] if len(hosts) == 1 else f"{len(hosts)} lab points"
    return Run(who, f"{target}:{port}", count, len(ok), wall, cpu, [r.rtt for r in ok if r.rtt])  # type: ignore[attr-defined]


def sipp_run(host: str, port: int, count: int, seconds: float, workdir: Path) -> Run:
    sipp = shutil.which("sipp")
    if sipp is None:
        raise SystemExit("sipp not found (Debian package sip-tester)")
    scenario = workdir / "options.xml"
    scenario.write_text(SCENARIO)
    rate = max(1, round(count / seconds))
    stats = workdir / "sipp-stats.csv"
    stats.unlink(missing_ok=True)
    command = [
        sipp, f"{host}:{port}", "-sf", str(scenario), "-i", "127.0.0.1", "-p", "0",
        "-r", str(rate), "-rp", "1000", "-m", str(count), "-l", str(count),
        "-timeout", "60s", "-nostdin", "-trace_stat", "-stf", str(stats), "-fd", "1",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=workdir)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    answered = _sipp_successes(stats)
    if answered is None:
        raise SystemExit(
            f"sipp gave no statistics (exit {done.returncode}):\n{done.stderr[-2000:]}"
        )
    return Run("sipp", f"{host}:{port}", count, answered, wall, cpu, [])


def _sipp_successes(stats: Path) -> int | None:
    if not stats.exists():
        return None
    rows = [ln.split(";") for ln in stats.read_text().splitlines() if ln.strip()]
    if len(rows) < 2:
        return None
    header = rows[0]
    return int(rows[-1][header.index("SuccessfulCall(C)")])


def lab(points: int, first_host: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(LAB_CHILD), str(points), first_host],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"lab child failed:\n{proc.stderr.read()}")
    return proc, json.loads(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="OPTIONS per run (10,000)")
    parser.add_argument("--seconds", type=float, default=5.0, help="spread over (5 s)")
    parser.add_argument("--first-host", default="127.62.0.1", help="first lab address")
    parser.add_argument(
        "--gc-defaults",
        action="store_true",
        help="keep CPython's collector settings (confmon run tunes them: monitor/collector.py)",
    )
    args = parser.parse_args()
    loop = new_event_loop()
    if not args.gc_defaults:
        settle()  # as confmon run and confmon agent do once start-up is over
    print(
        f"{datetime.datetime.now().isoformat(timespec='seconds')} {platform.node()} "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, confmon's loop "
        f"{loop_name(loop)}, collector "
        f"{'defaults' if args.gc_defaults else 'settled as confmon run does'}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(f"{args.count} OPTIONS over UDP in {args.seconds:g} s per run, every answer awaited")
    rows: list[tuple[Run, Run]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with running_kamailio(work) as k:
            ours = loop.run_until_complete(
                confmon_run("confmon", [k.host], k.port, args.count, args.seconds)
            )
            rows.append((ours, sipp_run(k.host, k.port, args.count, args.seconds, work)))
        proc, hosts = lab(450, args.first_host)
        try:
            ours = loop.run_until_complete(
                confmon_run("confmon", hosts[:1], 5060, args.count, args.seconds)
            )
            rows.append((ours, sipp_run(hosts[0], 5060, args.count, args.seconds, work)))
            spread = loop.run_until_complete(
                confmon_run("confmon", hosts, 5060, args.count, args.seconds)
            )
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=30)
    loop.close()
    for ours, peer in rows:
        print(ours.line())
        print(peer.line())
        print(f"  ratio confmon / sipp CPU: {ours.cpu / peer.cpu:.2f}")
    print(spread.line())
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
