"""The lab: every point of an inventory simulated on its own loopback address, in one process.

What a caller may rely on:

- ``async with Lab(lab_inventory(inv), seed=1) as lab:`` listens, per point, on
  what its profile probes: SIP OPTIONS on ``sip.port`` over UDP *and* TCP
  (both, whatever the profile's transport: it costs one socket),
  the media echo on ``media.port``/UDP, the HTTP status page on ``http.port``
  (plain ``http`` only; an ``https`` profile's page is not simulated and is
  counted in :attr:`Lab.unsimulated`), and a plain TCP port for a ``tcp`` probe
  unless SIP or HTTP already listens there. ICMP echo is answered by the
  kernel for every 127.x.y.z address: the lab cannot impair it from user space.
- Only loopback: a point whose host is not a loopback address, or two points on
  one address, is a :class:`~monitor.errors.ConfmonError` before anything binds.
  Every bind failure is one line naming the point, address and what to do; a
  failed :meth:`start` closes whatever it had opened.
- Impairments (:class:`~monitor.lab.impairment.Impairment`) can change at any
  time from the loop's thread (:meth:`set_impairment`, :meth:`clear`); the next
  reply already follows them, replies in flight keep their delay. A point's
  impairment also applies to every point below it: they are reached through its
  uplink (see :mod:`monitor.lab.shaping`).
- Scale: 10,000 points is ~31,000 sockets. :meth:`start` raises the
  ``RLIMIT_NOFILE`` soft limit as far as needed, up to the hard limit (and, with
  ``CAP_SYS_RESOURCE``, the hard limit too); if that is still short it fails with
  one line saying how many descriptors are needed (sockets, the cap of 1,024 open
  connections, and a reserve of 512). Sockets are bound directly and handed to
  ``loop.create_datagram_endpoint``/``loop.create_server`` with one small
  protocol object per socket; nothing runs while no packet arrives (no task or
  timer per point), so an idle lab costs no CPU.
- :meth:`stop` closes every socket and connection and cancels replies in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import errno
import ipaddress
import logging
import os
import random
import resource
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from monitor import __version__
from monitor.errors import ConfmonError
from monitor.inventory import Inventory, Point, Profile
from monitor.lab.http import HttpResponder
from monitor.lab.impairment import Impairment
from monitor.lab.media import EchoResponder
from monitor.lab.shaping import Path, Shaper
from monitor.lab.sip import SipTcpResponder, SipUdpResponder
from monitor.lab.site import Runtime, Site, StreamResponder
from monitor.lab.tcp import TcpResponder

__all__ = ["Endpoint", "Lab", "UnknownPointError", "ensure_fd_limit"]

log = logging.getLogger(__name__)

Service = Literal["sip", "media", "http", "tcp"]

#: descriptors kept free beyond the lab's own sockets and connections (stdio, the
#: control API, and probes when the monitor runs in the same process)
FD_RESERVE = 512


class UnknownPointError(ConfmonError):
    """An impairment for a point the lab does not simulate."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One socket the lab listens on."""

    point: str
    service: Service
    transport: Literal["udp", "tcp"]
    host: str
    port: int
    path: str = ""  # the status page's path, for an http endpoint


def _open_fds() -> int:
    for directory in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(directory))
        except OSError:
            continue
    return 64


def ensure_fd_limit(needed: int, what: str) -> None:
    """Make sure this process may open ``needed`` descriptors, raising the limit if allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinity = resource.RLIM_INFINITY
    if soft == infinity or soft >= needed:
        return
    if hard == infinity or hard >= needed:
        # only as far as needed: child processes inherit the soft limit, and some size
        # tables by it
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        return
    try:  # with CAP_SYS_RESOURCE (root) the hard limit may rise too, up to fs.nr_open
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
        return
    except (ValueError, OSError):
        pass
    raise ConfmonError(
        f"{what} needs {needed} open files but this process may open at most {hard} "
        f"('ulimit -Hn'); raise the limit (e.g. 'ulimit -n {needed}' as root, or "
        f"LimitNOFILE={needed} in a systemd unit) or simulate fewer points"
    )


def _check_loopback(point: Point) -> None:
    try:
        loopback = ipaddress.ip_address(point.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfmonError(
            f"point {point.id!r}: host {point.host!r} is not a loopback address; the lab listens "
            "only on 127.0.0.0/8 (map the inventory with monitor.lab.lab_inventory(), as "
            "'confmon lab' does)"
        )


def plan(inv: Inventory) -> tuple[list[Endpoint], dict[str, int]]:
    """The sockets a lab of ``inv`` needs, and the services it cannot simulate (name -> points)."""
    endpoints: list[Endpoint] = []
    unsimulated: dict[str, int] = {}
    owner: dict[str, str] = {}
    checked: set[str] = set()
    for point in inv.points.values():
        _check_loopback(point)
        if point.host in owner:
            raise ConfmonError(
                f"points {owner[point.host]!r} and {point.id!r} share host {point.host}; every lab "
                "point needs its own loopback address (use monitor.lab.lab_inventory())"
            )
        owner[point.host] = point.id
        profile = inv.profile_of(point)
        udp: dict[int, Service] = {}
        tcp: dict[int, Service] = {}
        http_path = ""
        if profile.sip is not None:
            udp[profile.sip.port] = tcp[profile.sip.port] = "sip"
        if profile.media is not None:
            udp.setdefault(profile.media.port, "media")
        if profile.http is not None:
            if profile.http.scheme == "https":
                unsimulated["https"] = unsimulated.get("https", 0) + 1
            else:
                tcp.setdefault(profile.http.port or 80, "http")
                http_path = profile.http.path
        if profile.tcp is not None:
            tcp.setdefault(profile.tcp.port, "tcp")
        if point.profile not in checked:
            checked.add(point.profile)
            _check_ports(point.profile, profile, udp, tcp)
        endpoints += [Endpoint(point.id, s, "udp", point.host, p) for p, s in udp.items()]
        endpoints += [
            Endpoint(point.id, s, "tcp", point.host, p, http_path if s == "http" else "")
            for p, s in tcp.items()
        ]
    return endpoints, unsimulated


def _check_ports(
    name: str, profile: Profile, udp: dict[int, Service], tcp: dict[int, Service]
) -> None:
    if profile.media is not None and udp.get(profile.media.port) != "media":
        raise ConfmonError(
            f"profile {name!r}: media.port {profile.media.port} is also the SIP port; the lab "
            "cannot serve both on one UDP socket (give media its own port, e.g. 7078)"
        )
    if profile.http is not None and profile.http.scheme == "http":
        port = profile.http.port or 80
        if tcp.get(port) != "http":
            raise ConfmonError(
                f"profile {name!r}: http.port {port} is also the SIP port; the lab "
                "cannot serve both on one TCP listener (give HTTP its own port, e.g. 8080)"
            )


class Lab:
    """Simulated meeting points on loopback, with impairments that can change while running."""

    def __init__(
        self,
        inventory: Inventory,
        *,
        seed: int | None = None,
        max_connections: int = 1024,
        idle_timeout: float = 30.0,
    ) -> None:
        self.inventory = inventory
        self.endpoints, self.unsimulated = plan(inventory)
        self._shaper = Shaper(random.Random(seed))
        self._runtime = Runtime(
            self._shaper,
            f"confmon-lab/{__version__}",
            max_connections=max_connections,
            idle_timeout=idle_timeout,
        )
        self._sites = {
            pid: Site(
                point,
                self._runtime,
                http_path=(
                    profile.http.path if (profile := inventory.profile_of(point)).http else "/"
                ),
            )
            for pid, point in inventory.points.items()
        }
        self._own: dict[str, Impairment] = {}
        self._transports: list[asyncio.BaseTransport] = []
        self._servers: list[asyncio.Server] = []
        self._bare: dict[Endpoint, asyncio.Server | None] = {}
        self._reconciler: asyncio.Task[None] | None = None
        self._reconcile_again = False
        self._running = False

    # --- life cycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between a successful :meth:`start` and :meth:`stop`."""
        return self._running

    def fds_needed(self) -> int:
        """Descriptors this lab needs on top of those already open."""
        return len(self.endpoints) + self._runtime.max_connections + FD_RESERVE

    async def start(self) -> None:
        """Bind every endpoint; on any failure close what was opened and raise ConfmonError."""
        if self._running:
            raise RuntimeError("the lab is already running")
        self._shaper.bind(asyncio.get_running_loop())
        ensure_fd_limit(_open_fds() + self.fds_needed(), f"the lab ({len(self._sites)} points)")
        self._running = True
        try:
            for endpoint in self.endpoints:
                await self._open(endpoint)
        except BaseException:
            await self.stop()
            raise
        log.info("lab: %d points, %d sockets", len(self._sites), len(self.endpoints))

    async def stop(self) -> None:
        """Close every socket and connection; cancel replies in flight. Safe to call twice."""
        self._running = False
        if self._reconciler is not None:
            # it stops by itself once it sees _running false; cancelling it could strand a
            # listener between bind and registration
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconciler
            self._reconciler = None
        self._shaper.close()
        for transport in self._transports:
            transport.close()
        servers = self._servers + [s for s in self._bare.values() if s is not None]
        for server in servers:
            server.close()
        for connection in list(self._runtime.connections):
            connection.abort()
        for server in servers:
            await server.wait_closed()
        self._transports.clear()
        self._servers.clear()
        self._bare.clear()
        # closed transports release their sockets in callbacks on the next loop iteration
        await asyncio.sleep(0)

    async def __aenter__(self) -> Lab:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- impairments ------------------------------------------------------------------------

    def impairment(self, point_id: str) -> Impairment:
        """The impairment set on ``point_id`` itself (healthy if none)."""
        self._site(point_id)
        return self._own.get(point_id, Impairment())

    def impairments(self) -> dict[str, Impairment]:
        """Every impairment set, by point id in inventory order."""
        return {pid: self._own[pid] for pid in self._sites if pid in self._own}

    def path(self, point_id: str) -> Path | None:
        """What replies of ``point_id`` go through, its ancestors' uplinks included (None: clean)."""
        return self._site(point_id).path

    def set_impairment(self, point_id: str, impairment: Impairment) -> None:
        """Impair ``point_id`` (and so everything reached through it) from the next reply on."""
        self._site(point_id)
        if impairment.healthy:
            self._own.pop(point_id, None)
        else:
            self._own[point_id] = impairment
        self._refresh(point_id)

    def clear(self, point_id: str | None = None) -> None:
        """Make ``point_id`` healthy again, or every point when ``None``."""
        if point_id is not None:
            self.set_impairment(point_id, Impairment())
            return
        impaired = list(self._own)
        self._own.clear()
        for pid in impaired:
            self._refresh(pid)

    def stats(self) -> dict[str, int]:
        """Counters: replies sent and dropped, replies in flight, open and refused connections."""
        return {
            "replies": self._shaper.sent,
            "dropped": self._shaper.dropped,
            "in_flight": self._shaper.in_flight,
            "connections": len(self._runtime.connections),
            "refused_connections": self._runtime.refused,
        }

    def _site(self, point_id: str) -> Site:
        site = self._sites.get(point_id)
        if site is None:
            close = difflib.get_close_matches(point_id, list(self._sites), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UnknownPointError(f"no point {point_id!r} in the lab{hint}")
        return site

    def _refresh(self, point_id: str) -> None:
        """Recompute the paths of ``point_id`` and everything below it."""
        bare_changed = False
        for point in [self.inventory.points[point_id], *self.inventory.descendants(point_id)]:
            site = self._sites[point.id]
            hops: list[Impairment] = []
            cur: str | None = point.id
            while cur is not None:
                if cur in self._own:
                    hops.append(self._own[cur])
                cur = self.inventory.points[cur].parent
            was_down = site.path is not None and site.path.down
            site.own = self._own.get(point.id, Impairment())
            site.path = Path.through(hops)
            if was_down != (site.path is not None and site.path.down):
                bare_changed = True
        if bare_changed and self._running and self._bare:
            self._kick_reconcile()

    # --- sockets ----------------------------------------------------------------------------

    def _bind(self, endpoint: Endpoint) -> socket.socket:
        family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
        kind = socket.SOCK_DGRAM if endpoint.transport == "udp" else socket.SOCK_STREAM
        sock: socket.socket | None = None
        try:
            sock = socket.socket(family, kind)
            if kind == socket.SOCK_STREAM:
                # a restarted lab must not wait for its old connections' TIME_WAIT
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setblocking(False)
            sock.bind((endpoint.host, endpoint.port))
        except OSError as exc:
            if sock is not None:
                sock.close()
            raise ConfmonError(_bind_error(endpoint, exc)) from None
        return sock

    async def _open(self, endpoint: Endpoint) -> None:
        loop = asyncio.get_running_loop()
        site = self._sites[endpoint.point]
        if endpoint.transport == "udp":
            protocol: asyncio.DatagramProtocol = (
                SipUdpResponder(site) if endpoint.service == "sip" else EchoResponder(site)
            )
            sock = self._bind(endpoint)
            transport, _ = await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
            self._transports.append(transport)
        elif endpoint.service == "tcp":
            self._bare[endpoint] = None
            if not (site.path is not None and site.path.down):
                server = await self._listen(endpoint, TcpResponder)
                self._bare[endpoint] = server
                await server.start_serving()
        else:
            responder = SipTcpResponder if endpoint.service == "sip" else HttpResponder
            server = await self._listen(endpoint, responder)
            self._servers.append(server)
            await server.start_serving()

    async def _listen(
        self, endpoint: Endpoint, responder: Callable[[Site], StreamResponder]
    ) -> asyncio.Server:
        """A server on ``endpoint``, not serving yet: register it, then ``start_serving()``.

        Given a socket and ``start_serving=False``, ``create_server`` never suspends, so
        a cancelled start cannot leave a listener that :meth:`stop` does not know of.
        """
        site = self._sites[endpoint.point]
        sock = self._bind(endpoint)
        try:
            return await asyncio.get_running_loop().create_server(
                lambda: responder(site), sock=sock, backlog=128, start_serving=False
            )
        except BaseException as exc:
            sock.close()
            if isinstance(exc, OSError):
                raise ConfmonError(_bind_error(endpoint, exc)) from None
            raise

    def _kick_reconcile(self) -> None:
        if self._reconciler is None or self._reconciler.done():
            self._reconciler = asyncio.get_running_loop().create_task(self._reconcile())
        else:
            self._reconcile_again = True

    async def _reconcile(self) -> None:
        """Close the plain TCP listeners of points that are down, reopen those back up."""
        while self._running:
            self._reconcile_again = False
            for endpoint, server in list(self._bare.items()):
                if not self._running:
                    return
                path = self._sites[endpoint.point].path
                want = not (path is not None and path.down)
                if server is not None and not want:
                    server.close()
                    self._bare[endpoint] = None
                elif server is None and want:
                    try:
                        server = await self._listen(endpoint, TcpResponder)
                    except ConfmonError as exc:
                        log.warning("lab: %s", exc)
                        continue
                    self._bare[endpoint] = server
                    await server.start_serving()
            if not self._reconcile_again:
                return


def _bind_error(endpoint: Endpoint, exc: OSError) -> str:
    where = (
        f"cannot listen on {endpoint.host}:{endpoint.port}/{endpoint.transport} "
        f"({endpoint.service} of point {endpoint.point!r}): {exc.strerror or exc}"
    )
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{where}; is another confmon lab or demo running, or a server bound to port "
            f"{endpoint.port} on all addresses?"
        )
    if exc.errno == errno.EACCES:
        return f"{where}; ports below 1024 need root (or give the profile a higher port)"
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        return f"{where}; out of file descriptors: raise 'ulimit -n' or simulate fewer points"
    return where
