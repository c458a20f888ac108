"""The lab's SIP responder answers OPTIONS over UDP and TCP as RFC 3261 §8.2.6 says."""

from __future__ import annotations

import asyncio

import pytest

from monitor.lab import Impairment, Lab
from tests.lab.clients import header, parse_sip, sip_request, udp_client

HQ = "127.20.0.1"
ROOM = "127.20.0.2"


async def _udp_exchange(request: bytes, host: str, port: int) -> bytes:
    client = await udp_client()
    try:
        client.send(request, (host, port))
        data, _ = await client.recv()
        return data
    finally:
        client.close()


async def test_options_over_udp_gets_200_with_headers_copied(
    lab: Lab, ports: dict[str, int]
) -> None:
    """OPTIONS over UDP: 200 OK, Vias in order with received/rport on the top one, the rest copied."""
    client = await udp_client()
    try:
        request = sip_request(via_port=client.port, call_id="abc-1@test", cseq=41)
        client.send(request, (HQ, ports["sip"]))
        data, _ = await client.recv()
    finally:
        client.close()
    status, headers = parse_sip(data)
    assert status == "SIP/2.0 200 OK"
    vias = header(headers, "Via")
    assert vias == [
        f"SIP/2.0/UDP 127.0.0.1:{client.port};branch=z9hG4bK-abc-1@test-41;"
        f"rport={client.port};received=127.0.0.1",
        "SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK-second",
    ]
    assert header(headers, "From") == ['"confmon" <sip:confmon@127.0.0.1>;tag=from-tag-1']
    (to,) = header(headers, "To")
    assert to.startswith(f"<sip:{HQ}>;tag=") and len(to) > len(f"<sip:{HQ}>;tag=")
    assert header(headers, "Call-ID") == ["abc-1@test"]
    assert header(headers, "CSeq") == ["41 OPTIONS"]
    assert header(headers, "Server")[0].startswith("confmon-lab/")
    assert header(headers, "Content-Length") == ["0"]
    assert data.endswith(b"\r\n\r\n")


async def test_received_added_when_sent_by_differs(lab: Lab, ports: dict[str, int]) -> None:
    """A Via whose sent-by is not the source gets received= but no rport it did not ask for."""
    via = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-x"
    data = await _udp_exchange(sip_request(via=via), HQ, ports["sip"])
    _, headers = parse_sip(data)
    assert header(headers, "Via")[0] == f"{via};received=127.0.0.1"


async def test_to_tag_kept_or_added_stably(lab: Lab, ports: dict[str, int]) -> None:
    """An existing To tag is kept; an added one is the same for a retransmission, new per call."""
    kept = await _udp_exchange(sip_request(to_tag="theirs"), HQ, ports["sip"])
    assert header(parse_sip(kept)[1], "To") == [f"<sip:{HQ}>;tag=theirs"]
    first = await _udp_exchange(sip_request(call_id="same"), HQ, ports["sip"])
    again = await _udp_exchange(sip_request(call_id="same"), HQ, ports["sip"])
    other = await _udp_exchange(sip_request(call_id="different"), HQ, ports["sip"])
    tag = header(parse_sip(first)[1], "To")
    assert tag == header(parse_sip(again)[1], "To")
    assert tag != header(parse_sip(other)[1], "To")


async def test_compact_header_forms_are_understood(lab: Lab, ports: dict[str, int]) -> None:
    """v/f/t/i/l compact headers are read; the reply uses full names; same-host Via stays as is."""
    request = (
        f"OPTIONS sip:{HQ} SIP/2.0\r\n"
        "v: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-c\r\n"
        "f: <sip:a@127.0.0.1>;tag=1\r\nt: <sip:b@127.0.0.1>\r\n"
        "i: compact@test\r\nCSeq: 7 OPTIONS\r\nl: 0\r\n\r\n"
    ).encode()
    status, headers = parse_sip(await _udp_exchange(request, HQ, ports["sip"]))
    assert status == "SIP/2.0 200 OK"
    assert header(headers, "Call-ID") == ["compact@test"]
    assert header(headers, "Via") == ["SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-c"]
    assert header(headers, "To")[0].startswith("<sip:b@127.0.0.1>;tag=")


async def test_other_methods(lab: Lab, ports: dict[str, int]) -> None:
    """INVITE gets 405 with Allow, CANCEL 481, a missing header 400; ACK and garbage get nothing."""
    invite = parse_sip(await _udp_exchange(sip_request("INVITE"), HQ, ports["sip"]))
    assert invite[0] == "SIP/2.0 405 Method Not Allowed"
    assert header(invite[1], "Allow") == ["OPTIONS"]
    cancel = parse_sip(await _udp_exchange(sip_request("CANCEL"), HQ, ports["sip"]))
    assert cancel[0].startswith("SIP/2.0 481 ")
    no_call_id = sip_request().replace(b"Call-ID: call-1@test\r\n", b"")
    bad = parse_sip(await _udp_exchange(no_call_id, HQ, ports["sip"]))
    assert bad[0] == "SIP/2.0 400 Bad Request (missing call-id)"
    client = await udp_client()
    try:
        client.send(sip_request("ACK"), (HQ, ports["sip"]))
        client.send(b"\x00\x01 not sip at all", (HQ, ports["sip"]))
        client.send(b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n", (HQ, ports["sip"]))
        assert await client.nothing(0.3)
        client.send(sip_request(), (HQ, ports["sip"]))  # and it still answers afterwards
        assert parse_sip((await client.recv())[0])[0] == "SIP/2.0 200 OK"
    finally:
        client.close()


async def test_sip_status_override(lab: Lab, ports: dict[str, int]) -> None:
    """A sip_status impairment answers OPTIONS with that code."""
    lab.set_impairment("hq", Impairment(sip_status=503))
    status, _ = parse_sip(await _udp_exchange(sip_request(), HQ, ports["sip"]))
    assert status == "SIP/2.0 503 Service Unavailable"
    lab.clear("hq")
    status, _ = parse_sip(await _udp_exchange(sip_request(), HQ, ports["sip"]))
    assert status == "SIP/2.0 200 OK"


async def _read_sip(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    _, headers = parse_sip(head)
    return head + await reader.readexactly(int(header(headers, "Content-Length")[0]))


async def test_options_over_tcp_several_requests_on_one_connection(
    lab: Lab, ports: dict[str, int]
) -> None:
    """Several requests on one TCP connection, one split across writes, are answered in order."""
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection(ROOM, ports["sip"])
        try:
            body = b"v=0\r\n"
            with_body = sip_request(target=ROOM, cseq=2).replace(
                b"Content-Length: 0", b"Content-Type: application/sdp\r\nContent-Length: 5"
            )
            writer.write(sip_request(target=ROOM, cseq=1) + with_body + body)
            third = sip_request(target=ROOM, cseq=3)
            writer.write(third[:30])
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(third[30:])
            replies = [parse_sip(await _read_sip(reader)) for _ in range(3)]
            peer_port = writer.get_extra_info("sockname")[1]
        finally:
            writer.close()
            await writer.wait_closed()
    assert [status for status, _ in replies] == ["SIP/2.0 200 OK"] * 3
    assert [header(h, "CSeq")[0] for _, h in replies] == ["1 OPTIONS", "2 OPTIONS", "3 OPTIONS"]
    assert header(replies[0][1], "Via")[0].endswith(f";rport={peer_port};received=127.0.0.1")


async def test_tcp_keepalive_ping_gets_pong(lab: Lab, ports: dict[str, int]) -> None:
    """A double-CRLF keepalive gets the single-CRLF pong (RFC 5626 §4.4.1)."""
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection(HQ, ports["sip"])
        try:
            writer.write(b"\r\n\r\n")
            assert await reader.readexactly(2) == b"\r\n"
        finally:
            writer.close()
            await writer.wait_closed()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (
            sip_request(content_length=False),
            "SIP/2.0 400 Bad Request (missing or bad Content-Length)",
        ),
        (
            sip_request(extra="Content-Length: 999999", content_length=False),
            "SIP/2.0 513 Message Too Large",
        ),
    ],
)
async def test_tcp_bad_framing_is_answered_then_closed(
    lab: Lab, ports: dict[str, int], request_bytes: bytes, status: str
) -> None:
    """Over TCP, a request without Content-Length gets 400, an oversized one 513; then EOF."""
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection(HQ, ports["sip"])
        try:
            writer.write(request_bytes)
            reply = await _read_sip(reader)
            assert parse_sip(reply)[0] == status
            assert await reader.read() == b""
        finally:
            writer.close()
            await writer.wait_closed()


async def test_tcp_garbage_closes_the_connection(lab: Lab, ports: dict[str, int]) -> None:
    """Bytes that are not SIP end the TCP connection without a reply."""
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection(HQ, ports["sip"])
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await reader.read() == b""
        finally:
            writer.close()
            await writer.wait_closed()
