"""TCP connect probe: how long a three-way handshake to ``host:port`` takes.

What a caller may rely on:

* ``probe(target, settings, ctx)`` never raises for a network failure; it returns a
  :class:`~monitor.probes.base.ProbeResult` named ``"tcp"`` with ``ok=False`` and one of
  these ``error`` reasons: ``"cannot resolve <host>: ..."``, ``"connection refused"``,
  ``"host unreachable"``, ``"network unreachable"``, ``"timeout after <t>s (<phase>)"``,
  or the operating system's own words for anything rarer.
* ``settings.timeout`` bounds the whole probe, name resolution included. A name that
  resolves to several addresses is tried address by address, in resolver order, inside
  that one deadline; the first successful connect wins.
* Phases: ``resolve`` then ``connect`` (its ``detail`` names the address used).
  ``rtt`` is the connect time; ``details`` holds ``address`` and ``port``.
* The socket is closed before the probe returns, also when the probe is cancelled.
  Nothing is sent: connect and close, so the peer sees an ordinary FIN.

:func:`resolve` and :func:`describe_oserror` live in :mod:`monitor.probes.net`,
shared with the other socket-level probes, so that "cannot resolve" and "refused"
read the same everywhere; they are re-exported here.
"""

from __future__ import annotations

import asyncio
import socket
import time

from monitor.core.results import Phase, ProbeResult
from monitor.inventory.types import Duration, Port, Strict
from monitor.probes.base import ProbeContext, now
from monitor.probes.net import Address, describe_oserror, resolve
from monitor.probes.spec import ProbeSpec, timeout_deadline

__all__ = ["SPEC", "Address", "TcpSettings", "describe_oserror", "probe", "resolve"]


class TcpSettings(Strict):
    """A TCP connect to host:port."""

    port: Port
    timeout: Duration = 1.0


async def _connect(family: int, sockaddr: tuple[str, int] | tuple[str, int, int, int]) -> None:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, sockaddr)
    finally:
        # Closing at once after the handshake is the whole point of a connect probe; the
        # finally also covers cancellation and the deadline firing mid-connect.
        sock.close()


async def probe(target: str, settings: TcpSettings, ctx: ProbeContext) -> ProbeResult:
    """Connect to ``target:settings.port`` within ``settings.timeout``; see the module docstring."""
    del ctx  # a connect probe needs no shared resources
    at = now()
    started = time.monotonic()
    phases: list[Phase] = []
    stage, stage_started = "resolve", started
    address: str | None = None
    rtt: float | None = None
    error: str | None = None

    def finish(ok: bool, detail: str = "") -> float:
        nonlocal stage_started
        elapsed = time.monotonic() - stage_started
        phases.append(Phase(stage, ok, elapsed, detail))
        stage_started = time.monotonic()
        return elapsed

    deadline = asyncio.timeout(settings.timeout)
    try:
        async with deadline:
            try:
                addresses = await resolve(target, settings.port, socket.SOCK_STREAM)
            except socket.gaierror as exc:
                error = f"cannot resolve {target}: {exc.strerror or exc}"
                finish(False, error)
            else:
                finish(True, ", ".join(a[1][0] for a in addresses))
                stage = "connect"
                last: OSError | None = None
                for family, sockaddr in addresses:
                    address = sockaddr[0]
                    try:
                        await _connect(family, sockaddr)
                    except OSError as exc:
                        last = exc
                        continue
                    rtt = finish(True, address)
                    break
                else:
                    assert last is not None
                    error = describe_oserror(last)
                    finish(False, f"{address}: {error}")
    except TimeoutError:
        if not deadline.expired():
            raise  # not our deadline: a bug somewhere below, do not disguise it
        error = f"timeout after {settings.timeout:g}s ({stage})"
        finish(False, "timeout")

    details: dict[str, object] = {"port": settings.port}
    if address is not None:
        details["address"] = address
    return ProbeResult(
        probe="tcp",
        target=target,
        ok=error is None,
        at=at,
        duration=time.monotonic() - started,
        rtt=rtt,
        error=error,
        phases=tuple(phases),
        details=details,
    )


SPEC = ProbeSpec(
    name="tcp",
    settings=TcpSettings,
    probe=probe,
    deadline=timeout_deadline,
    measures=("rtt",),
    can_reach=True,
)
