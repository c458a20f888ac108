"""SIP OPTIONS probe: the parser, the request, and probes of real peers.

Real peers: Kamailio (tests/kamailio.py) for the ordinary answers, and small
asyncio UDP/TCP responders of our own for what a stock server will not do on
demand (drop requests, stay silent, send strays, answer slowly).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor import __version__
from monitor.core.results import ProbeResult
from monitor.inventory.model import SipSettings
from monitor.probes.base import ProbeContext
from monitor.probes.sip import (
    MAX_RESPONSE_BYTES,
    T1,
    build_options,
    parse_response,
    probe,
    split_message,
)
from tests.helpers import free_port, run_in_empty_netns
from tests.kamailio import Kamailio, kamailio_server  # noqa: F401

KAMAILIO_200 = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:41603;branch=z9hG4bKabc;rport=41603;received=127.0.0.1\r\n"
    b"From: <sip:confmon@127.0.0.1>;tag=1\r\n"
    b"To: <sip:127.0.0.1:25060>;tag=5497176f96ac98204aead303f19a0d17.694bb255\r\n"
    b"Call-ID: x@127.0.0.1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Server: kamailio (5.6.3 (x86_64/linux))\r\n"
    b"Content-Length: 0\r\n\r\n"
)


async def run(target: str, **kwargs: object) -> ProbeResult:
    """Run the probe with settings built from keyword arguments."""
    async with ProbeContext() as ctx:
        return await probe(target, SipSettings.model_validate(kwargs), ctx)


# --- parser ---------------------------------------------------------------------------


def test_parse_kamailio_reply() -> None:
    """A reply captured from Kamailio parses into status, reason, headers and branch."""
    response = parse_response(KAMAILIO_200)
    assert response is not None
    assert (response.status, response.reason, response.version) == (200, "OK", "2.0")
    assert response.header("SERVER") == "kamailio (5.6.3 (x86_64/linux))"
    assert response.header("call-id") == "x@127.0.0.1"
    assert response.cseq == (1, "OPTIONS")
    assert response.top_via_branch == "z9hG4bKabc"
    assert response.body == b""


def test_parse_compact_headers() -> None:
    """Compact names (v, i, l, f, t, m) map to the long names, in any case."""
    data = (
        b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 10.0.0.1;BRANCH=z9hG4bKx\r\nI: abc@h\r\n"
        b"f: <sip:a@h>;tag=1\r\nt: <sip:b@h>\r\nm: <sip:c@h>\r\nL: 4\r\n\r\nbodyTRAILING"
    )
    response = parse_response(data)
    assert response is not None
    assert response.header("Via") == "SIP/2.0/UDP 10.0.0.1;BRANCH=z9hG4bKx"
    assert response.header("Call-ID") == response.header("i") == "abc@h"
    assert response.header("from") == "<sip:a@h>;tag=1"
    assert response.header("to") == "<sip:b@h>"
    assert response.header("contact") == "<sip:c@h>"
    assert response.top_via_branch == "z9hG4bKx"
    assert response.body == b"body"


def test_parse_folded_lines_and_lf_only() -> None:
    """Folded header lines are joined; LF-only line ends and leading CRLFs are accepted."""
    data = (
        b"\r\n\r\nSIP/2.0 486 Busy Here\nServer: Polycom RealPresence\n\t Group Series/6.2\n"
        b"Call-ID: a\n  b\nNoColonLine\nCSeq:1   options\n\nignored"
    )
    response = parse_response(data)
    assert response is not None
    assert (response.status, response.reason) == (486, "Busy Here")
    assert response.header("server") == "Polycom RealPresence Group Series/6.2"
    assert response.header("call-id") == "a b"
    assert response.cseq == (1, "OPTIONS")
    assert [name for name, _ in response.headers] == ["server", "call-id", "cseq"]


@pytest.mark.parametrize("blank", [b"\r\n\r\n", b"\n\n", b"\r\n\n", b"\n\r\n"])
def test_the_head_ends_at_the_first_blank_line_whatever_its_line_ends(blank: bytes) -> None:
    """CRLF, bare LF or a mix of the two end the head; the body after it is cut to its
    Content-Length (compact or long name), and a blank line inside the body is the body's."""
    data = b"SIP/2.0 200 OK\r\nl: 6\r\nCall-ID: x" + blank + b"ab\n\ncdEXTRA"
    response = parse_response(data)
    assert response is not None
    assert response.header("call-id") == "x"
    assert response.body == b"ab\n\ncd"
    framed = split_message(data)
    assert framed is not None and framed[1] == b"EXTRA"


def test_parse_missing_reason_and_multiple_via() -> None:
    """A status line without a reason phrase parses; the top Via is the first element."""
    data = (
        b"SIP/2.0 200\r\nVia: SIP/2.0/UDP a;branch=z9hG4bKtop, SIP/2.0/UDP b;branch=z9hG4bKb\r\n"
        b"Via: SIP/2.0/UDP c;branch=z9hG4bKc\r\n\r\n"
    )
    response = parse_response(data)
    assert response is not None
    assert (response.status, response.reason) == (200, "")
    assert response.top_via_branch == "z9hG4bKtop"
    assert len(response.header_values("v")) == 2


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n\r\n",
        b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"SIP/2.0 099 Too Low\r\n\r\n",
        b"SIP/2.0 700 Too High\r\n\r\n",
        b"SIP/2.0 2000 OK\r\n\r\n",
        b"SIP/2.0 OK\r\n\r\n",
        b"\xff\xfe\x00garbage",
    ],
)
def test_parse_rejects_non_responses(data: bytes) -> None:
    """Requests, other protocols, bad status codes and garbage are not responses."""
    assert parse_response(data) is None


def test_parse_invalid_utf8_is_replaced() -> None:
    """Invalid UTF-8 in a header does not stop the parse."""
    response = parse_response(b"SIP/2.0 200 OK\r\nServer: caf\xe9\r\n\r\n")
    assert response is not None
    assert response.header("server") == "caf\ufffd"


def test_split_message_frames_a_stream() -> None:
    """Stream framing waits for the whole head and the Content-Length body."""
    first = b"SIP/2.0 100 Trying\r\nContent-Length: 0\r\n\r\n"
    second = b"SIP/2.0 200 OK\r\nl: 5\r\n\r\nhello"
    stream = b"\r\n\r\n" + first + second
    assert split_message(stream[:20]) is None
    assert split_message(b"\r\n") is None
    framed = split_message(stream)
    assert framed == (first, second)
    assert split_message(second[:-1]) is None
    assert split_message(second + b"SIP") == (second, b"SIP")


@given(st.binary(max_size=2000))
@settings(max_examples=500, deadline=None)
def test_fuzz_arbitrary_bytes_never_raise(data: bytes) -> None:
    """Arbitrary bytes never make the parser or the framer raise."""
    response = parse_response(data)
    if response is not None:
        assert 100 <= response.status <= 699
    framed = split_message(data)
    if framed is not None:
        message, rest = framed
        assert data.endswith(message + rest)


_HEADER_NAMES = st.sampled_from(
    ["Via", "v", "Call-ID", "i", "l", "Content-Length", "CSeq", "Server", "X-É", "", " "]
)
_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)


@given(
    code=st.integers(min_value=0, max_value=1000),
    reason=_TEXT,
    headers=st.lists(st.tuples(_HEADER_NAMES, _TEXT), max_size=12),
    newline=st.sampled_from(["\r\n", "\n"]),
    body=st.binary(max_size=50),
)
@settings(max_examples=500, deadline=None)
def test_fuzz_response_like_input(
    code: int, reason: str, headers: list[tuple[str, str]], newline: str, body: bytes
) -> None:
    """Near-valid responses (odd codes, headers, values, line ends) never raise."""
    head = newline.join([f"SIP/2.0 {code:03d} {reason}", *(f"{n}:{v}" for n, v in headers)])
    data = (head + newline + newline).encode() + body
    response = parse_response(data)
    if response is not None:
        assert response.status == code
    split_message(data)


def test_build_options_is_rfc3261_shaped() -> None:
    """The request has every mandatory header, CRLF line ends and brackets IPv6."""
    request = build_options(
        transport="tcp",
        host="2001:db8::1",
        port=5061,
        local_ip="::1",
        local_port=40000,
        branch="z9hG4bKabc",
        tag="t1",
        call_id="c1@[::1]",
    )
    assert request.endswith(b"\r\n\r\n")
    lines = request.decode().split("\r\n")[:-2]
    assert all("\n" not in line for line in lines)
    assert lines[0] == "OPTIONS sip:[2001:db8::1]:5061 SIP/2.0"
    assert lines[1:] == [
        "Via: SIP/2.0/TCP [::1]:40000;branch=z9hG4bKabc;rport",
        "Max-Forwards: 70",
        "From: <sip:confmon@[::1]>;tag=t1",
        "To: <sip:[2001:db8::1]:5061>",
        "Call-ID: c1@[::1]",
        "CSeq: 1 OPTIONS",
        "Contact: <sip:confmon@[::1]:40000;transport=tcp>",
        "Accept: application/sdp",
        f"User-Agent: confmon/{__version__}",
        "Content-Length: 0",
    ]


# --- our own responders ------------------------------------------------------------------


def request_headers(request: bytes) -> dict[str, str]:
    """The request's headers by name (our requests use long names, one per line)."""
    lines = request.decode().split("\r\n")
    return dict(line.split(": ", 1) for line in lines[1:] if ": " in line)


def reply(
    request: bytes,
    status: str = "200 OK",
    *,
    branch: str | None = None,
    call_id: str | None = None,
    cseq: str | None = None,
    extra: str = "",
) -> bytes:
    """A response to ``request``, copying the matching headers unless overridden."""
    headers = request_headers(request)
    via = headers["Via"]
    if branch is not None:
        via = via.replace(via.split("branch=")[1].split(";")[0], branch)
    return (
        f"SIP/2.0 {status}\r\nVia: {via}\r\nFrom: {headers['From']}\r\n"
        f"To: {headers['To']};tag=resp\r\nCall-ID: {call_id or headers['Call-ID']}\r\n"
        f"CSeq: {cseq or headers['CSeq']}\r\nServer: test-responder\r\n{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


Behaviour = Callable[[int, bytes], list[bytes]]
"""Given the request's index (0 = first) and bytes, the datagrams to send back."""


@dataclass
class Responder(asyncio.DatagramProtocol):
    """A UDP peer that records each request (arrival time, bytes, source) and answers."""

    behaviour: Behaviour
    received: list[tuple[float, bytes, tuple[str, int]]] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # not a subclass on 3.11

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        assert self.transport is not None
        self.received.append((time.monotonic(), data, (str(addr[0]), int(str(addr[1])))))
        for datagram in self.behaviour(len(self.received) - 1, data):
            self.transport.sendto(datagram, addr)


@asynccontextmanager
async def responder(
    behaviour: Behaviour, host: str = "127.0.0.1"
) -> AsyncIterator[tuple[Responder, int]]:
    """A :class:`Responder` on a free UDP port of ``host``; yields it and the port."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: Responder(behaviour), local_addr=(host, 0)
    )
    try:
        yield protocol, int(transport.get_extra_info("sockname")[1])
    finally:
        transport.close()
        await asyncio.sleep(0)  # let the transport finish closing inside the test's loop


def answer_nth(n: int, status: str = "200 OK") -> Behaviour:
    """Drop the first ``n`` requests, answer the next ones."""
    return lambda index, request: [reply(request, status)] if index >= n else []


async def test_udp_request_as_received() -> None:
    """The datagram on the wire is our OPTIONS, Via/Contact naming the real source address."""
    async with responder(answer_nth(0)) as (peer, port):
        result = await run("127.0.0.1", port=port)
    assert result.ok, result.error
    [(_, request, source)] = peer.received
    first, *_ = request.decode().split("\r\n")
    assert first == f"OPTIONS sip:127.0.0.1:{port} SIP/2.0"
    headers = request_headers(request)
    assert headers["Via"].startswith(f"SIP/2.0/UDP 127.0.0.1:{source[1]};branch=z9hG4bK")
    assert headers["Via"].endswith(";rport")
    assert headers["Contact"] == f"<sip:confmon@127.0.0.1:{source[1]}>"
    assert headers["Call-ID"].endswith("@127.0.0.1")
    assert headers["CSeq"] == "1 OPTIONS"
    assert headers["Max-Forwards"] == "70"
    assert headers["User-Agent"] == f"confmon/{__version__}"
    assert result.details["local"] == f"127.0.0.1:{source[1]}"
    assert result.details["server"] == "test-responder"
    assert result.details["notes"] == []


async def test_udp_retransmits_on_timer_e() -> None:
    """Two dropped requests: the third is answered, sent ≈0.5 s then ≈1 s after the last."""
    async with responder(answer_nth(2)) as (peer, port):
        result = await run("127.0.0.1", port=port, timeout="4s")
    assert result.ok, result.error
    assert result.details["retransmissions"] == 2
    times = [t for t, _, _ in peer.received]
    assert len(times) == 3
    assert len({data for _, data, _ in peer.received}) == 1, "retransmissions must be identical"
    first_gap, second_gap = times[1] - times[0], times[2] - times[1]
    assert 0.8 * T1 <= first_gap <= T1 + 0.4
    assert 1.6 * T1 <= second_gap <= 2 * T1 + 0.4
    assert result.rtt is not None and result.rtt >= first_gap + second_gap - 0.05
    assert 0 < result.details["rtt_last_send"] < 0.4


async def test_udp_silent_peer_times_out_with_doubling_retransmissions() -> None:
    """Nobody answers: sends at 0, 0.5, 1.5 s, then a timeout failure near the deadline."""
    async with responder(lambda index, request: []) as (peer, port):
        started = time.monotonic()
        result = await run("127.0.0.1", port=port, timeout="2s")
        elapsed = time.monotonic() - started
    assert not result.ok
    assert result.error == "no response within 2s (3 sent)"
    assert 2.0 <= elapsed < 2.6
    assert len(peer.received) == 3
    assert result.details["retransmissions"] == 2
    assert [(p.name, p.ok) for p in result.phases] == [
        ("resolve", True),
        ("send", True),
        ("response", False),
    ]


async def test_udp_provisional_switches_timer_e_to_t2() -> None:
    """After a 180 (Proceeding) the next retransmission waits T2 = 4 s, not 1 s."""

    def ringing_once(index: int, request: bytes) -> list[bytes]:
        return [reply(request, "180 Ringing")] if index == 0 else []

    async with responder(ringing_once) as (peer, port):
        result = await run("127.0.0.1", port=port, timeout="2s")
    assert not result.ok
    # Timer E set at T1 before the 180 still fires at 0.5 s; the next would be at 4.5 s.
    assert len(peer.received) == 2
    assert result.details["provisional"] == [180]


async def test_udp_provisional_then_final() -> None:
    """A 100 Trying is noted and the probe waits for the final answer."""

    def trying_then_ok(index: int, request: bytes) -> list[bytes]:
        return [reply(request, "100 Trying")] if index == 0 else [reply(request)]

    async with responder(trying_then_ok) as (_, port):
        result = await run("127.0.0.1", port=port, timeout="2s")
    assert result.ok, result.error
    assert result.details["provisional"] == [100]
    assert result.details["retransmissions"] == 1
    assert result.details["status"] == 200


async def test_udp_provisional_listed_as_alive_ends_probe() -> None:
    """A 1xx listed in alive_codes ends the probe as alive at once."""

    def trying_only(index: int, request: bytes) -> list[bytes]:
        return [reply(request, "100 Trying")]

    async with responder(trying_only) as (peer, port):
        result = await run("127.0.0.1", port=port, alive_codes=[100, 200])
    assert result.ok, result.error
    assert result.details["status"] == 100
    assert len(peer.received) == 1


async def test_udp_strays_are_ignored() -> None:
    """Replies with a wrong branch, Call-ID or CSeq, and garbage, are ignored; the real one counts."""

    def strays_first(index: int, request: bytes) -> list[bytes]:
        return [
            reply(request, "486 Busy Here", branch="z9hG4bKother"),
            reply(request, "487 Wrong Call", call_id="someone-else@x"),
            reply(request, "488 Wrong CSeq", cseq="2 OPTIONS"),
            b"\x00\x01 not sip at all",
            reply(request, "200 OK"),
        ]

    async with responder(strays_first) as (_, port):
        result = await run("127.0.0.1", port=port)
    assert result.ok, result.error
    assert result.details["status"] == 200
    assert result.details["strays"] == 4


async def test_udp_port_unreachable_fails_fast() -> None:
    """A UDP port nobody listens on fails at once on the ICMP error, not at the deadline."""
    port = free_port(socket.SOCK_DGRAM)
    started = time.monotonic()
    result = await run("127.0.0.1", port=port, timeout="3s")
    assert not result.ok
    assert result.error == "port unreachable"
    assert time.monotonic() - started < 1.0
    assert result.phases[-1].name == "response"


async def test_udp_ipv6_literal() -> None:
    """An IPv6 target is bracketed in the Request-URI and reached over ::1."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as check:
            check.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    async with responder(answer_nth(0), host="::1") as (peer, port):
        result = await run("::1", port=port)
    assert result.ok, result.error
    first = peer.received[0][1].decode().split("\r\n")[0]
    assert first == f"OPTIONS sip:[::1]:{port} SIP/2.0"
    assert request_headers(peer.received[0][1])["Via"].startswith("SIP/2.0/UDP [::1]:")


async def test_udp_host_name_is_resolved() -> None:
    """A host name is resolved (here localhost) and kept in the Request-URI."""
    infos = await asyncio.get_running_loop().getaddrinfo("localhost", 0, type=socket.SOCK_DGRAM)
    family, _, _, _, sockaddr = infos[0]
    host = str(sockaddr[0])
    async with responder(answer_nth(0), host=host) as (peer, port):
        result = await run("localhost", port=port)
    assert result.ok, result.error
    assert result.details["address"] == host
    assert peer.received[0][1].startswith(f"OPTIONS sip:localhost:{port} SIP/2.0".encode())
    assert family in (socket.AF_INET, socket.AF_INET6)


async def test_cancelled_probe_stops_retransmitting() -> None:
    """Cancelling a probe closes its socket and disarms Timer E."""
    async with responder(lambda index, request: []) as (peer, port):
        task = asyncio.create_task(run("127.0.0.1", port=port, timeout="5s"))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(2 * T1)
    assert len(peer.received) == 1


# --- TCP against our own server ----------------------------------------------------------


@asynccontextmanager
async def tcp_server(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    """An asyncio TCP server on 127.0.0.1 running ``handler``; yields its port."""

    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        finally:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(wrapped, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request head from a stream (our requests have no body)."""
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)


async def test_tcp_fragmented_reply_after_keepalive_and_provisional() -> None:
    """A CRLF keepalive, a 100 and a 200 with a body, sent in pieces, are framed right."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        body = b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\n"
        final = reply(request).replace(b"Length: 0", b"Length: %d" % len(body)) + body
        stream = b"\r\n\r\n" + reply(request, "100 Trying") + final
        for start in range(0, len(stream), 97):
            writer.write(stream[start : start + 97])
            await writer.drain()
            await asyncio.sleep(0.01)

    async with tcp_server(handler) as port:
        result = await run("127.0.0.1", port=port, transport="tcp")
    assert result.ok, result.error
    assert result.details["provisional"] == [100]
    assert result.details["retransmissions"] == 0
    assert [p.name for p in result.phases] == ["resolve", "connect", "send", "response"]


async def test_tcp_closed_without_answer() -> None:
    """A peer that reads the request and hangs up is a failure with that reason."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with tcp_server(handler) as port:
        result = await run("127.0.0.1", port=port, transport="tcp")
    assert not result.ok
    assert result.error == "connection closed before a final response"


async def test_tcp_oversized_reply_is_bounded() -> None:
    """Endless header bytes stop the read at 64 KiB, well before the deadline."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SIP/2.0 200 OK\r\n")
        for _ in range(2 * MAX_RESPONSE_BYTES // 1024):
            writer.write(b"X-Filler: " + b"a" * 1010 + b"\r\n")
            await writer.drain()
        await asyncio.sleep(3)

    started = time.monotonic()
    async with tcp_server(handler) as port:
        result = await run("127.0.0.1", port=port, transport="tcp", timeout="3s")
        assert time.monotonic() - started < 2.0
    assert not result.ok
    assert result.error == "no final response in the first 64 KiB"


async def test_tcp_refused_fails_fast() -> None:
    """A closed TCP port fails at once with 'connection refused' in the connect phase."""
    port = free_port()
    started = time.monotonic()
    result = await run("127.0.0.1", port=port, transport="tcp", timeout="3s")
    assert time.monotonic() - started < 1.0
    assert not result.ok
    assert result.error == "connection refused"
    assert result.phases[-1].name == "connect"


# --- the real Kamailio -------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_kamailio_answers_200(kamailio: Kamailio, transport: str) -> None:
    """Kamailio answers OPTIONS with 200 over UDP and TCP; Server and RTT are reported."""
    result = await run(kamailio.host, port=kamailio.port, transport=transport)
    assert result.ok, result.error
    assert result.probe == "sip"
    assert result.details["status"] == 200
    assert result.details["reason"] == "OK"
    assert result.details["transport"] == transport
    assert "kamailio" in str(result.details["server"])
    assert result.details["retransmissions"] == 0
    assert result.rtt is not None and 0 < result.rtt < 1.0
    assert result.rtt <= result.duration
    assert all(p.ok for p in result.phases)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_kamailio_503_is_alive_with_a_note(kamailio: Kamailio, transport: str) -> None:
    """A 503 (after 100 Trying) is alive by default, with the status and a visible note."""
    result = await run(kamailio.host, port=kamailio.port_unavailable, transport=transport)
    assert result.ok, result.error
    assert result.details["status"] == 503
    assert result.details["provisional"] == [100]
    notes = result.details["notes"]
    assert isinstance(notes, list) and notes[0].startswith("503 Service Unavailable")
    strict = await run(
        kamailio.host, port=kamailio.port_unavailable, transport=transport, alive_codes=[200]
    )
    assert not strict.ok
    assert strict.error == "503 Service Unavailable (alive: 200)"
    assert strict.phases[-1].name == "response" and not strict.phases[-1].ok


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_kamailio_404_depends_on_alive_codes(kamailio: Kamailio, transport: str) -> None:
    """404 proves a SIP stack (alive by default) but fails with alive_codes=[200]."""
    loose = await run(kamailio.host, port=kamailio.port_not_found, transport=transport)
    assert loose.ok, loose.error
    assert loose.details["status"] == 404
    assert loose.details["notes"] == ["404 Not Found: counted alive, a SIP stack answered"]
    strict = await run(
        kamailio.host, port=kamailio.port_not_found, transport=transport, alive_codes=[200]
    )
    assert not strict.ok
    assert strict.error == "404 Not Found (alive: 200)"
    assert strict.details["status"] == 404


async def test_kamailio_many_concurrent_probes(kamailio: Kamailio) -> None:
    """Fifty concurrent probes each get their own matching answer."""
    results = await asyncio.gather(
        *(run(kamailio.host, port=kamailio.port, timeout="3s") for _ in range(50))
    )
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert len({r.details["local"] for r in results}) == 50


# --- failures that need a network of our own ---------------------------------------------


def test_no_route_and_no_resolver_in_empty_namespace() -> None:
    """In an empty network namespace, a name cannot resolve and 198.18.0.1 has no route."""
    lines = run_in_empty_netns(
        """
        import asyncio
        from monitor.inventory.model import SipSettings
        from monitor.probes.base import ProbeContext
        from monitor.probes.sip import probe

        async def main():
            async with ProbeContext() as ctx:
                for target, transport in [
                    ("nowhere.invalid", "udp"),
                    ("198.18.0.1", "udp"),
                    ("198.18.0.1", "tcp"),
                ]:
                    r = await probe(target, SipSettings(transport=transport, timeout=3), ctx)
                    print(r.ok, r.phases[-1].name, r.error, r.duration < 2.5, sep="|")

        asyncio.run(main())
        """
    )
    assert lines[0].startswith("False|resolve|cannot resolve nowhere.invalid: ")
    assert lines[0].endswith("|True")
    assert lines[1:] == [
        "False|send|network unreachable|True",
        "False|connect|network unreachable|True",
    ]


# --- kernel receive timestamps and socket lifetime -----------------------------------------


async def test_udp_rtt_ignores_event_loop_lag() -> None:
    """The loop blocked 200 ms after the answer arrived: rtt is the kernel's, not the loop's."""
    loop = asyncio.get_running_loop()

    def answer_then_block(index: int, request: bytes) -> list[bytes]:
        # Runs on the next loop iteration, after the reply below is already in the probe's
        # receive queue and before the probe's reader: a deliberate block, test only.
        loop.call_soon(time.sleep, 0.2)
        return [reply(request)]

    rtts: list[float] = []
    for _ in range(3):  # several samples: one slow scheduling on a loaded machine is no proof
        async with responder(answer_then_block) as (_, port):
            result = await run("127.0.0.1", port=port)
        assert result.ok, result.error
        assert result.duration >= 0.2
        assert result.rtt is not None
        assert result.details["rtt_last_send"] == result.rtt
        rtts.append(result.rtt)
    assert min(rtts) < 0.05, rtts


def open_fds() -> int:
    """How many descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


async def test_udp_sockets_closed_on_every_exit_path() -> None:
    """Success, timeout, port unreachable and cancellation all leave no descriptor behind."""
    before = open_fds()
    async with responder(answer_nth(0)) as (_, port):
        for _ in range(5):
            assert (await run("127.0.0.1", port=port)).ok
    async with responder(lambda index, request: []) as (_, port):
        result = await run("127.0.0.1", port=port, timeout="0.3s")
        assert result.error == "no response within 0.3s (1 sent)"
        task = asyncio.create_task(run("127.0.0.1", port=port, timeout="5s"))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    refused = await run("127.0.0.1", port=free_port(socket.SOCK_DGRAM), timeout="3s")
    assert refused.error == "port unreachable"
    await asyncio.sleep(0)
    assert open_fds() == before


async def test_a_response_from_another_address_of_the_server_is_accepted() -> None:
    """A multi-homed or clustered SBC answering from another address: the response matches
    the transaction (branch, Call-ID, CSeq) and is taken, as RFC 3261 says; a datagram from
    that address that is not ours is still a stray."""
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.2", 0))
    other.setblocking(False)

    def from_elsewhere(index: int, request: bytes) -> list[bytes]:
        source = ("127.0.0.1", int(request_headers(request)["Via"].split(":")[1].split(";")[0]))
        other.sendto(b"SIP/2.0 200 OK\r\nCall-ID: not-ours\r\nCSeq: 1 OPTIONS\r\n\r\n", source)
        other.sendto(reply(request, "200 OK"), source)
        return []

    try:
        async with responder(from_elsewhere) as (_, port):
            result = await run("127.0.0.1", port=port)
    finally:
        other.close()
    assert result.ok, result.error
    assert result.details["status"] == 200


async def test_probes_share_one_socket_and_a_refused_port_fails_only_its_own() -> None:
    """200 probes at once over one context use one UDP socket; the ICMP port unreachable
    caused by one probe's request fails that probe at once (the error queue names it by
    the branch quoted back) and no other; the others are answered."""
    closed = free_port(socket.SOCK_DGRAM)
    async with responder(answer_nth(0)) as (peer, port), ProbeContext() as ctx:
        fds = open_fds()
        settings = SipSettings.model_validate({"port": port, "timeout": "5s"})
        refused = SipSettings.model_validate({"port": closed, "timeout": "5s"})
        started = time.monotonic()
        results = await asyncio.gather(
            *(probe("127.0.0.1", refused if i == 100 else settings, ctx) for i in range(200))
        )
        took = time.monotonic() - started
        assert open_fds() - fds <= 1, "one socket for every probe"
    assert [r.error for r in results if not r.ok] == ["port unreachable"]
    assert results[100].error == "port unreachable" and took < 4.0  # not the 5 s deadline
    assert len(peer.received) == 199
    assert {r.details["local"] for r in results} == {results[0].details["local"]}


async def test_a_late_answer_after_the_deadline_is_a_stray_not_an_answer() -> None:
    """A response that arrives after its probe gave up matches no transaction: it is a
    stray of the probe to that address then, and is not taken as that probe's answer."""
    held: list[bytes] = []

    def late(index: int, request: bytes) -> list[bytes]:
        if index == 0:
            held.append(reply(request, "200 OK"))
            return []
        return [*held, reply(request, "200 OK")]  # the late one first, then the real one

    async with responder(late) as (_, port), ProbeContext() as ctx:
        settings = SipSettings.model_validate({"port": port, "timeout": "0.3s"})
        first = await probe("127.0.0.1", settings, ctx)
        second = await probe("127.0.0.1", settings, ctx)
        assert first.error == "no response within 0.3s (1 sent)"
        assert second.ok and second.details["retransmissions"] == 0
        assert second.details["strays"] == 1  # from the address it probes


async def test_an_answer_read_between_a_cancel_and_its_clean_up_is_dropped() -> None:
    """The deadline cancels a probe's wait at once, but its task leaves the engine only at its
    next step; on uvloop the socket's reader can run in between. The answer read then is
    dropped, not set on the cancelled wait (an InvalidStateError in the agent's log, CI)."""
    from monitor.probes.sip import _Exchange, _UdpTransaction, engine, parse_response

    async with responder(answer_nth(0)) as (_, port), ProbeContext() as ctx:
        sip = await engine(ctx)
        target = ("127.0.0.1", port)
        shared = sip.port_for(socket.AF_INET, target)
        exchange = _Exchange("udp")
        transaction = _UdpTransaction(shared, exchange, None, target)
        settings = SipSettings.model_validate({"port": port})
        request = exchange.request(settings, "127.0.0.1", shared.name)
        transaction.start(request)
        transaction.done.cancel()  # what the deadline does to the probe's wait
        answer = parse_response(reply(request, "200 OK"))
        assert answer is not None
        transaction.on_response(answer, time.monotonic())  # raised before
        assert transaction.done.cancelled()
        transaction.stop()
