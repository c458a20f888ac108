"""A real Kamailio SIP server for tests, on free ports of 127.0.0.1.

Use the ``kamailio`` fixture by importing it into a test module (pytest finds
fixtures in the module namespace; the import is what registers it)::

    from tests.kamailio import Kamailio, kamailio_server  # noqa: F401

    async def test_x(kamailio: Kamailio) -> None: ...

It is session-scoped per importing module (pytest keys a fixture by the module
it is found in). For another lifetime, use :func:`running_kamailio`.

One Kamailio process listens on three ports, each on UDP and TCP, and answers
every OPTIONS statelessly (``sl`` module) with a reply chosen by the port the
request arrived on (``dst_port``), so one process serves all cases:

* ``port``: ``200 OK``
* ``port_unavailable``: ``100 Trying`` then ``503 Service Unavailable``
* ``port_not_found``: ``404 Not Found``

Other methods get ``405 Method Not Allowed``. Replies carry Kamailio's own
``Server: kamailio (<version> ...)`` header. It runs as any user (root in CI)
without touching system config: config, runtime dir, pid file and log live in
a temporary directory, it stays in the foreground (``-DD``) and logs to a file
(``-E`` to stderr, redirected), with small memory pools (``-m``/``-M``) and
DNS lookups switched off. It is stopped with SIGTERM, then SIGKILL to its
whole process group (it was started in a new session, so the group is its own).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import require_binary

__all__ = ["Kamailio", "free_sip_port", "kamailio_server", "running_kamailio"]

START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0

_CONFIG = """#!KAMAILIO
# Written by tests/kamailio.py: answers OPTIONS statelessly, reply chosen by port.
debug=2
log_stderror=yes
children=2
tcp_children=2
auto_aliases=no
dns=no
rev_dns=no
dns_try_ipv6=no
use_dns_cache=off
tcp_connection_lifetime=30

listen=udp:{host}:{port}
listen=tcp:{host}:{port}
listen=udp:{host}:{port_unavailable}
listen=tcp:{host}:{port_unavailable}
listen=udp:{host}:{port_not_found}
listen=tcp:{host}:{port_not_found}

loadmodule "sl.so"

request_route {{
    if (method != "OPTIONS") {{
        sl_send_reply("405", "Method Not Allowed");
        exit;
    }}
    if (dst_port == {port_unavailable}) {{
        sl_send_reply("100", "Trying");
        sl_send_reply("503", "Service Unavailable");
        exit;
    }}
    if (dst_port == {port_not_found}) {{
        sl_send_reply("404", "Not Found");
        exit;
    }}
    sl_send_reply("200", "OK");
}}
"""


@dataclass(frozen=True, slots=True)
class Kamailio:
    """A running Kamailio: where it listens (each port on UDP and TCP) and its log."""

    host: str
    port: int
    port_unavailable: int
    port_not_found: int
    log: Path
    pid: int


def free_sip_port(host: str = "127.0.0.1", taken: set[int] | None = None) -> int:
    """A port free for both UDP and TCP on ``host`` right now (SIP listens on both)."""
    taken = taken or set()
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            if port in taken:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both UDP and TCP")


def _answers(host: str, port: int) -> bool:
    """True when a SIP server answers OPTIONS on ``port`` over UDP and accepts TCP."""
    request = (
        f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:9;branch=z9hG4bKready{port};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:ready@{host}>;tag=ready\r\n"
        f"To: <sip:{host}:{port}>\r\n"
        f"Call-ID: ready-{port}@{host}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(0.3)
            udp.connect((host, port))
            udp.send(request)
            if not udp.recv(4096).startswith(b"SIP/2.0 "):
                return False
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        with suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_TIMEOUT)
    # Kamailio's workers are its children, in the session it was started in: make sure
    # none outlives the main process (pgid == pid of the process we started).
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(STOP_TIMEOUT)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def running_kamailio(workdir: Path, host: str = "127.0.0.1") -> Iterator[Kamailio]:
    """Start Kamailio with the config above in ``workdir``, wait until it answers, stop it."""
    binary = require_binary("kamailio")
    ports: list[int] = []
    for _ in range(3):
        ports.append(free_sip_port(host, set(ports)))
    config = workdir / "kamailio.cfg"
    config.write_text(
        _CONFIG.format(host=host, port=ports[0], port_unavailable=ports[1], port_not_found=ports[2])
    )
    rundir = workdir / "run"
    rundir.mkdir(exist_ok=True)
    log = workdir / "kamailio.log"
    command = [binary, "-DD", "-E", "-f", str(config), "-Y", str(rundir)]
    command += ["-P", str(rundir / "kamailio.pid"), "-m", "16", "-M", "4", "-w", str(workdir)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not all(_answers(host, port) for port in ports):
            if proc.poll() is not None:
                pytest.fail(f"kamailio exited with {proc.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"kamailio did not answer within {START_TIMEOUT:g}s:\n{_tail(log)}")
            time.sleep(0.1)
        yield Kamailio(host, ports[0], ports[1], ports[2], log, proc.pid)
    finally:
        _stop(proc)


@pytest.fixture(scope="session", name="kamailio")
def kamailio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kamailio]:
    """A Kamailio shared by the whole test session (see the module docstring)."""
    with running_kamailio(tmp_path_factory.mktemp("kamailio")) as server:
        yield server
