"""``confmon run`` on the 450 Hanoi points of the lab: CPU and memory of the process, vs fping.

Usage: ``.venv/bin/python bench/bench_run.py [--seconds 60]`` (root, for ICMP; fping
installed). About 1 min 40 s with the defaults.

What runs, each in its own process, exactly as an operator would start them:

1. the lab: ``python -m monitor lab -c configs/hanoi.yaml --write-inventory TMP/lab.yaml
   --control-port 0`` (the 450 points on 127.20.0.1 upwards; the 30 district headquarters
   also serve their HTTP status page);
2. the monitor: ``python -m monitor run -c TMP/lab.yaml --listen 127.0.0.1:PORT
   --state-db TMP/events.sqlite3``: scheduler, probes (ICMP, SIP/UDP, media every 30 s,
   HTTP on the districts), health model, event log, ``/metrics`` and the API;
3. as Prometheus would, ``GET /metrics`` every ``--scrape`` seconds (15).

Once ``/readyz`` answers, a warm-up of one interval (5 s), then the window of
``--seconds``: the run process's CPU is utime + stime from ``/proc/PID/stat`` (every
thread) at both ends, divided by the window's wall time; RSS is ``VmRSS`` sampled every
second (the largest and the last are printed) and ``VmHWM`` at the end. Scheduler figures
come from ``/api/v1/status``. Targets: at most 3 % of one core and 120 MB RSS.

The peer, once the monitor has stopped: fping doing the ICMP part of the load alone (5
echoes to each of the same 450 addresses every 5 s, one ``fping -c 5`` run per cycle) for
``--peer-seconds``; see ``bench/bench_scheduler.py``, which shares it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_scheduler import context_switches, fping_cycles, fping_gap_ms, loadavg, proc_cpu  # noqa: E402

from monitor.inventory import load_inventory  # noqa: E402

TARGET_CPU = 0.03
TARGET_RSS_MB = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float) -> list[str]:
    """Lines of ``proc``'s stdout up to the first containing ``text``; exits if it dies first.

    A thread reads the pipe: ``select`` on a buffered text stream misses lines already
    read into its buffer.
    """
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    stdout = proc.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0 and proc.poll() is None:
        try:
            line = lines.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue
        seen.append(line.rstrip("\n"))
        if text in line:
            return seen
    proc.kill()
    stderr = proc.stderr.read() if proc.stderr is not None else ""
    raise SystemExit(f"{proc.args!r} did not print {text!r}:\n" + "\n".join(seen) + stderr)


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def wait_ready(base: str, proc: subprocess.Popen[str], timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            stderr = proc.stderr.read() if proc.stderr is not None else ""
            raise SystemExit(f"confmon run exited with {proc.returncode}:\n{stderr}")
        try:
            if get(f"{base}/readyz", 1.0)[0] == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"confmon run was not ready within {timeout:g} s")


def status_kb(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return float(line.split()[1])
    return 0.0


def scheduler_status(base: str) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(get(f"{base}/api/v1/status")[1])
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default=str(ROOT / "configs" / "hanoi.yaml"))
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window (60)")
    parser.add_argument("--warmup", type=float, default=5.0, help="after /readyz (5)")
    parser.add_argument("--scrape", type=float, default=15.0, help="GET /metrics period (15)")
    parser.add_argument("--peer-seconds", type=float, default=30.0, help="how long fping runs (30)")
    args = parser.parse_args()
    print(
        f"{datetime.datetime.now().isoformat(timespec='seconds')} {platform.node()} "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load average {loadavg()}"
    )
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="confmon-bench-run-") as tmp:
        lab_yaml = Path(tmp) / "lab.yaml"
        lab_cmd = [python, "-m", "monitor", "lab", "-c", args.config]
        lab_cmd += ["--write-inventory", str(lab_yaml), "--control-port", "0"]
        lab = subprocess.Popen(
            lab_cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            print(wait_for_line(lab, "ready in", 120)[-1].strip())
            hosts = [p.host for p in load_inventory(lab_yaml).points.values()]
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            run_cmd = [python, "-m", "monitor", "run", "-c", str(lab_yaml)]
            run_cmd += ["--listen", f"127.0.0.1:{port}", "--state-db", f"{tmp}/events.sqlite3"]
            shown = " ".join(["confmon", *run_cmd[3:]]).replace(tmp, "TMP")
            print(f"monitor: {shown}")
            started = time.monotonic()
            run = subprocess.Popen(
                run_cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
            try:
                ready = wait_ready(base, run, 60)
                print(
                    f"ready {ready:.1f} s after start, CPU so far {proc_cpu(run.pid):.2f} s, "
                    f"RSS {status_kb(run.pid, 'VmRSS') / 1024:.0f} MB"
                )
                time.sleep(args.warmup)
                before = scheduler_status(base)
                cpu0, switches0 = proc_cpu(run.pid), context_switches(run.pid)
                t0 = time.perf_counter()
                rss: list[float] = []
                scrapes: list[float] = []
                next_scrape = t0
                while (now := time.perf_counter()) < t0 + args.seconds:
                    if args.scrape > 0 and now >= next_scrape:
                        s0 = time.perf_counter()
                        code, body = get(f"{base}/metrics")
                        assert code == 200 and b"confmon_point_up" in body, code
                        scrapes.append(time.perf_counter() - s0)
                        next_scrape += args.scrape
                    rss.append(status_kb(run.pid, "VmRSS") / 1024)
                    time.sleep(min(1.0, max(0.0, t0 + args.seconds - time.perf_counter())))
                cpu1, switches1 = proc_cpu(run.pid), context_switches(run.pid)
                wall = time.perf_counter() - t0
                after = scheduler_status(base)
                hwm = status_kb(run.pid, "VmHWM") / 1024
                threads = len(os.listdir(f"/proc/{run.pid}/task"))
                alive = time.monotonic() - started
            finally:
                run.send_signal(signal.SIGTERM)
                stop0 = time.monotonic()
                code = run.wait(timeout=60)
                stopped = time.monotonic() - stop0
            peer = fping_cycles(hosts, args.peer_seconds, fping_gap_ms(len(hosts)))
        finally:
            lab.send_signal(signal.SIGTERM)
            lab.wait(timeout=60)

    share = (cpu1 - cpu0) / wall
    sched0, sched1 = before["scheduler"], after["scheduler"]
    print(
        f"confmon run, {len(hosts)} lab points of {Path(args.config).name}, "
        f"{wall:.1f} s after warm-up: CPU {cpu1 - cpu0:.2f} s = {share * 100:.2f} % of one core "
        f"({cpu1:.2f} s in the {alive:.0f} s since the start, start-up included)"
    )
    print(
        f"  RSS: max {max(rss):.1f} MB, last {rss[-1]:.1f} MB, VmHWM {hwm:.1f} MB; "
        f"{threads} threads; wake-ups {(switches1 - switches0) / wall:.0f}/s"
    )
    print(
        f"  scheduler in the window: {sched1['cycles'] - sched0['cycles']} cycles, "
        f"{sched1['probes'] - sched0['probes']} probes, "
        f"overruns {sched1['overruns'] - sched0['overruns']} ({sched1['overruns']} since start)"
    )
    print(
        f"  states at the end: {after['states']}, readiness {after['readiness'] * 100:.1f} %; "
        f"/metrics scraped {len(scrapes)}x, {max(scrapes, default=0) * 1000:.0f} ms at most; "
        f"SIGTERM to exit {stopped:.2f} s (exit code {code})"
    )
    print(
        f"peer fping (ICMP only, 5 echoes per point per 5 s): {peer.seconds:.1f} s, "
        f"CPU {peer.cpu:.2f} s = {peer.share * 100:.2f} % of one core; "
        f"{peer.received}/{peer.sent} replies ({peer.sent / peer.seconds:.0f} echoes/s)"
    )
    print(f"  command: {' '.join(peer.command)}")
    cpu_ok = "met" if share <= TARGET_CPU else f"MISSED (by {share / TARGET_CPU:.2f}x)"
    rss_ok = "met" if max([*rss, hwm]) <= TARGET_RSS_MB else "MISSED"
    print(
        f"ratio confmon run (full load) / fping (ICMP only) CPU: {share / peer.share:.1f}x; "
        f"target CPU <= {TARGET_CPU * 100:g} % of one core: {cpu_ok}; "
        f"target RSS <= {TARGET_RSS_MB:g} MB: {rss_ok}"
    )
    print(f"load average at the end {loadavg()}")


if __name__ == "__main__":
    main()
