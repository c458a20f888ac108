"""Agents over MQTT (issue 11): ingest through a real Mosquitto, and agents on this machine.

    .venv/bin/python bench/bench_mqtt.py --case ingest [--rounds 3]
    .venv/bin/python bench/bench_mqtt.py --case agents [--agents 20 --points 500 --seconds 300]
    .venv/bin/python bench/bench_mqtt.py --case split  [--agents 4 --points 2500 --seconds 120]

Everything runs as its own process, as an operator would run it, against a real
Mosquitto started from the shipped ``configs/mosquitto/`` (users, passwords, ACL) by
``tests/mosquitto.py``, without ``-v`` (verbose logging writes a line per message).
Only loopback addresses in 127.74.0.0/16 and 127.75.0.0/16 are probed.

**ingest**: how many results a second the server takes in through the broker. A
publisher process logs in as an agent, says ``online``, waits for the server's
assignment (all 10,000 points of ``synthetic_inventory(10000)``), pre-encodes its
messages (icmp + sip per point and cycle, 2 % failures, times that move forward and
stay fresh) and publishes them as fast as QoS 1 allows (a window of 20 unacknowledged
publishes, paho's and Mosquitto's default). First one warm-up cycle in batches (every
point goes from ``unknown`` to ``up``: 10,000 events), a pause, then the measured
messages. The receiver, in a process of its own, is one of:

- ``confmon``: a real :class:`~monitor.transport.server.BrokerTransport` and
  :class:`~monitor.core.service.Monitor` (event log on disk), timed from the arrival of
  the first measured message to the end of the last one's ingest;
- ``bare``: the peer, an aiomqtt subscriber on the same topics with the same session
  settings that only counts messages and results (``payload.count(b'"point":')``).

Each kind runs with batches of 2,000 and 1,000 results and unbatched (one result per
message), with a fresh broker every time, alternating in rounds; medians are printed.
Published (acknowledged by the broker) is compared with ingested.

**agents** / **split**: ``--agents`` ``confmon agent`` processes and one ``confmon
server`` on ``--agents * --points`` ICMP-only points (5 echoes, 20 ms apart, every 5 s;
the kernel answers on 127.74.x.y), assigned ``by-district`` (one district per agent).
``--sip`` adds SIP OPTIONS over UDP every 5 s, answered by lab children on the same
addresses (those of ``bench_scheduler.py``'s ``sip10k`` case, not counted).
Once every point is up, a window of ``--seconds``: CPU of every process from
``/proc/PID/stat`` (utime + stime, all threads), ``/api/v1/status`` every cycle, and
(``split``, or ``--freshness``) ``/api/v1/points`` every cycle, to check that every
point's ``last_seen`` is younger than 1.5 intervals. The peer is a bare aiomqtt
subscriber process counting the same messages. At the end the agents stop (they log
how many results they published) and the server's count per agent
(``/api/v1/agents``) must match. ``split`` then runs ``confmon run`` on the same points
in one process for ``--peer-seconds`` as a second peer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
if "--code" in sys.argv[:-1]:  # a receiver running other code (--baseline), before any import
    sys.path.insert(0, sys.argv[sys.argv.index("--code") + 1])

from tests.mosquitto import SERVER_USER, Broker  # noqa: E402

AGENT = "bench-pub"
AGENT_PW = "bench-secret"
WINDOW = 20
TOPIC_ROOT = "confmon/v1/agents"
ICMP_ONLY = {"icmp": {"count": 5, "spacing": "20ms", "timeout": "1s"}}
ICMP_SIP = {
    "icmp": {"count": 5, "spacing": "20ms", "timeout": "1s"},
    "sip": {"transport": "udp", "port": 5060, "timeout": "1s"},
}
TARGET_RATE = 100_000
TARGET_CPU = 0.25
#: the synthetic inventory's stale_after: a result older than this on arrival is cheaper
STALE_AFTER = 20.0
#: the publisher stamps its cycles as if they were taken in at this rate (results/s)
STAMP_RATE = 10_000


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process, every thread (clock-tick resolution)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def quiet_logger() -> logging.Logger:
    """aiomqtt warns at every publish while more than 10 wait for acknowledgement: the
    publisher keeps 20 in flight on purpose."""
    logger = logging.getLogger("bench-mqtt")
    logger.setLevel(logging.ERROR)
    return logger


def ingest_inventory(points: int) -> Any:
    from monitor.inventory.synthetic import synthetic_inventory

    return synthetic_inventory(points, profile=ICMP_SIP, first_host="127.74.0.1")


# --- ingest: the publisher ---------------------------------------------------------------


def icmp_result(host: str, ok: bool, at: float, rtt: float, rnd: random.Random) -> Any:
    """An ICMP result shaped as the probe makes it (monitor/probes/icmp.py): phases and
    details included, as agents send it."""
    from monitor.core.results import Phase, ProbeResult

    rtts = tuple(rtt * (0.9 + 0.2 * rnd.random()) for _ in range(5)) if ok else ()
    received = len(rtts)
    return ProbeResult(
        probe="icmp",
        target=host,
        ok=ok,
        at=at,
        duration=0.081 if ok else 1.0,
        rtt=sum(rtts) / received if ok else None,
        rtt_min=min(rtts) if ok else None,
        rtt_max=max(rtts) if ok else None,
        jitter=0.000006 if ok else None,
        loss=1.0 - received / 5,
        error=None if ok else "no reply to 5 echo requests",
        phases=(
            Phase("resolve", True, 0.000016, host),
            Phase("echo", ok, 0.0814, f"5 sent, {received} received"),
        ),
        details={
            "address": host,
            "sent": 5,
            "received": received,
            "rtts": rtts,
            "ttl": 64,
            "socket": "raw",
        },
    )


def sip_result(host: str, ok: bool, at: float, rtt: float) -> Any:
    """A SIP OPTIONS result over UDP shaped as the probe makes it (monitor/probes/sip.py)."""
    from monitor.core.results import Phase, ProbeResult

    details: dict[str, Any] = {
        "transport": "udp",
        "port": 5060,
        "retransmissions": 0 if ok else 3,
        "provisional": [],
        "strays": 0,
        "address": host,
        "local": "127.0.0.1:40312",
    }
    if ok:
        details.update(
            status=200, reason="OK", server="lab", user_agent=None, rtt_last_send=rtt, notes=[]
        )
    return ProbeResult(
        probe="sip",
        target=host,
        ok=ok,
        at=at,
        duration=rtt + 0.0003 if ok else 1.0,
        rtt=rtt if ok else None,
        error=None if ok else "no response within 1s (4 sent)",
        phases=(
            Phase("resolve", True, 0.000012, host),
            Phase("send", True, 0.00004, host),
            Phase("response", ok, rtt if ok else 1.0, "200 OK" if ok else "timeout"),
        ),
        details=details,
    )


def contract_result(probe: str, host: str, ok: bool, at: float, rtt: float) -> Any:
    """A result with the contract's fields only (no phases, no details)."""
    from monitor.core.results import ProbeResult

    if probe == "icmp":
        loss = 0.0 if ok else 1.0
        return ProbeResult(
            probe="icmp",
            target=host,
            ok=ok,
            at=at,
            duration=0.081,
            rtt=rtt,
            jitter=0.000006,
            loss=loss,
        )
    return ProbeResult(
        probe="sip", target=host, ok=ok, at=at, duration=rtt + 0.0003, rtt=rtt if ok else None
    )


#: the agents' probing interval, as the describer sees the cycles (the bench stamps them
#: closer together: see the publisher)
NOMINAL_INTERVAL = 5.0


SHAPES = {
    "agent": "agents send them (described when news, or once a minute)",
    "described": "the probes make them (every one described)",
    "contract": "the contract fields only",
}


def encode_messages(
    points: dict[str, str],
    cycles: int,
    per: int,
    seq0: int,
    t0: float,
    step: float,
    seed: int = 1,
    shape: str = "agent",
    describer: Any = None,
    first_cycle: int = 0,
) -> list[tuple[bytes, int]]:
    """``cycles`` cycles of icmp + sip for every point (2 % failed), in messages of ``per``
    results; cycle ``c`` stamped ``t0 + c * step``. ``points``: point id -> host. ``shape``:
    ``agent`` (as agents send them: ``describer``, a :class:`Describer`, decides which go
    with their phases and details, seeing cycle ``c`` as ``first_cycle + c`` intervals
    after the first), ``described`` (every result as the probes make it) or ``contract``
    (the contract's fields only)."""
    import msgspec

    from monitor.core.results import ProbeResult, ResultBatch, encode_batch, undescribed

    rnd = random.Random(seed)
    pairs: list[tuple[str, ProbeResult]] = []
    for c in range(cycles):
        at = t0 + c * step
        nominal = 1.8e9 + (first_cycle + c) * NOMINAL_INTERVAL
        for pid, host in points.items():
            ok = rnd.random() > 0.02
            rtt = 0.00003 + rnd.random() * 0.00002
            if shape == "contract":
                made = [
                    contract_result("icmp", host, ok, at, rtt),
                    contract_result("sip", host, ok, at + 0.0001, rtt * 5),
                ]
            else:
                made = [
                    icmp_result(host, ok, at, rtt, rnd),
                    sip_result(host, ok, at + 0.0001, rtt * 5),
                ]
            for r in made:
                if shape == "agent":
                    seen = describer(pid, msgspec.structs.replace(r, at=nominal))
                    r = r if seen.phases else undescribed(r)
                pairs.append((pid, r))
    out = []
    for i in range(0, len(pairs), per):
        chunk = tuple(pairs[i : i + per])
        out.append(
            (encode_batch(ResultBatch(AGENT, seq0 + len(out), time.time(), chunk)), len(chunk))
        )
    return out


async def publisher(args: argparse.Namespace) -> None:
    import aiomqtt

    points = {p.id: p.host for p in ingest_inventory(args.points).points.values()}
    status = f"{TOPIC_ROOT}/{AGENT}/status"
    client = aiomqtt.Client(
        "127.0.0.1",
        args.port,
        username=AGENT,
        password=os.environ["CONFMON_MQTT_PASSWORD"],
        identifier=f"confmon-agent-{AGENT}",
        max_inflight_messages=WINDOW,
        timeout=30,
        logger=quiet_logger(),
    )
    async with client:
        if args.wait_assignment:
            await client.subscribe(f"{TOPIC_ROOT}/{AGENT}/assignment", qos=1)
            await client.publish(status, b"online", qos=1, retain=True)
            async with asyncio.timeout(60):
                async for message in client.messages:
                    payload = message.payload
                    if isinstance(payload, bytes) and b'"config":null' not in payload:
                        break
        t0 = time.time() - 1.0
        seq0 = time.time_ns() // 1000
        took = time.perf_counter()
        from monitor.core.results import Describer

        describer = Describer()  # what confmon agent does by default
        warm = encode_messages(
            points, 1, 2000, seq0, t0, 0.0, shape=args.shape, describer=describer
        )
        took = (time.perf_counter() - took) / len(points)
        seq0 += len(warm)
        # the measured results are stamped from the time they will be sent at (after their
        # encoding and the pause), a cycle later every STAMP_RATE results: as if a server
        # took them in at that rate, so that none is stale when it arrives (a result taken
        # in before its time counts as taken when it arrived: the clock rule)
        t1 = time.time() + took * args.cycles * 1.5 + args.pause
        step = 2 * len(points) / STAMP_RATE
        measured = encode_messages(
            points,
            args.cycles,
            args.per,
            seq0,
            t1,
            step,
            seed=2,
            shape=args.shape,
            describer=describer,
            first_cycle=1,
        )
        topic = f"{TOPIC_ROOT}/{AGENT}/results"
        published = 0

        async def send(messages: list[tuple[bytes, int]]) -> None:
            nonlocal published
            it = iter(messages)

            async def worker() -> None:
                nonlocal published
                # paho queues each publish in call order, so the broker gets them in order
                for data, n in it:
                    await client.publish(topic, data, qos=1, timeout=60)
                    published += n

            await asyncio.gather(*(worker() for _ in range(WINDOW)))

        await send(warm)
        await asyncio.sleep(max(args.pause, t1 - time.time()))
        start, cpu = time.perf_counter(), time.process_time()
        await send(measured)
        seconds = time.perf_counter() - start
        print(
            json.dumps(
                {
                    "published": published,
                    "warmup": sum(n for _, n in warm),
                    "messages": len(measured),
                    "bytes": sum(len(d) for d, _ in measured),
                    "seconds": seconds,
                    "cpu": time.process_time() - cpu,
                    "stamped": t1,
                    "last_stamp": t1 + (args.cycles - 1) * step,
                }
            ),
            flush=True,
        )


# --- ingest: the receivers ---------------------------------------------------------------


class Clock:
    """Results counted, and when the measured part (after the warm-up) started and ended."""

    def __init__(self, warmup: int, expect: int) -> None:
        self.warmup = warmup
        self.expect = expect
        self.total = 0
        self.messages = 0
        self.start: float | None = None
        self.start_wall = 0.0
        self.cpu0 = 0.0
        self.end = 0.0
        self.end_wall = 0.0
        self.cpu1 = 0.0
        self.last_seen = time.monotonic()
        self.done = asyncio.Event()

    def before(self) -> None:
        self.last_seen = time.monotonic()
        if self.start is None and self.total >= self.warmup:
            self.start, self.cpu0 = time.perf_counter(), time.process_time()
            self.start_wall = time.time()

    def after(self, total: int) -> None:
        self.total = total
        if self.start is not None:
            self.messages += 1
        if total >= self.warmup + self.expect:
            self.end, self.cpu1 = time.perf_counter(), time.process_time()
            self.end_wall = time.time()
            self.done.set()

    async def wait(self, idle: float, first: float = 300.0) -> None:
        """Until every expected result came, or none for ``idle`` s (``first`` s for the first:
        the publisher waits for its assignment and encodes its messages first)."""
        while not self.done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), 1.0)
            if time.monotonic() - self.last_seen > (idle if self.total else first):
                self.end, self.cpu1 = time.perf_counter(), time.process_time()
                self.end_wall = time.time()
                return

    def report(self, **extra: Any) -> dict[str, Any]:
        counted = self.total - self.warmup
        seconds = self.end - self.start if self.start is not None else 0.0
        return {
            "results": counted,
            "warmup": self.warmup,
            "messages": self.messages,
            "seconds": seconds,
            "cpu": self.cpu1 - self.cpu0,
            "rate": counted / seconds if seconds > 0 else 0.0,
            "start_wall": self.start_wall,
            "end_wall": self.end_wall,
            **extra,
        }


async def receive_confmon(args: argparse.Namespace) -> None:
    import aiomqtt

    from monitor.core.service import Monitor
    from monitor.transport.mqtt import BrokerConfig
    from monitor.transport.server import BrokerTransport

    inv = ingest_inventory(args.points)
    monitor = Monitor(inv, state_db=Path(args.dir) / "events.sqlite3")
    await monitor.start()
    broker = BrokerConfig(
        "127.0.0.1", args.port, username=SERVER_USER, password=os.environ["CONFMON_MQTT_PASSWORD"]
    )
    transport = BrokerTransport(monitor, broker)
    clock = Clock(args.warmup, args.expect)
    handle = transport._on_message
    results_topic = f"{TOPIC_ROOT}/{AGENT}/results"
    rejected: dict[str, int] = {}

    def on_message(message: aiomqtt.Message) -> None:
        # the transport's own handler, timed: everything from decode to the health model
        if str(message.topic) != results_topic:
            handle(message)
            return
        clock.before()
        handle(message)
        info = transport.agents[AGENT]
        clock.after(info.accepted + info.rejected)

    transport._on_message = on_message  # type: ignore[method-assign]
    await transport.start()
    async with asyncio.timeout(30):
        while not transport.connected:  # noqa: ASYNC110 - the transport has no event for it
            await asyncio.sleep(0.05)
    if args.gc == "product":
        # what `confmon server` does once started (monitor/collector.py); the code before
        # it had no such module and keeps Python's defaults
        with contextlib.suppress(ImportError):
            from monitor.collector import settle

            settle()
    elif args.gc == "freeze":
        gc.collect()
        gc.freeze()
    elif args.gc == "off":
        gc.disable()
    elif args.gc.isdigit():  # a first-generation threshold (Python's default: 700)
        gc.set_threshold(int(args.gc), *gc.get_threshold()[1:])
    print("ready", flush=True)
    await clock.wait(args.idle)
    info = transport.agents.get(AGENT)
    counts = {s.value: n for s, n in monitor.model.counts.items() if n}
    for metric in monitor.telemetry.rejected.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.value:
                rejected[sample.labels["reason"]] = int(sample.value)
    report = clock.report(
        code=str(Path(sys.modules["monitor"].__file__ or "?").parent),
        accepted=(info.accepted if info else 0),
        rejected=(info.rejected if info else 0),
        states=counts,
        **({"rejected_by_reason": rejected} if rejected else {}),
    )
    await transport.stop()
    await monitor.stop()
    print(json.dumps(report), flush=True)


async def receive_bare(args: argparse.Namespace) -> None:
    """The peer: the same subscription and session settings as the server; only counts."""
    import aiomqtt

    clock = Clock(args.warmup, args.expect)
    client = aiomqtt.Client(
        "127.0.0.1",
        args.port,
        username=SERVER_USER,
        password=os.environ["CONFMON_MQTT_PASSWORD"],
        identifier=args.client_id,
        clean_session=False,
        timeout=10,
        keepalive=15,
    )
    total = 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with client:
        await client.subscribe(f"{TOPIC_ROOT}/+/results", qos=1)
        print("ready", flush=True)

        async def count() -> None:
            nonlocal total
            async for message in client.messages:
                payload = message.payload
                if not isinstance(payload, bytes):
                    continue
                clock.before()
                total += payload.count(b'"point":')
                clock.after(total)

        counting = asyncio.ensure_future(count())
        if args.expect:
            await clock.wait(args.idle)
        else:
            await stop.wait()
        counting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await counting
    print(json.dumps({**clock.report(), "total": total}), flush=True)


# --- ingest: the orchestrator ------------------------------------------------------------


def child(role: str, *extra: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--role", role, *extra],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
    )


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The next line of ``proc``'s stdout (a child that dies or hangs is an error)."""
    import selectors

    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        raise RuntimeError(f"no answer from {proc.args} within {timeout} s")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{proc.args} exited with {proc.wait()}")
    return line


def ingest_once(kind: str, per: int, args: argparse.Namespace) -> dict[str, Any]:
    points = args.points
    cycles = args.cycles if per > 1 else max(1, args.unbatched_results // (2 * points))
    expect = cycles * 2 * points
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        broker = Broker(Path(tmp) / "broker", {AGENT: AGENT_PW}, verbose=False)
        broker.start()
        try:
            common = ["--port", str(broker.port), "--points", str(points)]
            server_env = {"CONFMON_MQTT_PASSWORD": broker.users[SERVER_USER]}
            code = ["--code", args.baseline] if kind == "baseline" else []
            receiver = child(
                "receive-bare" if kind == "bare" else "receive-confmon",
                *code,
                *common,
                "--dir",
                tmp,
                "--warmup",
                str(2 * points),
                "--expect",
                str(expect),
                "--client-id",
                "confmon-server",
                "--gc",
                args.gc,
                env=server_env,
            )
            assert read_line(receiver, 60).strip() == "ready"
            assert broker.proc is not None
            spy = None
            if args.py_spy and kind != "bare" and per > 1:
                out = Path(args.py_spy) / f"{kind}-{per}-{time.strftime('%H%M%S')}.txt"
                spy = subprocess.Popen(
                    [
                        str(Path(sys.executable).parent / "py-spy"),
                        "record",
                        "--pid",
                        str(receiver.pid),
                        "--rate",
                        "200",
                        "--format",
                        "raw",
                        "--output",
                        str(out),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            broker_cpu0 = proc_cpu(broker.proc.pid)
            pub = child(
                "publish",
                *common,
                "--shape",
                args.shape,
                "--per",
                str(per),
                "--cycles",
                str(cycles),
                *(["--wait-assignment"] if kind != "bare" else []),
                env={"CONFMON_MQTT_PASSWORD": AGENT_PW},
            )
            sent = json.loads(read_line(pub, 300))
            got = json.loads(read_line(receiver, 300))
            broker_cpu = proc_cpu(broker.proc.pid) - broker_cpu0
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
            pub.wait(30)
            receiver.wait(30)
        finally:
            broker.stop()
    got["published"] = sent["published"] - sent["warmup"]
    got["publisher_seconds"] = sent["seconds"]
    got["publisher_rate"] = got["published"] / sent["seconds"]
    got["bytes_per_result"] = sent["bytes"] / got["published"]
    got["broker_cpu"] = broker_cpu
    # everything published (the warm-up too) against everything taken in
    taken = got["results"] + got["warmup"] if kind == "bare" else got["accepted"]
    got["lost"] = sent["published"] - taken
    # the oldest a result was on arrival, about: the first cycle's when the first came, the
    # last cycle's when the last came
    got["oldest"] = max(got["start_wall"] - sent["stamped"], got["end_wall"] - sent["last_stamp"])
    return got


def bench_ingest(args: argparse.Namespace) -> None:
    kinds = [("confmon", 2000), ("bare", 2000), ("confmon", 1000), ("bare", 1000)]
    kinds += [("confmon", 1), ("bare", 1)]
    if args.baseline:
        kinds[1:1] = [("baseline", 2000)]
    if args.only:
        wanted = {(k, int(n)) for k, n in (item.split(":") for item in args.only.split(","))}
        kinds = [k for k in kinds if k in wanted]
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {k: [] for k in kinds}
    print(
        f"ingest through Mosquitto, {args.points} points, {args.rounds} rounds, results shaped "
        f"as {SHAPES[args.shape]}; "
        f"load average {loadavg()}",
        flush=True,
    )
    for r in range(args.rounds):
        order = kinds[r % len(kinds) :] + kinds[: r % len(kinds)]
        for kind, per in order:
            got = ingest_once(kind, per, args)
            runs[(kind, per)].append(got)
            print(
                f"  round {r + 1} {kind:>7} {per:>5}/msg: {got['rate']:>10,.0f} results/s "
                f"({got['results']:,} of {got['published']:,} published, lost {got['lost']}; "
                f"{got['seconds']:.2f} s, CPU {got['cpu']:.2f} s; broker CPU "
                f"{got['broker_cpu']:.2f} s; publisher {got['publisher_rate']:,.0f}/s; "
                f"oldest on arrival {got['oldest']:.1f} s"
                f"{'; states ' + str(got['states']) if 'states' in got else ''}"
                f"{'; code ' + got['code'] if 'code' in got else ''})",
                flush=True,
            )
    print(f"\nmedians of {args.rounds} (load average {loadavg()}):")
    print(
        "| per message | confmon (BrokerTransport + Monitor) | bare aiomqtt subscriber | ratio | lost |"
    )
    print("|---|---|---|---|---|")
    for per in (2000, 1000, 1):
        if ("confmon", per) not in runs or ("bare", per) not in runs:
            continue
        ours = statistics.median(g["rate"] for g in runs[("confmon", per)])
        peer = statistics.median(g["rate"] for g in runs[("bare", per)])
        lost = sum(g["lost"] for g in runs[("confmon", per)])
        published = sum(g["published"] + g["warmup"] for g in runs[("confmon", per)])
        cpu = statistics.median(
            g["cpu"] / g["results"] * 1e6 for g in runs[("confmon", per)] if g["results"]
        )
        print(
            f"| {per:,} | {ours:,.0f} results/s ({cpu:.1f} µs CPU each) | {peer:,.0f} results/s "
            f"| {ours / peer:.2f} | {lost} of {published:,} |"
        )
    if ("baseline", 2000) in runs:
        base = statistics.median(g["rate"] for g in runs[("baseline", 2000)])
        ours = statistics.median(g["rate"] for g in runs[("confmon", 2000)])
        cpu = {
            k: statistics.median(g["cpu"] / g["results"] * 1e6 for g in runs[(k, 2000)])
            for k in ("baseline", "confmon")
        }
        print(
            f"2,000/msg, this code against {args.baseline}: {ours:,.0f} against {base:,.0f} "
            f"results/s (ratio {ours / base:.2f}); CPU per result {cpu['confmon']:.1f} against "
            f"{cpu['baseline']:.1f} µs"
        )
    stale = [g["oldest"] for k in kinds if k[0] != "bare" for g in runs[k]]
    if max(stale) >= STALE_AFTER:
        print(f"WARNING: results up to {max(stale):.1f} s old arrived: some were judged stale")
    if ("confmon", 2000) not in runs:
        return
    batched = statistics.median(g["rate"] for g in runs[("confmon", 2000)])
    verdict = "met" if batched >= TARGET_RATE else "missed"
    print(f"target >= {TARGET_RATE:,} results/s batched: {verdict}")


# --- agents on this machine --------------------------------------------------------------


def agent_ids(n: int) -> list[str]:
    return [f"agent-{i + 1:02d}" for i in range(n)]


def agents_config(
    agents: int, points: int, first_host: str, echoes: int, sip: bool = False
) -> tuple[Any, str]:
    from monitor.inventory.synthetic import synthetic_inventory
    from monitor.inventory.writer import to_yaml

    profile: dict[str, Any] = {"icmp": {**ICMP_ONLY["icmp"], "count": echoes}}
    if sip:
        profile["sip"] = ICMP_SIP["sip"]
    inv = synthetic_inventory(
        agents * points, districts=agents, profile=profile, first_host=first_host
    )
    lines = ["agents:", "  assign: by-district", "  districts:"]
    for i, agent in enumerate(agent_ids(agents)):
        lines.append(f"    {agent}: [d{i:02d}]")
    return inv, to_yaml(inv) + "\n".join(lines) + "\n"


async def get_json(session: Any, url: str, within: float = 30.0) -> Any:
    import aiohttp

    async with session.get(url, timeout=aiohttp.ClientTimeout(total=within)) as resp:
        resp.raise_for_status()
        return await resp.json()


def freshness(points: list[dict[str, Any]], now: float, interval: float) -> dict[str, Any]:
    ages = [now - p["last_seen"] if p["last_seen"] else float("inf") for p in points]
    return {
        "max_age": max(ages),
        "late": sum(a > 1.5 * interval for a in ages),
        "missed": sum(a > 2 * interval for a in ages),
    }


async def poll_window(
    session: Any,
    base: str,
    seconds: float,
    interval: float,
    points: bool,
) -> list[dict[str, Any]]:
    """``/api/v1/status`` (and ``/api/v1/points``) once per interval for ``seconds``."""
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        tick = time.monotonic()
        status = await get_json(session, f"{base}/api/v1/status")
        sample: dict[str, Any] = {"states": {k: v for k, v in status["states"].items() if v}}
        if points:
            listing = await get_json(session, f"{base}/api/v1/points")
            sample.update(freshness(listing["points"], time.time(), interval))
        samples.append(sample)
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - tick)))
    return samples


async def spawn_agent(agent: str, broker: Broker, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "monitor",
            "agent",
            "--broker",
            broker.url,
            "--id",
            agent,
            "--log-format",
            "json",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=out,
            env={**os.environ, "CONFMON_MQTT_PASSWORD": broker.users[agent]},
            cwd=ROOT,
        )


_PUBLISHED = re.compile(r"stopped: (\d+) results published, (\d+) dropped, (\d+) unsent")


def published_of(log: Path) -> tuple[int, int, int]:
    for line in reversed(log.read_text(encoding="utf-8").splitlines()):
        m = _PUBLISHED.search(line)
        if m:
            return int(m[1]), int(m[2]), int(m[3])
    raise RuntimeError(f"{log}: the agent did not say what it published")


def cpu_all(pids: dict[str, int]) -> dict[str, float]:
    return {name: proc_cpu(pid) for name, pid in pids.items()}


async def bench_agents(args: argparse.Namespace) -> None:
    n_agents, per_agent = args.agents, args.points
    total = n_agents * per_agent
    inv, text = agents_config(n_agents, per_agent, args.first_host, args.echoes, args.sip)
    interval = inv.settings.interval
    hosts = [p.host for p in inv.points.values()]
    what = "ICMP + SIP OPTIONS/UDP" if args.sip else "ICMP only"
    print(
        f"{args.case}: {n_agents} agents x {per_agent} points = {total:,} points, {what} "
        f"({args.echoes} echoes every {interval:g} s), hosts {hosts[0]} .. {hosts[-1]}; "
        f"load average {loadavg()}",
        flush=True,
    )
    labs = sip_labs(hosts, args.first_host) if args.sip else []
    try:
        await _bench_agents(args, inv, text, hosts, n_agents, per_agent, total)
    finally:
        if labs:
            from bench.bench_scheduler import stop_labs

            stop_labs(labs)


def sip_labs(hosts: list[str], first_host: str) -> list[Any]:
    """Lab children answering SIP OPTIONS on every point's address (the ICMP the kernel does).

    The lab children of ``bench_scheduler.py``'s ``sip10k`` case, which number their
    points from ``first_host`` as :func:`agents_config` does: checked below.
    """
    from bench.bench_scheduler import CASES, build_inventory, start_labs

    served = {
        p.host
        for p in build_inventory(len(hosts), CASES["sip10k"].profile, first_host).points.values()
    }
    if served != set(hosts):
        raise SystemExit("the lab would not serve the agents' points")
    return start_labs(CASES["sip10k"], len(hosts), 2 if len(hosts) > 5000 else 1, first_host)


async def _bench_agents(
    args: argparse.Namespace,
    inv: Any,
    text: str,
    hosts: list[str],
    n_agents: int,
    per_agent: int,
    total: int,
) -> None:
    from tests.commands.running import start_run

    interval = inv.settings.interval
    with tempfile.TemporaryDirectory(prefix="bench-agents-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "lab-hanoi.yaml").write_text(text, encoding="utf-8")
        ids = agent_ids(n_agents)
        broker = Broker(tmp / "broker", {a: f"pw-{a}" for a in ids}, verbose=False)
        broker.start()
        procs: dict[str, asyncio.subprocess.Process] = {}
        server = None
        try:
            server_env = {"CONFMON_MQTT_PASSWORD": broker.users[SERVER_USER]}
            peer = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--role",
                "receive-bare",
                "--port",
                str(broker.port),
                "--client-id",
                "bench-peer",
                stdout=asyncio.subprocess.PIPE,
                env={**os.environ, **server_env},
                cwd=ROOT,
            )
            assert peer.stdout is not None
            assert (await asyncio.wait_for(peer.stdout.readline(), 60)).strip() == b"ready"
            nice = args.server_nice
            server = await start_run(
                tmp,
                inv,
                "--broker",
                broker.url,
                command="server",
                name="server",
                env=server_env,
                preexec_fn=(lambda: os.nice(nice)) if nice else None,
            )
            started = time.monotonic()
            for agent in ids:
                procs[agent] = await spawn_agent(agent, broker, tmp / f"{agent}.log")
                await asyncio.sleep(args.stagger)
            states: dict[str, int] = {}
            try:
                async with asyncio.timeout(args.wait):
                    while states.get("up") != total:
                        await asyncio.sleep(1.0)
                        with contextlib.suppress(Exception):
                            status = await get_json(server.session, f"{server.base}/api/v1/status")
                            states = {k: v for k, v in status["states"].items() if v}
                        if int(time.monotonic() - started) % 15 == 0:
                            print(
                                f"  {time.monotonic() - started:.0f} s: {states}; load {loadavg()}"
                            )
            except TimeoutError:
                print(f"  not all up: {states}; server log:\n{server.log()[-3000:]}")
                with contextlib.suppress(Exception):
                    print(await get_json(server.session, f"{server.base}/api/v1/agents"))
                    print(await get_json(server.session, f"{server.base}/api/v1/status"))
                    async with server.session.get(f"{server.base}/metrics") as resp:
                        for line in (await resp.text()).splitlines():
                            if "rejected" in line or "confmon_probes_total" in line:
                                print("   ", line)
                print(f"  agent-01 log:\n{(tmp / 'agent-01.log').read_text()[-3000:]}")
                raise
            print(f"  all {total:,} up {time.monotonic() - started:.1f} s after the agents started")
            await asyncio.sleep(interval)  # one more cycle before the window
            assert broker.proc is not None
            pids = {"server": server.proc.pid, "peer": peer.pid, "broker": broker.proc.pid}
            pids |= {a: p.pid for a, p in procs.items()}
            listing0 = await get_json(server.session, f"{server.base}/api/v1/agents")
            spy = None
            if args.py_spy:  # a run of its own: sampling costs the server CPU
                spy = await asyncio.create_subprocess_exec(
                    str(Path(sys.executable).parent / "py-spy"),
                    *("record", "--gil", "--rate", "100", "--format", "raw"),
                    *("--pid", str(server.proc.pid), "--duration", str(int(args.seconds))),
                    *("--output", str(Path(args.py_spy) / f"server-{args.case}.txt")),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
            cpu0, t0 = cpu_all(pids), time.monotonic()
            samples = await poll_window(
                server.session, server.base, args.seconds, interval, args.freshness
            )
            cpu1, t1 = cpu_all(pids), time.monotonic()
            if spy is not None:
                await asyncio.wait_for(spy.wait(), 60)
            listing1 = await get_json(server.session, f"{server.base}/api/v1/agents")
            final_fresh = freshness(
                (await get_json(server.session, f"{server.base}/api/v1/points"))["points"],
                time.time(),
                interval,
            )
            wall = t1 - t0
            share = {k: (cpu1[k] - cpu0[k]) / wall for k in pids}
            window_accepted = sum(a["results_accepted"] for a in listing1["agents"]) - sum(
                a["results_accepted"] for a in listing0["agents"]
            )
            # stop the agents: each says what it published; the server must have it all
            for p in procs.values():
                p.send_signal(signal.SIGTERM)
            codes = [await asyncio.wait_for(p.wait(), 60) for p in procs.values()]
            published = {a: published_of(tmp / f"{a}.log") for a in ids}
            sent = sum(v[0] for v in published.values())

            async def server_counts() -> tuple[int, int]:
                agents = (await get_json(server.session, f"{server.base}/api/v1/agents"))["agents"]
                return (
                    sum(a["results_accepted"] for a in agents),
                    sum(a["results_rejected"] for a in agents),
                )

            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    while sum(await server_counts()) < sent:  # noqa: ASYNC110 - as above
                        await asyncio.sleep(0.5)
            accepted, rejected = await server_counts()
            peer.send_signal(signal.SIGTERM)
            peer_report = json.loads(await asyncio.wait_for(peer.stdout.readline(), 30))
            await peer.wait()
        finally:
            for p in procs.values():
                if p.returncode is None:
                    p.kill()
                    await p.wait()
            if server is not None:
                code = await server.stop(within=60)
                await server.session.close()
                print(f"  server exit {code}")
            broker.stop()
        agents_cpu = sum(share[a] for a in ids)
        print(f"  window {wall:.0f} s, load average {loadavg()}")
        states = {json.dumps(s["states"], sort_keys=True) for s in samples}
        print(
            f"  /api/v1/status every {interval:g} s, {len(samples)} samples, states seen: {states}"
        )
        if args.freshness:
            print(
                f"  freshness every cycle: max last_seen age {max(s['max_age'] for s in samples):.2f} s; "
                f"samples with points older than 1.5 intervals: {sum(1 for s in samples if s['late'])}, "
                f"older than 2 (a cycle missed): {sum(1 for s in samples if s['missed'])}"
            )
        print(
            f"  after the window: max age {final_fresh['max_age']:.2f} s, "
            f"{final_fresh['late']} points older than 1.5 intervals"
        )
        rate = window_accepted / wall
        print(
            f"  server ingest {rate:,.0f} results/s in the window; "
            f"agents exit codes {sorted(set(codes))}"
        )
        print(
            f"  results published {sent:,} (dropped {sum(v[1] for v in published.values())}, "
            f"unsent {sum(v[2] for v in published.values())}); server accepted {accepted:,}, "
            f"rejected {rejected}; lost {sent - accepted - rejected}; "
            f"bare peer counted {peer_report['total']:,}"
        )
        print(
            f"  CPU, share of one core: server {share['server']:.1%}, bare aiomqtt peer "
            f"{share['peer']:.1%} (ratio {share['server'] / max(share['peer'], 1e-9):.1f}), "
            f"broker {share['broker']:.1%}, {n_agents} agents {agents_cpu:.1%} "
            f"(each {min(share[a] for a in ids):.1%} .. {max(share[a] for a in ids):.1%})"
        )
        verdict = "met" if share["server"] <= TARGET_CPU else "missed"
        print(f"  target server CPU <= {TARGET_CPU:.0%} of a core: {verdict}", flush=True)
    if args.peer_seconds > 0:
        await bench_run_peer(args, inv, text, interval)


async def bench_run_peer(args: argparse.Namespace, inv: Any, text: str, interval: float) -> None:
    """The same points probed by one ``confmon run`` process."""
    total = len(inv.points)
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "lab-hanoi.yaml").write_text(text, encoding="utf-8")
        # not tests' start_run: it passes --no-icmp; this peer probes ICMP like the agents
        run = await start_run_icmp(tmp)
        try:
            started = time.monotonic()
            async with asyncio.timeout(180):
                while True:
                    with contextlib.suppress(Exception):
                        status = await get_json(run.session, f"{run.base}/api/v1/status")
                        if status["states"].get("up") == total:
                            break
                    await asyncio.sleep(1.0)
            print(f"  peer confmon run: all {total:,} up after {time.monotonic() - started:.1f} s")
            await asyncio.sleep(interval)
            cpu0, t0 = proc_cpu(run.proc.pid), time.monotonic()
            samples = await poll_window(run.session, run.base, args.peer_seconds, interval, True)
            share = (proc_cpu(run.proc.pid) - cpu0) / (time.monotonic() - t0)
        finally:
            await run.stop(within=60)
            await run.session.close()
    states = {json.dumps(s["states"], sort_keys=True) for s in samples}
    print(
        f"  peer confmon run, one process, {args.peer_seconds:g} s: CPU {share:.1%} of a core; "
        f"states seen {states}; max age {max(s['max_age'] for s in samples):.2f} s; "
        f"samples with late points {sum(1 for s in samples if s['late'])}, "
        f"with a missed cycle {sum(1 for s in samples if s['missed'])}",
        flush=True,
    )


async def start_run_icmp(tmp: Path) -> Any:
    import aiohttp

    from tests.commands.running import Running
    from tests.helpers import free_port

    port = free_port()
    log_path = tmp / "run.log"
    with log_path.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "monitor",
            "run",
            "-c",
            str(tmp / "lab-hanoi.yaml"),
            "--listen",
            f"127.0.0.1:{port}",
            "--state-db",
            str(tmp / "events.sqlite3"),
            "--log-format",
            "json",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
            cwd=ROOT,
        )
    return Running(
        proc,
        f"http://127.0.0.1:{port}",
        tmp / "lab-hanoi.yaml",
        tmp / "events.sqlite3",
        log_path,
        aiohttp.ClientSession(),
    )


# --- command line ------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=["ingest", "agents", "split"], default="ingest")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--points", type=int, help="ingest: points (10000); agents: per agent")
    parser.add_argument("--cycles", type=int, default=10, help="ingest: measured cycles, batched")
    parser.add_argument(
        "--unbatched-results", type=int, default=20_000, help="ingest: results sent unbatched"
    )
    parser.add_argument("--agents", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--peer-seconds", type=float)
    parser.add_argument(
        "--freshness", action="store_true", help="agents: /api/v1/points each cycle"
    )
    parser.add_argument("--first-host")
    parser.add_argument("--echoes", type=int, default=5, help="agents: ICMP echoes per probe")
    parser.add_argument(
        "--sip",
        action="store_true",
        help="agents: SIP OPTIONS over UDP too, answered by lab children (as bench_scheduler's sip10k)",
    )
    parser.add_argument(
        "--server-nice", type=int, default=0, help="agents: the server's nice increment (root: <0)"
    )
    parser.add_argument("--wait", type=float, default=300, help="agents: s for all up")
    parser.add_argument("--stagger", type=float, default=0.5, help="agents: s between starts")
    parser.add_argument(
        "--shape",
        choices=["agent", "described", "contract"],
        default="agent",
        help=(
            "ingest: results as agents send them (phases and details with failures, changes "
            "and once a minute), all with them (as the probes make them), or the contract's "
            "fields only"
        ),
    )
    parser.add_argument("--only", help="ingest: some of confmon:2000,bare:2000,...,bare:1")
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="ingest: also run the batched receiver on the monitor package in DIR "
        "(e.g. git archive HEAD monitor | tar -x -C DIR), alternating with this one",
    )
    parser.add_argument("--code", help=argparse.SUPPRESS)
    parser.add_argument(
        "--gc",
        default="product",
        help="ingest: the receiver's garbage collector after start-up: product (what confmon "
        "server does, monitor/collector.py), on (Python's defaults), off, freeze "
        "(gc.freeze()), or N (a first-generation threshold of N; Python's default 700)",
    )
    parser.add_argument(
        "--py-spy",
        metavar="DIR",
        help="py-spy record the batched confmon receivers (ingest) or the server (agents)",
    )
    # the children's
    parser.add_argument("--port", type=int)
    parser.add_argument("--per", type=int, default=2000)
    parser.add_argument("--wait-assignment", action="store_true")
    parser.add_argument("--pause", type=float, default=2.0)
    parser.add_argument("--dir")
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--idle", type=float, default=15.0)
    parser.add_argument("--client-id", default="bench-peer")
    args = parser.parse_args()
    roles = {
        "publish": publisher,
        "receive-confmon": receive_confmon,
        "receive-bare": receive_bare,
    }
    if args.role is not None:
        asyncio.run(roles[args.role](args))
        return
    print(
        f"{platform.node()}: {os.cpu_count()} cores, {platform.machine()}, Linux "
        f"{platform.release()}, Python {platform.python_version()}",
        flush=True,
    )
    if args.case == "ingest":
        args.points = args.points or 10_000
        bench_ingest(args)
        return
    split = args.case == "split"
    args.agents = args.agents or (4 if split else 20)
    args.points = args.points or (2500 if split else 500)
    args.seconds = args.seconds or (120.0 if split else 300.0)
    args.peer_seconds = (
        args.peer_seconds if args.peer_seconds is not None else (60.0 if split else 0.0)
    )
    args.freshness = args.freshness or split
    args.first_host = args.first_host or ("127.75.0.1" if split else "127.74.0.1")
    asyncio.run(bench_agents(args))


if __name__ == "__main__":
    main()
