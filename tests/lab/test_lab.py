"""The lab as a whole: loopback only, clear errors, no descriptor leaks, 2,000 points at once."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.errors import ConfmonError
from monitor.inventory import Inventory, load_inventory, parse_inventory
from monitor.lab import Impairment, Lab, UnknownPointError, lab_inventory
from tests.lab.clients import (
    big_inventory_yaml,
    free_ports,
    http_get,
    open_fds,
    parse_sip,
    sip_request,
    udp_client,
)


def test_refuses_hosts_that_are_not_loopback(tmp_path: Path) -> None:
    """An inventory not mapped to the lab's addresses is refused before anything is bound."""
    (tmp_path / "x.yaml").write_text(
        "profiles: {p: {media: {}}}\npoints: [{id: a, name: A, host: 10.24.1.1, profile: p}]\n"
    )
    with pytest.raises(ConfmonError) as exc:
        Lab(load_inventory(tmp_path / "x.yaml"))
    message = str(exc.value)
    assert "point 'a': host '10.24.1.1' is not a loopback address" in message
    assert "lab_inventory" in message and "\n" not in message


def test_refuses_host_names_and_shared_addresses() -> None:
    """A host name, or two points on one address, is refused with the reason."""
    named = parse_inventory(
        "profiles: {p: {media: {}}}\npoints: [{id: a, name: A, host: localhost, profile: p}]\n"
    )
    with pytest.raises(ConfmonError, match="'localhost' is not a loopback address"):
        Lab(named)
    shared = parse_inventory(
        "profiles: {p: {media: {}}}\npoints: [{id: a, name: A, host: 127.20.0.1, profile: p},"
        " {id: b, name: B, host: 127.20.0.1, profile: p}]\n"
    )
    with pytest.raises(ConfmonError, match=re.escape("points 'a' and 'b' share host 127.20.0.1")):
        Lab(shared)


def test_refuses_a_profile_whose_ports_collide() -> None:
    """SIP and media on one UDP port cannot both be served: the profile is named.

    The config loader refuses such a file already; the lab keeps its own check for an
    inventory made in code, which this one is."""
    from monitor.probes.media import MediaSettings

    valid = parse_inventory(
        "profiles: {p: {sip: {port: 5060}, media: {port: 7078}}}\n"
        "points: [{id: a, name: A, host: 127.20.0.1, profile: p}]\n"
    )
    colliding = valid.profiles["p"].model_copy(update={"media": MediaSettings(port=5060)})
    inv = dataclasses.replace(valid, profiles={"p": colliding})
    with pytest.raises(
        ConfmonError, match=re.escape("profile 'p': media.port 5060 is also the SIP port")
    ):
        Lab(inv)


async def test_bind_conflict_is_clear_and_leaks_nothing(
    inventory: tuple[Inventory, dict[str, int]],
) -> None:
    """A port already taken fails start() with one line naming the point; nothing stays open."""
    inv, ports = inventory
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.20.0.3", ports["media"]))
        before = open_fds()
        lab = Lab(inv)
        with pytest.raises(ConfmonError) as exc:
            await lab.start()
        assert open_fds() == before
    assert str(exc.value).startswith(
        f"cannot listen on 127.20.0.3:{ports['media']}/udp (media of point 'hq.b'): "
    )
    assert "another confmon lab" in str(exc.value)
    assert not lab.running


async def test_start_stop_leaks_no_descriptor(inventory: tuple[Inventory, dict[str, int]]) -> None:
    """After stop() (called twice) every socket and connection of the lab is closed."""
    inv, ports = inventory
    before = open_fds()
    lab = Lab(inv)
    await lab.start()
    assert open_fds() == before + len(lab.endpoints) == before + 14
    _reader, writer = await asyncio.open_connection("127.20.0.1", ports["http"])
    await asyncio.sleep(0.05)
    assert lab.stats()["connections"] == 1
    await lab.stop()
    await lab.stop()
    writer.close()
    await writer.wait_closed()
    assert open_fds() == before


async def test_unknown_point_is_named() -> None:
    """Impairing a point the lab does not have is an error with a suggestion."""
    inv = parse_inventory(
        "profiles: {p: {media: {}}}\npoints: [{id: ba-vi, name: A, host: 127.20.0.1, profile: p}]\n"
    )
    lab = Lab(inv)
    with pytest.raises(
        UnknownPointError, match=r"no point 'ba-vy' in the lab \(did you mean 'ba-vi'\?\)"
    ):
        lab.set_impairment("ba-vy", Impairment(down=True))


async def test_plain_tcp_port_closes_while_down() -> None:
    """A profile's tcp port accepts connections, is refused while the point is down, then reopens."""
    (port,) = free_ports(1)
    inv = parse_inventory(
        f"profiles: {{p: {{tcp: {{port: {port}}}, http: {{scheme: https}}}}}}\n"
        "points: [{id: a, name: A, host: 127.20.0.1, profile: p}]\n"
    )
    async with Lab(inv) as lab:
        assert lab.unsimulated == {"https": 1}
        _, writer = await asyncio.open_connection("127.20.0.1", port)
        writer.close()
        await writer.wait_closed()
        lab.set_impairment("a", Impairment(down=True))
        await asyncio.sleep(0.05)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.20.0.1", port)
        lab.clear("a")
        await asyncio.sleep(0.05)
        _, writer = await asyncio.open_connection("127.20.0.1", port)
        writer.close()
        await writer.wait_closed()


_FD_LIMIT_CHILD = """
import asyncio, os, resource, sys
from monitor.errors import ConfmonError
from monitor.inventory import parse_inventory
from monitor.lab import Lab, lab_inventory
points = ", ".join(f"{{id: p{i}, name: P, host: 10.0.0.{i}, profile: p}}" for i in range(1, 101))
inv = lab_inventory(parse_inventory("profiles: {p: {sip: {}, media: {}}}\\npoints: [" + points + "]"))
resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))
if os.geteuid() == 0:  # root could raise the hard limit again: become nobody
    os.setgid(65534)
    os.setuid(65534)
try:
    asyncio.run(Lab(inv).start())
except ConfmonError as exc:
    print(exc)
    sys.exit(3)
"""


def test_fd_limit_error_says_how_many_are_needed() -> None:
    """With too few descriptors allowed, start() fails in one line saying how many it needs."""
    proc = subprocess.run(
        [sys.executable, "-c", _FD_LIMIT_CHILD],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("the lab (100 points) needs ")
    needed = int(lines[0].split(" needs ")[1].split()[0])
    assert needed >= 100 * 3 + 1024  # sockets, connection cap, reserve
    assert f"at most 200 ('ulimit -Hn'); raise the limit (e.g. 'ulimit -n {needed}'" in lines[0]


async def test_two_thousand_points(tmp_path: Path) -> None:
    """2,000 points start, a sample of 50 answers on every service, and stop without a leak."""
    ports = dict(zip(("sip", "media", "http"), free_ports(3), strict=True))
    inv = lab_inventory(parse_inventory(big_inventory_yaml(2000, ports)))
    before = open_fds()
    started = time.perf_counter()
    lab = Lab(inv, seed=1)
    await lab.start()
    try:
        startup = time.perf_counter() - started
        assert open_fds() == before + len(lab.endpoints)
        sample = random.Random(5).sample(list(inv.points.values()), 50)

        async def check(point_host: str, has_http: bool) -> None:
            client = await udp_client()
            try:
                client.send(
                    sip_request(target=point_host, via_port=client.port), (point_host, ports["sip"])
                )
                assert parse_sip((await client.recv(5))[0])[0] == "SIP/2.0 200 OK"
                client.send(b"echo", (point_host, ports["media"]))
                assert (await client.recv(5))[0] == b"echo"
            finally:
                client.close()
            if has_http:
                status, _, body = await http_get(point_host, ports["http"], "/status", within=5)
                assert status == 200 and json.loads(body)["status"] == "ok"

        await asyncio.gather(*(check(p.host, p.depth == 0) for p in sample))
        assert any(p.depth == 0 for p in sample)
    finally:
        await lab.stop()
    assert open_fds() == before
    assert startup < 8.0


async def test_idle_connections_are_closed(inventory: tuple[Inventory, dict[str, int]]) -> None:
    """A connection that sends nothing is closed after the idle timeout."""
    inv, ports = inventory
    async with Lab(inv, idle_timeout=0.2) as lab:
        reader, writer = await asyncio.open_connection("127.20.0.1", ports["http"])
        try:
            async with asyncio.timeout(5):
                assert await reader.read() == b""
            assert lab.stats()["connections"] == 0
        finally:
            writer.close()
            await writer.wait_closed()


async def test_connection_cap_refuses_extra_connections(
    inventory: tuple[Inventory, dict[str, int]],
) -> None:
    """Beyond max_connections a new connection is reset at once; the others keep working."""
    inv, ports = inventory
    async with Lab(inv, max_connections=2) as lab:
        streams = [await asyncio.open_connection("127.20.0.1", ports["http"]) for _ in range(3)]
        try:
            async with asyncio.timeout(5):
                with contextlib.suppress(ConnectionResetError):  # reset, or EOF if it raced
                    assert await streams[2][0].read() == b""
            assert lab.stats()["refused_connections"] == 1
            streams[0][1].write(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
            async with asyncio.timeout(5):
                assert (await streams[0][0].readline()).startswith(b"HTTP/1.1 200")
        finally:
            for _, writer in streams:
                writer.close()
                with contextlib.suppress(ConnectionResetError):
                    await writer.wait_closed()
