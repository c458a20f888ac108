"""Roll-call of the 450 Hanoi points against the lab, against fping on the same hosts.

    .venv/bin/python bench/bench_rollcall.py [--rounds 3]

confmon: one full readiness pass (icmp + sip + media + http for the headquarters,
exactly `confmon rollcall`), the lab answering from a separate process. Peer, in the
same run: fping sending the ICMP part alone (5 echoes per host, 20 ms apart) to the
same 450 loopback addresses. Target: the pass completes in ≤ 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv4Address
from pathlib import Path

from monitor.commands.rollcall import rollcall
from monitor.inventory import load_inventory
from monitor.inventory.writer import to_yaml
from monitor.lab.addresses import lab_inventory
from monitor.probes.base import ProbeContext

ROOT = Path(__file__).resolve().parent.parent
BASE = IPv4Address("127.50.0.1")  # away from a demo's 127.20.x block


async def one_pass(inv_path: Path) -> tuple[float, int]:
    inv = load_inventory(inv_path)
    async with ProbeContext() as ctx:
        model, _, elapsed = await rollcall(inv, ctx)
    return elapsed, model.counts["up"] + model.counts["degraded"]


def fping(hosts: list[str]) -> float:
    binary = shutil.which("fping")
    if binary is None:
        raise SystemExit("fping is not installed (apt-get install fping)")
    start = time.monotonic()
    subprocess.run(
        [binary, "-q", "-c", "5", "-p", "20", "-i", "1", "-t", "1000"],
        input="\n".join(hosts),
        text=True,
        capture_output=True,
        check=False,
        timeout=60,
    )
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    inv = lab_inventory(load_inventory(ROOT / "configs" / "hanoi.yaml"), BASE)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lab.yaml"
        path.write_text(to_yaml(inv), encoding="utf-8")
        lab = subprocess.Popen(
            [sys.executable, "-m", "monitor", "lab", "-c", str(path), "--control-port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert lab.stdout is not None
            lab.stdout.readline()  # the summary's first line: listening
            time.sleep(1.0)
            ours, peer, ready = [], [], 0
            for _ in range(args.rounds):
                elapsed, ready = asyncio.run(one_pass(path))
                ours.append(elapsed)
                peer.append(fping([p.host for p in inv.points.values()]))
        finally:
            lab.terminate()
            lab.wait(10)
    o, p = statistics.median(ours), statistics.median(peer)
    print(
        f"rollcall, 450 points, full profile: {o:.2f} s (median of {args.rounds}; {ready}/450 ready)"
    )
    print(f"fping, ICMP only, same hosts:       {p:.2f} s")
    print(
        f"ratio confmon/fping: {o / p:.2f}   target: pass <= 5 s: {'met' if o <= 5 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
