"""Raw-socket clients for the lab tests: what a probe sends, written out by hand.

Nothing here imports the probes, so the lab is tested against the protocols
themselves, not against another module's reading of them.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any, cast

from monitor.inventory import Inventory, load_inventory
from monitor.lab import lab_inventory

TEST_INVENTORY = """\
monitor: {{name: "lab test"}}
profiles:
  hq:
    sip: {{port: {sip}}}
    media: {{port: {media}}}
    http: {{port: {http}, path: /status}}
  room:
    sip: {{port: {sip}, transport: tcp}}
    media: {{port: {media}}}
points:
  - id: hq
    name: "Quận Ba Đình"
    host: 10.24.1.1
    profile: hq
    points:
      - {{id: hq.a, name: "Phường Phúc Xá", host: 10.24.1.10, profile: room}}
      - {{id: hq.b, name: "Phường Trúc Bạch", host: 10.24.1.11, profile: room}}
  - id: other
    name: "Huyện Ba Vì"
    host: 10.24.2.1
    profile: hq
"""


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free for both UDP and TCP on 127.0.0.1 right now."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        if port not in ports:
            ports.append(port)
    return ports


def write_inventory(directory: Path) -> tuple[Inventory, dict[str, int]]:
    """The small test inventory on fresh ports, loaded from a file and mapped to lab addresses."""
    sip, media, http = free_ports(3)
    ports = {"sip": sip, "media": media, "http": http}
    path = directory / "lab.yaml"
    path.write_text(TEST_INVENTORY.format(**ports), encoding="utf-8")
    return lab_inventory(load_inventory(path)), ports


def big_inventory_yaml(points: int, ports: dict[str, int], per_district: int = 19) -> str:
    """An inventory of ``points`` points: districts with an HTTP status page, communes without."""
    lines = [
        "profiles:",
        f"  hq: {{sip: {{port: {ports['sip']}}}, media: {{port: {ports['media']}}}, "
        f"http: {{port: {ports['http']}, path: /status}}}}",
        f"  room: {{sip: {{port: {ports['sip']}}}, media: {{port: {ports['media']}}}}}",
        "points:",
    ]
    made = district = 0
    while made < points:
        children = min(per_district, points - made - 1)
        lines.append(
            f"  - {{id: d{district}, name: 'Quận {district}', host: 10.0.0.1, profile: hq,"
        )
        kids = ", ".join(
            f"{{id: d{district}.c{c}, name: 'Xã {c}', host: 10.0.0.1, profile: room}}"
            for c in range(children)
        )
        lines.append(f"     points: [{kids}]}}")
        made += 1 + children
        district += 1
    return "\n".join(lines) + "\n"


def open_fds() -> int:
    """Descriptors open in this process."""
    return len(os.listdir("/proc/self/fd"))


def sip_request(
    method: str = "OPTIONS",
    *,
    target: str = "127.20.0.1",
    via: str | None = None,
    via_port: int = 5060,
    call_id: str = "call-1@test",
    cseq: int = 1,
    to_tag: str | None = None,
    extra: str = "",
    content_length: bool = True,
) -> bytes:
    """A SIP request as a probe would write it."""
    via = via or f"SIP/2.0/UDP 127.0.0.1:{via_port};branch=z9hG4bK-{call_id}-{cseq};rport"
    to = f"<sip:{target}>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} sip:{target} SIP/2.0",
        f"Via: {via}",
        "Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK-second",
        "Max-Forwards: 70",
        'From: "confmon" <sip:confmon@127.0.0.1>;tag=from-tag-1',
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Accept: application/sdp",
        *([extra] if extra else []),
        *(["Content-Length: 0"] if content_length else []),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_sip(data: bytes) -> tuple[str, list[tuple[str, str]]]:
    """Status line and headers (name, value) of a SIP response."""
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    status, *lines = head.split("\r\n")
    headers = []
    for line in lines:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return status, headers


def header(headers: list[tuple[str, str]], name: str) -> list[str]:
    """Every value of header ``name``."""
    return [v for k, v in headers if k.lower() == name.lower()]


class UdpClient(asyncio.DatagramProtocol):
    """A UDP socket on 127.0.0.1 that timestamps what it receives on the loop's clock."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received: asyncio.Queue[tuple[bytes, float, Any]] = asyncio.Queue()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait((data, asyncio.get_running_loop().time(), addr))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes, addr: tuple[str, int]) -> float:
        """Send ``data``; the loop time just before it left (so a measured RTT is never short)."""
        assert self.transport is not None
        sent = asyncio.get_running_loop().time()
        self.transport.sendto(data, addr)
        return sent

    async def recv(self, within: float = 2.0) -> tuple[bytes, float]:
        """The next datagram and its arrival time; TimeoutError if none ``within`` seconds."""
        async with asyncio.timeout(within):
            data, at, _ = await self.received.get()
        return data, at

    async def nothing(self, wait: float = 0.4) -> bool:
        """True if nothing arrives within ``wait`` seconds."""
        try:
            await self.recv(wait)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def udp_client() -> UdpClient:
    """A new :class:`UdpClient` (close it when done)."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(UdpClient, local_addr=("127.0.0.1", 0))
    return protocol


async def read_http(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response (by Content-Length): status, headers (lower-case), body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def http_get(
    host: str, port: int, path: str, *, method: str = "GET", within: float = 2.0
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection with ``Connection: close``, all ``within`` seconds."""
    async with asyncio.timeout(within):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(
                f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
            )
            if method == "HEAD":
                head = await reader.readuntil(b"\r\n\r\n")
                rest = await reader.read()
                status = int(head.split()[1])
                return status, {}, rest
            return await read_http(reader)
        finally:
            writer.close()
            await writer.wait_closed()
