"""What a wall-screen refresh of the Grafana dashboards costs Prometheus, vs the old overview.

Usage: ``.venv/bin/python bench/bench_grafana.py [--minutes 5]`` (Prometheus installed).
About ``--minutes`` plus 1 minute.

What runs, each in its own process: the lab on the 450 Hanoi points with Ba Vì's
headquarters down from the start (``--impair ba-vi=down``), ``confmon run`` on the lab's
inventory, and Prometheus scraping it every 5 s as job ``confmon`` with the rules of
``configs/prometheus/rules/``. After ``--minutes`` of data, each dashboard is refreshed
``--rounds`` times as Grafana refreshes it: every panel query over the whole window (range
queries at a 5 s step, instant queries at its end), one after the other, with the template
variables filled in (all districts). The figure is the median wall time of a whole refresh,
and the series the "worst 10" panels draw.

The peer, in the same Prometheus on the same data: the overview as it was before issue 13
(``git show 716f67a:dashboards/confmon-overview.json``), whose top-N panels took ``topk``
at each step.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_run import free_port, wait_for_line, wait_ready  # noqa: E402
from bench_scheduler import loadavg  # noqa: E402

OLD_OVERVIEW = "716f67a:dashboards/confmon-overview.json"
STEP = 5.0


def prom_get(base: str, path: str, params: dict[str, str]) -> Any:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=60) as response:
        body = json.loads(response.read())
    if body.get("status") != "success":
        raise SystemExit(f"{path} {params}: {body}")
    return body["data"]


#: the variables' values per dashboard (the overview shows all districts)
CHOICES = {
    "overview": {"district": ".*"},
    "district": {"district": "ba-dinh"},
    "point": {"district": "ba-dinh", "point": "ba-dinh.kim-ma"},
}


def fill(expr: str, window: float, choice: dict[str, str]) -> str:
    values = {
        **choice,
        "probe": ".*",
        "job": "confmon",
        "readiness_target": "0.98",
        "__range": f"{window:.0f}s",
        "__rate_interval": "20s",
    }
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), expr)


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(title, refId, expr, instant) for each panel query."""
    out = []
    for panel in dashboard["panels"]:
        for p in [panel, *panel.get("panels", [])]:
            for t in p.get("targets", []):
                out.append((p["title"], t["refId"], t["expr"], bool(t.get("instant"))))
    return out


def refresh(
    base: str,
    dashboard: dict[str, Any],
    start: float,
    end: float,
    choice: dict[str, str],
    slowest: dict[str, float],
) -> tuple[float, dict[str, int]]:
    """One refresh: seconds for all queries, and series per top-N panel; ``slowest`` gets
    each query's time."""
    drawn: dict[str, int] = {}
    t0 = time.perf_counter()
    for title, ref, expr, instant in queries(dashboard):
        q = fill(expr, end - start, choice)
        q0 = time.perf_counter()
        if instant:
            data = prom_get(base, "/api/v1/query", {"query": q, "time": str(end)})
        else:
            data = prom_get(
                base,
                "/api/v1/query_range",
                {"query": q, "start": str(start), "end": str(end), "step": str(STEP)},
            )
        slowest[f"{title} [{ref}]"] = time.perf_counter() - q0
        if "worst 10" in title and not instant and ref == "A":
            drawn[title] = len(data["result"])
    return time.perf_counter() - t0, drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="data collected first (5)")
    parser.add_argument("--rounds", type=int, default=5, help="refreshes per dashboard (5)")
    args = parser.parse_args()
    print(
        f"{datetime.datetime.now().isoformat(timespec='seconds')} {platform.node()} "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load average {loadavg()}"
    )
    version = subprocess.run(["prometheus", "--version"], capture_output=True, text=True)
    print(version.stdout.splitlines()[0] if version.stdout else version.stderr.splitlines()[0])
    old = json.loads(
        subprocess.run(
            ["git", "show", OLD_OVERVIEW], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    )
    dashboards = {
        name: json.loads((ROOT / "dashboards" / f"confmon-{name}.json").read_text("utf-8"))
        for name in ("overview", "district", "point")
    }
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="confmon-bench-grafana-") as tmp:
        lab_yaml = Path(tmp) / "lab.yaml"
        lab = subprocess.Popen(
            [
                python,
                "-m",
                "monitor",
                "lab",
                "-c",
                str(ROOT / "configs" / "hanoi.yaml"),
                "--write-inventory",
                str(lab_yaml),
                "--control-port",
                "0",
                "--impair",
                "ba-vi=down",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs: list[subprocess.Popen[str]] = [lab]
        try:
            wait_for_line(lab, "ready in", 120)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            run = subprocess.Popen(
                [
                    python,
                    "-m",
                    "monitor",
                    "run",
                    "-c",
                    str(lab_yaml),
                    "--listen",
                    f"127.0.0.1:{port}",
                    "--state-db",
                    f"{tmp}/events.sqlite3",
                ],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            procs.append(run)
            wait_ready(base, run, 60)
            prom_port = free_port()
            config = Path(tmp) / "prometheus.yml"
            config.write_text(
                "global: {scrape_interval: 5s, evaluation_interval: 5s}\n"
                f"rule_files: [{str(ROOT / 'configs/prometheus/rules/confmon.rules.yml')!r}]\n"
                "scrape_configs:\n"
                f"  - {{job_name: confmon, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}\n",
                encoding="utf-8",
            )
            prom = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp}/tsdb",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    "--log.level=warn",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            procs.append(prom)
            prom_base = f"http://127.0.0.1:{prom_port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"{prom_base}/-/ready", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit("prometheus did not start") from None
                    time.sleep(0.5)
            start = time.time()
            print(f"collecting {args.minutes:g} min of data (450 points, scrape every 5 s) ...")
            time.sleep(args.minutes * 60)
            end = time.time()
            series = prom_get(prom_base, "/api/v1/query", {"query": "count({job='confmon'})"})
            print(
                f"window {end - start:.0f} s, {series['result'][0]['value'][1]} series in the job"
            )
            results: dict[str, tuple[float, dict[str, int], int]] = {}
            slowest: dict[str, dict[str, float]] = {}
            for name, d in [*dashboards.items(), ("overview (before issue 13)", old)]:
                times, drawn = [], {}
                slowest[name] = {}
                choice = CHOICES[name.split()[0]]
                for _ in range(args.rounds):
                    took, drawn = refresh(prom_base, d, start, end, choice, slowest[name])
                    times.append(took)
                results[name] = (statistics.median(times), drawn, len(queries(d)))
            for name, (took, drawn, n) in results.items():
                top = ", ".join(f"{k.split(':')[0]} {v}" for k, v in sorted(drawn.items()))
                print(
                    f"{name:28} {n:3} queries  refresh {took * 1000:7.0f} ms"
                    f"  worst-10 series drawn: {top}"
                )
                worst = sorted(slowest[name].items(), key=lambda kv: -kv[1])[:3]
                print("    slowest: " + "; ".join(f"{k} {v * 1000:.0f} ms" for k, v in worst))
            ratio = results["overview"][0] / results["overview (before issue 13)"][0]
            print(f"overview refresh, new / before issue 13: {ratio:.2f}")
        finally:
            for p in reversed(procs):
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    try:
                        p.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        p.kill()


if __name__ == "__main__":
    main()
