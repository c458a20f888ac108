"""TCP connect probe against real sockets on loopback (and an empty network namespace)."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import pytest

from monitor.core.results import ProbeResult
from monitor.inventory.model import TcpSettings
from monitor.probes.base import ProbeContext
from monitor.probes.tcp import describe_oserror, probe, resolve
from tests.helpers import free_port, run_in_empty_netns


async def run(target: str, port: int, deadline: str = "1s") -> ProbeResult:
    """Run the probe once."""
    async with ProbeContext() as ctx:
        settings = TcpSettings.model_validate({"port": port, "timeout": deadline})
        return await probe(target, settings, ctx)


@asynccontextmanager
async def server(host: str = "127.0.0.1") -> AsyncIterator[tuple[int, list[bytes]]]:
    """A TCP server that records what each client sent before closing (b'' = clean FIN)."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            seen.append(await asyncio.wait_for(reader.read(100), 5))
        except ConnectionError as exc:
            seen.append(repr(exc).encode())
        finally:
            writer.close()
            await writer.wait_closed()

    srv = await asyncio.start_server(handle, host, 0)
    try:
        yield int(srv.sockets[0].getsockname()[1]), seen
    finally:
        srv.close()
        await srv.wait_closed()


def open_fds() -> int:
    """How many file descriptors this process holds."""
    return len(os.listdir("/proc/self/fd"))


@contextmanager
def full_backlog() -> Iterator[int]:
    """A listening port whose accept queue is full, so a new SYN gets no answer."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        for _ in range(8):
            filler = socket.socket()
            fillers.append(filler)
            filler.settimeout(0.2)
            try:
                filler.connect(("127.0.0.1", port))
            except TimeoutError:
                break
        else:
            pytest.skip("the kernel accepted every connection: cannot build a full backlog")
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_open_port() -> None:
    """An open port: ok, connect time as RTT, both phases, and a clean close seen by the peer."""
    async with server() as (port, seen):
        result = await run("127.0.0.1", port)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
    assert result.ok, result.error
    assert result.probe == "tcp"
    assert result.rtt is not None and 0 < result.rtt < 0.5
    assert [(p.name, p.ok) for p in result.phases] == [("resolve", True), ("connect", True)]
    assert result.details == {"port": port, "address": "127.0.0.1"}
    assert seen == [b""], "the peer should read EOF (FIN) and no data"


async def test_refused_is_fast() -> None:
    """A closed port fails at once with 'connection refused', not at the deadline."""
    port = free_port()
    started = time.monotonic()
    result = await run("127.0.0.1", port, deadline="3s")
    assert time.monotonic() - started < 0.5
    assert not result.ok
    assert result.error == "connection refused"
    assert [(p.name, p.ok) for p in result.phases] == [("resolve", True), ("connect", False)]
    assert result.rtt is None


async def test_unanswered_syn_times_out_at_the_deadline() -> None:
    """A listener with a full backlog drops our SYN: timeout in the connect phase."""
    with full_backlog() as port:
        before = open_fds()
        started = time.monotonic()
        result = await run("127.0.0.1", port, deadline="500ms")
        elapsed = time.monotonic() - started
        assert open_fds() == before, "the probe's socket must be closed on timeout"
    assert not result.ok
    assert result.error == "timeout after 0.5s (connect)"
    assert 0.45 <= elapsed < 1.0
    assert result.phases[-1].name == "connect" and result.phases[-1].detail == "timeout"


async def test_cancel_closes_the_socket() -> None:
    """Cancelling a probe stuck in connect closes its socket."""
    with full_backlog() as port:
        before = open_fds()
        task = asyncio.create_task(run("127.0.0.1", port, deadline="5s"))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert open_fds() == before


async def test_host_name_and_ipv6_literal() -> None:
    """'localhost' is resolved; an IPv6 literal connects over ::1."""
    async with server() as (port, _):
        by_name = await run("localhost", port)
    assert by_name.ok, by_name.error
    assert by_name.phases[0].name == "resolve" and "127.0.0.1" in by_name.phases[0].detail
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as check:
            check.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    async with server("::1") as (port6, _):
        v6 = await run("::1", port6)
    assert v6.ok, v6.error
    assert v6.details["address"] == "::1"


async def test_resolve_literals_and_names() -> None:
    """Literals come back as socket addresses without the resolver; names via getaddrinfo."""
    assert await resolve("127.0.0.1", 80, socket.SOCK_STREAM) == [
        (socket.AF_INET, ("127.0.0.1", 80))
    ]
    assert await resolve("::1", 80, socket.SOCK_DGRAM) == [(socket.AF_INET6, ("::1", 80, 0, 0))]
    named = await resolve("localhost", 5060, socket.SOCK_DGRAM)
    assert named and all(addr[1][1] == 5060 for addr in named)
    assert len(named) == len(set(named))


def test_describe_oserror() -> None:
    """Socket errors read as short stable reasons."""
    assert describe_oserror(ConnectionRefusedError(errno.ECONNREFUSED, "x")) == "connection refused"
    assert describe_oserror(OSError(errno.EHOSTUNREACH, "x")) == "host unreachable"
    assert describe_oserror(OSError(errno.ENETUNREACH, "x")) == "network unreachable"
    assert describe_oserror(OSError(errno.EMFILE, "Too many open files")) == "too many open files"


def test_no_route_and_no_resolver_in_empty_namespace() -> None:
    """In an empty network namespace, a name cannot resolve and 198.18.0.1 has no route."""
    lines = run_in_empty_netns(
        """
        import asyncio
        from monitor.inventory.model import TcpSettings
        from monitor.probes.base import ProbeContext
        from monitor.probes.tcp import probe

        async def main():
            async with ProbeContext() as ctx:
                for target in ["nowhere.invalid", "198.18.0.1"]:
                    r = await probe(target, TcpSettings(port=5060, timeout=3), ctx)
                    print(r.ok, r.phases[-1].name, r.error, r.duration < 2.5, sep="|")

        asyncio.run(main())
        """
    )
    assert lines[0].startswith("False|resolve|cannot resolve nowhere.invalid: ")
    assert lines[0].endswith("|True")
    assert lines[1] == "False|connect|network unreachable|True"
