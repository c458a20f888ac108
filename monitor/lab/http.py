"""The lab's HTTP status page: a minimal HTTP/1.1 responder on each point's ``http.port``.

What a caller (the HTTP probe, a browser, curl) may rely on:

- ``GET`` or ``HEAD`` of the point's configured ``http.path`` (query string
  ignored) answers ``200`` (or the point's ``http_status`` override) with
  ``application/json; charset=utf-8`` ``{"point": id, "name": ..., "status": "ok"}``
  (``"error"`` when the override is 400 or more). Vietnamese names are UTF-8, not
  escaped. Any other path is ``404`` with a JSON error; another method on the
  status path is ``405``.
- HTTP/1.1 keep-alive and pipelining work (responses in request order);
  ``Connection: close`` and HTTP/1.0 close after the response. Request heads are
  bounded to 8 KiB (431) and bodies to 64 KiB (413); ``Transfer-Encoding`` is not
  supported (501); a malformed request gets 400. Each of those closes the connection.
- Responses carry ``Date``, ``Server: confmon-lab/<version>`` and ``Content-Length``.
- Impairments delay (or, when ``down``, withhold) each response; the TCP
  handshake itself is done by the kernel and is never delayed.

Why not :mod:`aiohttp.web`: a delayed or withheld reply must be a timer on the
transport like every other responder's (:mod:`monitor.lab.shaping`), whereas an
aiohttp handler would hold a task sleeping per request, and cannot simply not
answer. And the lab may open 10,000 of these at once: ``bench/bench_lab.py``
measured this responder starting about three times faster than 10,000 aiohttp
``TCPSite`` objects sharing one runner (0.4 s against 1.3 s on a shared two-core
machine, with similar memory).
A status page is one path and two methods, less code than adapting a framework.
aiohttp still serves the lab's control API (:mod:`monitor.lab.control`), a
single site where routing and JSON handling pay off.
"""

from __future__ import annotations

import json
from email.utils import formatdate
from http import HTTPStatus

from monitor.lab.site import Site, StreamResponder

__all__ = ["HttpResponder"]

MAX_HEAD = 8 * 1024
MAX_BODY = 64 * 1024


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Status"


class HttpResponder(StreamResponder):
    """The status page of one point, on one connection."""

    def __init__(self, site: Site) -> None:
        super().__init__(site)
        self._skip = 0  # request body bytes still to discard
        self._done = False

    def process(self) -> None:
        buf = self.buffer
        while not self._done:
            if self._skip:
                n = min(self._skip, len(buf))
                del buf[:n]
                self._skip -= n
                if self._skip:
                    return
            while buf.startswith(b"\r\n"):  # RFC 9112 §2.2: empty lines before a request
                del buf[:2]
            end = buf.find(b"\r\n\r\n")
            if end < 0 or end > MAX_HEAD:
                if len(buf) > MAX_HEAD or end > MAX_HEAD:
                    self._fail(431)
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            self._handle(head)

    def _handle(self, head: bytes) -> None:
        try:
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ")
            if version not in ("HTTP/1.1", "HTTP/1.0"):
                raise ValueError(version)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, colon, value = line.partition(":")
                if not colon or not name or name != name.strip():
                    raise ValueError(line)
                key = name.lower()
                if key == "content-length" and headers.get(key, value.strip()) != value.strip():
                    raise ValueError("conflicting Content-Length")
                headers[key] = value.strip()
        except ValueError:
            self._fail(400)
            return
        if "transfer-encoding" in headers:
            self._fail(501)
            return
        length_text = headers.get("content-length", "0")
        # ASCII digits only ('²'.isdigit() is true, int('²') raises), and few of them
        if not (length_text.isascii() and length_text.isdigit()) or len(length_text) > 12:
            self._fail(400)
            return
        if int(length_text) > MAX_BODY:
            self._fail(413)
            return
        self._skip = int(length_text)
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        keep = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
        status, body, extra = self._route(method, target)
        self._send(status, body, keep=keep, head_only=method == "HEAD", extra=extra)
        if not keep:
            self._done = True
            self.buffer.clear()

    def _route(self, method: str, target: str) -> tuple[int, dict[str, object], str]:
        if target.startswith(("http://", "https://")):  # absolute form (RFC 9112 §3.2.2)
            target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
        path = target.split("?", 1)[0]
        site = self.site
        if path != site.http_path:
            return 404, {"error": "not found", "path": path}, ""
        if method not in ("GET", "HEAD"):
            return 405, {"error": "method not allowed"}, "Allow: GET, HEAD\r\n"
        status = site.own.http_status or 200
        state = "ok" if status < 400 else "error"
        return status, {"point": site.point.id, "name": site.point.name, "status": state}, ""

    def _fail(self, status: int) -> None:
        self._send(status, {"error": _phrase(status).lower()}, keep=False)
        self._done = True
        self.buffer.clear()

    def _send(
        self,
        status: int,
        body: dict[str, object],
        *,
        keep: bool,
        head_only: bool = False,
        extra: str = "",
    ) -> None:
        payload = json.dumps(body, ensure_ascii=False).encode() + b"\n"
        head = (
            f"HTTP/1.1 {status} {_phrase(status)}\r\n"
            f"Date: {formatdate(usegmt=True)}\r\n"
            f"Server: {self.site.runtime.server}\r\n"
            "Content-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(payload)}\r\n"
            f"{extra}"
            f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
        ).encode("latin-1")
        self.reply(head if head_only else head + payload, close=not keep)
