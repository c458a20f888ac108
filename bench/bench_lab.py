"""Benchmark: how fast the lab starts, how much memory and CPU it costs, at thousands of points.

Two measurements, each child run in its own process so RSS figures are its own:

1. **The full lab** (SIP over UDP and TCP, media echo, and an HTTP status page on
   one point in 20) at ``--points`` points: seconds to start, RSS, descriptors,
   CPU while idle, round trips of a sample, seconds to stop. 10,000 points need
   about 32,000 descriptors; where the hard ``RLIMIT_NOFILE`` is lower and
   cannot be raised, the lab's own one-line error is printed and the largest
   size that fits is measured instead.
2. **The peer**: 10,000 HTTP status pages served by the lab's minimal responder
   against the same pages served by aiohttp.web (one AppRunner, one TCPSite per
   address, the handler finding the point from the local address): start time,
   Python heap allocated by the start (tracemalloc, in a second run: RSS deltas
   are blurred by memory the inventory parse freed), RSS, and requests per
   second on fresh connections. The ratios are printed.

Run: ``.venv/bin/python bench/bench_lab.py`` (about a minute on two cores).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import socket
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.errors import ConfmonError  # noqa: E402
from monitor.inventory import Inventory, parse_inventory  # noqa: E402
from monitor.lab import Lab, lab_inventory  # noqa: E402
from monitor.lab.lab import FD_RESERVE  # noqa: E402

SIP, MEDIA, HTTP = 45060, 47078, 48080


def inventory(points: int, *, http_every: int = 20, http_only: bool = False) -> Inventory:
    """Districts with an HTTP status page and ``http_every - 1`` communes each, mapped to the lab."""
    if http_only:
        profiles = [f"  hq: {{http: {{port: {HTTP}, path: /status}}}}", "  room: {http: {port: 1}}"]
    else:
        profiles = [
            f"  hq: {{sip: {{port: {SIP}}}, media: {{port: {MEDIA}}}, "
            f"http: {{port: {HTTP}, path: /status}}}}",
            f"  room: {{sip: {{port: {SIP}}}, media: {{port: {MEDIA}}}}}",
        ]
    lines = ["profiles:", *profiles, "points:"]
    if http_only:
        lines += [f"  - {{id: p{i}, name: P, host: 10.0.0.1, profile: hq}}" for i in range(points)]
    else:
        made = district = 0
        while made < points:
            children = min(http_every - 1, points - made - 1)
            kids = ", ".join(
                f"{{id: d{district}.c{c}, name: 'Xã {c}', host: 10.0.0.1, profile: room}}"
                for c in range(children)
            )
            lines.append(
                f"  - {{id: d{district}, name: 'Quận {district}', host: 10.0.0.1, profile: hq, "
                f"points: [{kids}]}}"
            )
            made += 1 + children
            district += 1
    return lab_inventory(parse_inventory("\n".join(lines) + "\n"))


def rss_mb() -> float:
    gc.collect()  # so garbage of the inventory parse does not blur the lab's own figure
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def idle_cpu(seconds: float) -> float:
    before = cpu_seconds()
    await asyncio.sleep(seconds)
    return cpu_seconds() - before


async def sample_round_trips(inv: Inventory, count: int) -> list[float]:
    """SIP OPTIONS over UDP then a media echo to ``count`` random points; the RTTs."""
    loop = asyncio.get_running_loop()
    rtts = []
    points = random.Random(1).sample(list(inv.points.values()), count)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        for p in points:
            options = (
                f"OPTIONS sip:{p.host} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{p.id}\r\n"
                f"From: <sip:bench@127.0.0.1>;tag=1\r\nTo: <sip:{p.host}>\r\nCall-ID: {p.id}\r\n"
                "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            for data, target in ((options, (p.host, SIP)), (b"x" * 172, (p.host, MEDIA))):
                started = time.perf_counter()
                await loop.sock_sendto(sock, data, target)
                async with asyncio.timeout(2):
                    await loop.sock_recv(sock, 4096)
                rtts.append(time.perf_counter() - started)
    return rtts


async def child_lab(points: int, trace: bool) -> dict[str, Any]:
    started = time.perf_counter()
    inv = inventory(points)
    parse = time.perf_counter() - started
    rss0, fds0 = rss_mb(), len(os.listdir("/proc/self/fd"))
    if trace:
        tracemalloc.start()
    lab = Lab(inv, seed=1)
    started = time.perf_counter()
    try:
        await lab.start()
    except ConfmonError as exc:
        return {"error": str(exc)}
    start = time.perf_counter() - started
    if trace:
        heap = tracemalloc.get_traced_memory()[0]
        await lab.stop()
        return {"heap_mb": heap / 2**20}
    out = {
        "points": points,
        "sockets": len(lab.endpoints),
        "parse_s": parse,
        "start_s": start,
        "rss_before_mb": rss0,
        "rss_total_mb": rss_mb(),
        "fds": len(os.listdir("/proc/self/fd")) - fds0,
        "idle_cpu_s_per_s": await idle_cpu(3.0) / 3.0,
    }
    rtts = sorted(await sample_round_trips(inv, 200))
    out["sample_rtt_p50_ms"] = rtts[len(rtts) // 2] * 1000
    out["sample_rtt_p99_ms"] = rtts[int(len(rtts) * 0.99)] * 1000
    started = time.perf_counter()
    await lab.stop()
    out["stop_s"] = time.perf_counter() - started
    out["fds_after_stop"] = len(os.listdir("/proc/self/fd")) - fds0
    return out


async def http_rate(hosts: list[str], requests: int) -> float:
    """Requests per second, one fresh connection each, 20 at a time, to random status pages."""
    rng = random.Random(2)
    request = b"GET /status HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n"

    async def one() -> None:
        reader, writer = await asyncio.open_connection(rng.choice(hosts), HTTP)
        writer.write(request)
        body = await reader.read()
        assert body.startswith(b"HTTP/1.1 200"), body[:40]
        writer.close()
        await writer.wait_closed()

    started = time.perf_counter()
    for _ in range(requests // 20):
        await asyncio.gather(*(one() for _ in range(20)))
    return requests / (time.perf_counter() - started)


async def child_http_lab(sites: int, trace: bool) -> dict[str, Any]:
    inv = inventory(sites, http_only=True)
    rss0 = rss_mb()
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    async with Lab(inv) as _lab:
        start = time.perf_counter() - started
        if trace:
            return {"heap_mb": tracemalloc.get_traced_memory()[0] / 2**20}
        rss = rss_mb() - rss0
        rate = await http_rate([p.host for p in inv.points.values()], 2000)
    return {"start_s": start, "rss_before_mb": rss0, "rss_total_mb": rss + rss0, "req_per_s": rate}


async def child_http_aiohttp(sites: int, trace: bool) -> dict[str, Any]:
    from aiohttp import web

    inv = inventory(sites, http_only=True)
    by_host = {p.host: p for p in inv.points.values()}

    async def status(request: web.Request) -> web.Response:
        point = by_host[request.transport.get_extra_info("sockname")[0]]  # type: ignore[union-attr]
        return web.json_response({"point": point.id, "name": point.name, "status": "ok"})

    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)[1:] * 2)
    rss0 = rss_mb()
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    app = web.Application()
    app.router.add_get("/status", status)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    for host in by_host:
        await web.TCPSite(runner, host, HTTP).start()
    start = time.perf_counter() - started
    if trace:
        heap = tracemalloc.get_traced_memory()[0]
        await runner.cleanup()
        return {"heap_mb": heap / 2**20}
    rss = rss_mb() - rss0
    try:
        rate = await http_rate(list(by_host), 2000)
    finally:
        await runner.cleanup()
    return {"start_s": start, "rss_before_mb": rss0, "rss_total_mb": rss + rss0, "req_per_s": rate}


def run_child(mode: str, size: int, trace: bool = False) -> dict[str, Any]:
    """Run one measurement in a fresh process; ``trace`` measures the Python heap instead."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(size), *(["trace"] if trace else [])],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"bench child {mode} {size} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def largest_fitting(points: int) -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    budget = hard - FD_RESERVE - 1024 - 64  # connection cap, reserve, what is open already
    per_point = (3 * 20 + 1) / 20  # sip udp + sip tcp + media, http on one point in 20
    return min(points, int(budget / per_point) // 100 * 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--http-sites", type=int, default=10_000)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, size = args.child[0], int(args.child[1])
        func = {"lab": child_lab, "http-lab": child_http_lab, "http-aiohttp": child_http_aiohttp}
        print(json.dumps(asyncio.run(func[mode](size, args.child[2:] == ["trace"]))))
        return

    print(f"RLIMIT_NOFILE soft/hard: {resource.getrlimit(resource.RLIMIT_NOFILE)}")
    full = run_child("lab", args.points)
    if "error" in full:
        print(f"{args.points} points: {full['error']}")
        fitting = largest_fitting(args.points)
        print(f"measuring the largest size that fits instead: {fitting} points")
        full = run_child("lab", fitting)
    full.update(run_child("lab", full["points"], trace=True))
    print(
        f"full lab, {full['points']} points, {full['sockets']} sockets: "
        f"parse {full['parse_s']:.2f} s, start {full['start_s']:.2f} s, "
        f"RSS {full['rss_total_mb']:.0f} MB ({full['rss_before_mb']:.0f} MB before start), "
        f"Python heap +{full['heap_mb']:.1f} MB ({full['heap_mb'] * 2**20 / full['points']:.0f} B/point), "
        f"{full['fds']} fds, idle CPU {full['idle_cpu_s_per_s'] * 100:.2f} %, "
        f"sample RTT p50 {full['sample_rtt_p50_ms']:.2f} ms p99 {full['sample_rtt_p99_ms']:.2f} ms, "
        f"stop {full['stop_s']:.2f} s, fds left after stop {full['fds_after_stop']}"
    )
    ours = run_child("http-lab", args.http_sites)
    ours.update(run_child("http-lab", args.http_sites, trace=True))
    peer = run_child("http-aiohttp", args.http_sites)
    peer.update(run_child("http-aiohttp", args.http_sites, trace=True))
    for name, r in (("lab responder", ours), ("aiohttp.web", peer)):
        print(
            f"{args.http_sites} HTTP status pages, {name:<13}: start {r['start_s']:.2f} s, "
            f"Python heap +{r['heap_mb']:.1f} MB, RSS {r['rss_total_mb']:.0f} MB, "
            f"{r['req_per_s']:.0f} req/s (fresh connections)"
        )
    print(
        f"ratio lab/aiohttp: start {ours['start_s'] / peer['start_s']:.2f}x, "
        f"heap {ours['heap_mb'] / peer['heap_mb']:.2f}x, "
        f"req/s {ours['req_per_s'] / peer['req_per_s']:.2f}x"
    )


if __name__ == "__main__":
    main()
