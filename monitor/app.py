"""The composition root: builds the parts a mode needs, runs them, stops them in order.

``confmon run`` and ``confmon demo`` (and the coming ``server`` and ``agent``) differ
only in options; everything that must happen the same way happens here, once:

- **Start order**: the API's address is bound first (resolved within a few
  seconds, not yet listening: a bad ``--listen`` fails before anything is opened
  or probed), and the open-file limit raised to what the inventory needs (see
  :mod:`monitor.limits`); then the monitor core (event log, resumed states,
  event writer), then the transport (probing; the ICMP permission check happens
  as it opens the engine), then the HTTP API starts serving on the bound socket.
  So a client is never served by a half-started monitor, as before, and a bad
  address costs nothing. **Stop order** is the reverse: the API (live streams
  told to leave first, so a client does not hang on to a dying server), the
  transport (probes in flight cancelled, buffered results handed over), then the
  core (every queued event stored, the log closed). Each step runs whatever the
  one before did; an error of the core's stop (events that could not be stored)
  is raised last, after the rest has stopped, and is the process's one line.
- **Signals**: SIGINT and SIGTERM stop; SIGHUP reloads. The handlers are installed
  before anything starts: a SIGTERM while start-up waits (a locked database, a slow
  resolver) stops at once, and a SIGHUP during start-up is remembered and applied
  once the monitor runs (never a second scheduler). Once stopping, further SIGINTs
  and SIGTERMs (an impatient Ctrl-C Ctrl-C Ctrl-C) are said once and otherwise
  ignored to the end of the process: the stop is bounded by its own timeouts, and
  cutting it short would lose the events being stored.
- **Reload** applies the difference (the scheduler keeps unchanged points' phase
  and probes in flight). The config is read on a daemon thread with a timeout: a
  FIFO or a hung mount costs that reload, not further reloads and not shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from monitor.alerts.formats import Rendered
from monitor.collector import settle
from monitor.core.ingest import REJECT_REASONS
from monitor.core.service import Monitor
from monitor.errors import ConfmonError, IcmpNotPermitted
from monitor.inventory import Inventory, load_inventory
from monitor.limits import ensure_descriptors, open_descriptors
from monitor.outputs.api import start_api
from monitor.outputs.httpserver import DEFAULT_MAX_CONNECTIONS, ApiServer, bind
from monitor.probes.base import ProbeContext
from monitor.threads import bounded
from monitor.transport.local import LOCAL_AGENT, LocalTransport, check_icmp, needs_icmp
from monitor.transport.mqtt import BrokerConfig

if TYPE_CHECKING:
    from monitor.transport.server import BrokerTransport

__all__ = ["App", "AppOptions", "open_app", "serve"]

log = logging.getLogger("confmon")

#: how long reading the config on reload may take before that reload is given up
CONFIG_READ_TIMEOUT = 10.0


@dataclass
class AppOptions:
    """What a mode asks of the composition root."""

    config_path: Path | None = None
    state_db: str | Path = ":memory:"
    listen: tuple[str, int] | None = ("127.0.0.1", 9108)
    token: str | None = None
    #: ``on``: ICMP as the inventory says, and a clear error if it is not permitted;
    #: ``auto``: skipped with a notice when not permitted (the demo); ``off``: never
    icmp: Literal["on", "auto", "off"] = "on"
    #: points whose results the transport discards (the demo's simulated lost agent)
    drop: Callable[[str], bool] | None = None
    #: probe locally (``run``, ``demo``); a server gets results from agents instead
    probe: bool = True
    #: ``confmon server``: take results from agents through this broker
    broker: BrokerConfig | None = None
    #: connections the API holds at once (fewer if the open-file limit is short)
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    #: ``/metrics`` needs the token too
    metrics_auth: bool = False
    #: the demo's dry run: notifications are handed to this instead of being sent
    alerts_printer: Callable[[str, Rendered], None] | None = None


@dataclass
class App:
    """The running parts of one mode."""

    monitor: Monitor
    opts: AppOptions
    transport: LocalTransport | BrokerTransport | None = None
    api: ApiServer | None = None
    notices: list[str] = field(default_factory=list)
    #: probes left out of every inventory this app runs (``--no-icmp``, or ICMP not permitted)
    disabled: frozenset[str] = frozenset()
    #: descriptors the process held before serving and probing (for a reload's budget)
    open_at_start: int = 0
    _reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def inv(self) -> Inventory:
        return self.monitor.inv

    async def reload(self) -> str:
        """Re-read the config file and apply the difference; the old config stays on error.

        Raises :class:`ConfigError` (the file's problems) or :class:`ConfmonError`.
        """
        path = self.opts.config_path
        if path is None:
            raise ConfmonError("this monitor was not started from a config file")
        async with self._reload_lock:
            try:
                new = await _read_config(path, CONFIG_READ_TIMEOUT)
            except ConfmonError as exc:
                self.monitor.telemetry.reload_ok.set(0)
                log.error("reload failed, keeping the running config: %s", exc)
                raise
            new = new.without_probes(self.disabled)
            if self.opts.probe and needs_icmp(new) and not needs_icmp(self.monitor.inv):
                new = await self._check_new_icmp(new)
            if self.transport is not None:
                # the probing side first: if it cannot take the new config, nothing changed
                try:
                    await self.transport.update(new)
                except (TimeoutError, RuntimeError) as exc:
                    self.monitor.telemetry.reload_ok.set(0)
                    raise ConfmonError(
                        f"the probing thread did not take the new config ({str(exc) or type(exc).__name__}); "
                        "the running config is kept"
                    ) from None
            self.monitor.apply(new)
            await _apply_alerts(self, new)
            self._budget(new)
            message = f"reloaded {path}: {len(new.points)} points"
            log.info(message)
            return message

    def _budget(self, inv: Inventory) -> None:
        """Raise the open-file limit for a bigger inventory (and shrink the API's cap if the
        hard limit is too low: probing keeps its share)."""
        allowed = ensure_descriptors(
            inv,
            api_connections=self.opts.max_connections if self.opts.listen else 0,
            probing=self.opts.probe,
            open_now=self.open_at_start,
        )
        if self.api is not None:
            self.api.max_connections = allowed

    async def _check_new_icmp(self, new: Inventory) -> Inventory:
        """A reload that brings ICMP in: the permission is checked now, as at start."""
        try:
            async with ProbeContext() as ctx:
                await check_icmp(new, ctx)
        except IcmpNotPermitted as exc:
            if self.opts.icmp != "auto":
                self.monitor.telemetry.reload_ok.set(0)
                raise IcmpNotPermitted(f"{exc}; the running config is kept") from None
            self.disabled |= {"icmp"}
            return new.without_probes(self.disabled)
        return new


async def _read_config(path: Path, limit: float) -> Inventory:
    """``load_inventory`` on a daemon thread, bounded: a hung read is abandoned, not awaited."""
    try:
        return await bounded(lambda: load_inventory(path), limit, "confmon-config-read")
    except TimeoutError:
        raise ConfmonError(
            f"reading {path} took over {limit:g}s (a FIFO, a hung mount?); the running config is kept"
        ) from None


@asynccontextmanager
async def open_app(inv: Inventory, opts: AppOptions) -> AsyncIterator[App]:
    """Start the parts ``opts`` asks for (see the module docstring); stop them on exit."""
    disabled = frozenset({"icmp"}) if opts.icmp == "off" else frozenset()
    sockets = await bind(*opts.listen) if opts.listen is not None else []
    try:
        monitor = Monitor(
            inv.without_probes(disabled), state_db=opts.state_db, config_path=opts.config_path
        )
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    app = App(monitor, opts, disabled=disabled, open_at_start=open_descriptors())
    try:
        max_connections = ensure_descriptors(
            monitor.inv,
            api_connections=opts.max_connections if sockets else 0,
            probing=opts.probe,
            open_now=app.open_at_start,
        )
        await monitor.start()
        await _start_alerts(app)
        if opts.probe:
            await _start_transport(app)
        elif opts.broker is not None:
            await _start_broker(app, opts.broker)
        if sockets:
            reload = app.reload if opts.config_path is not None else None
            app.api = await start_api(
                monitor,
                sockets,
                opts.token,
                reload=reload,
                max_connections=max_connections,
                metrics_auth=opts.metrics_auth,
            )
        yield app
    except BaseException as exc:
        # the reason we stop goes first; an error of the stop itself is logged with it,
        # except when stopping was asked (cancelled): then it is the one to report
        try:
            await _stop(app, sockets)
        except ConfmonError as stop_error:
            if isinstance(exc, Exception):
                log.error("%s", stop_error)
            else:
                raise stop_error from None
        raise
    else:
        await _stop(app, sockets)


async def _stop(app: App, sockets: list[socket.socket]) -> None:
    """Stop in order (see the module docstring); each step runs whatever the one before did.

    Raises the core's :class:`ConfmonError` (events not stored) after everything stopped.
    """
    monitor = app.monitor
    monitor.close_streams()  # SSE clients leave now, not after aiohttp's grace period
    steps: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = []
    if app.api is not None:
        steps.append(("the API", app.api.close))
    if app.transport is not None:
        steps.append(("probing", app.transport.stop))
    for what, step in steps:
        try:
            await step()
        except Exception as exc:  # a bug: said in one line; the rest must still stop
            log.error("stopping %s failed: %s: %s", what, type(exc).__name__, exc)
    for sock in sockets:  # bound but never served (start-up stopped before the API)
        sock.close()
    if monitor.alerts is not None:
        try:
            await monitor.alerts.stop()
        except Exception as exc:  # a bug: said; the event log must still be closed
            log.error("stopping the alerts failed: %s: %s", type(exc).__name__, exc)
    await monitor.stop()


async def _start_alerts(app: App) -> None:
    """Alerts when the inventory has receivers (or the demo prints what it would send)."""
    monitor = app.monitor
    if not monitor.inv.alerts.receivers:
        return
    from monitor.alerts.service import Alerts

    alerts = Alerts(
        monitor,
        printer=app.opts.alerts_printer,
        external_url=monitor.inv.alerts.external_url,
    )
    monitor.alerts = alerts
    await alerts.start()
    names = ", ".join(r.name for r in monitor.inv.alerts.receivers)
    log.info("alerts: sending to %s", names)


async def _apply_alerts(app: App, new: Inventory) -> None:
    """A reload's alerts (the rest of the new config is applied already: a receiver that
    cannot start is said, and the others go on)."""
    if app.monitor.alerts is not None:
        app.monitor.alerts.apply(new)
        return
    if new.alerts.receivers:
        try:
            await _start_alerts(app)
        except ConfmonError as exc:
            app.monitor.alerts = None
            log.error("%s; alerts are not sent until a reload or restart fixes it", exc)


async def _start_broker(app: App, broker: BrokerConfig) -> None:
    from monitor.transport.server import BrokerTransport

    monitor = app.monitor
    transport = BrokerTransport(monitor, broker)
    monitor.telemetry.watch_agents(transport.liveness)
    # every reason at 0 from the start: rate() and alerts see the first rejection as a rise
    for reason in REJECT_REASONS:
        monitor.telemetry.rejected.labels(reason)
    monitor.broker_stats = transport.stats
    monitor.agent_listing = transport.listing
    await transport.start()
    app.transport = transport


async def _start_transport(app: App) -> None:
    monitor = app.monitor
    monitor.ingest.assign(LOCAL_AGENT, None)
    transport = LocalTransport(
        monitor.inv, monitor.ingest.accept, drop=app.opts.drop, on_crash=monitor.not_ready
    )
    try:
        await transport.start()
    except IcmpNotPermitted as exc:
        if app.opts.icmp != "auto":
            raise
        app.notices.append(f"ICMP skipped: {exc}")
        app.disabled |= {"icmp"}
        monitor.apply(monitor.inv.without_probes(app.disabled))
        transport = LocalTransport(
            monitor.inv, monitor.ingest.accept, drop=app.opts.drop, on_crash=monitor.not_ready
        )
        await transport.start()
    app.transport = transport
    monitor.scheduler_stats = transport.stats


async def serve(
    inv: Inventory,
    opts: AppOptions,
    main: Callable[[App], Coroutine[Any, Any, object]] | None = None,
    *,
    duration: float | None = None,
    on_start: Callable[[App], None] | None = None,
) -> int:
    """Run a mode until SIGINT/SIGTERM, ``duration`` seconds, or ``main(app)`` returning.

    ``main`` is the mode's foreground work (the demo's dashboard); its exception, if any,
    is raised after everything stopped in order. Returns the exit code (0). ``serve`` is
    the life of a process: once it has stopped, SIGINT, SIGTERM and SIGHUP stay ignored
    until the process exits (see the module docstring).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    state: dict[str, App | bool] = {"reload": False, "stopping": False, "said": False}
    reloads: set[asyncio.Task[None]] = set()

    def on_stop(name: str) -> None:
        if not state["stopping"]:
            state["stopping"] = True
            stop.set()
        elif not state["said"]:
            state["said"] = True
            log.warning(
                "already stopping (%s again): the stop finishes by itself within its timeouts, "
                "storing every event; further signals are ignored",
                name,
            )

    def reload_now(app: App) -> None:
        async def go() -> None:
            with contextlib.suppress(ConfmonError):  # logged; the old config stays
                await app.reload()

        task = loop.create_task(go())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    def on_hup() -> None:
        app = state.get("app")
        if isinstance(app, App):
            reload_now(app)
        else:
            state["reload"] = True  # start-up still running: reload once it is done

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_stop, sig.name)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        async with _until(stop, open_app(inv, opts)) as app:
            if app is None:
                return 0  # stopped during start-up
            state["app"] = app
            settle()  # start-up's objects are here for good (see monitor/collector.py)
            if state["reload"] and opts.config_path is not None:
                reload_now(app)
            if on_start is not None:
                on_start(app)
            waiters: list[asyncio.Task[object]] = [loop.create_task(stop.wait())]
            if duration is not None:
                waiters.append(loop.create_task(asyncio.sleep(duration)))
            fg: asyncio.Future[object] | None = (
                asyncio.ensure_future(main(app)) if main is not None else None
            )
            try:
                await asyncio.wait(
                    [*waiters, *([fg] if fg else [])], return_when=asyncio.FIRST_COMPLETED
                )
                state["stopping"] = True
                log.info("shutting down")
            finally:
                for w in waiters:
                    w.cancel()
                for task in list(reloads):
                    task.cancel()
                if fg is not None and not fg.done():
                    fg.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await fg
            if fg is not None and fg.done() and not fg.cancelled() and fg.exception():
                raise fg.exception()  # type: ignore[misc]
        return 0
    finally:
        _release_signals(loop, ignore=bool(state["stopping"]))


_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _release_signals(loop: asyncio.AbstractEventLoop, *, ignore: bool) -> None:
    """Take the loop's signal handlers away; with ``ignore`` (the process is on its way out),
    leave the signals ignored to the exit.

    Python's own handlers would turn one more Ctrl-C into exit 130 (KeyboardInterrupt) and
    SIGHUP's or SIGTERM's default ends the process, and ``remove_signal_handler`` puts
    exactly those back, as does closing the loop later. So when stopping, each signal is
    switched straight from the loop's handler to "ignored" (an ignored signal stays ignored
    through finalisation) and taken out of the loop's table, leaving no moment in which a
    signal meets a default handler: a Ctrl-C every 10 ms found that moment under load.
    """
    handlers: dict[int, object] | None = getattr(loop, "_signal_handlers", None)
    for sig in _SIGNALS:
        if ignore and handlers is not None:
            signal.signal(sig, signal.SIG_IGN)
            handlers.pop(sig, None)
        else:
            loop.remove_signal_handler(sig)
            if ignore:
                signal.signal(sig, signal.SIG_IGN)
    if ignore and handlers is not None and not handlers:
        signal.set_wakeup_fd(-1)


@asynccontextmanager
async def _until(
    stop: asyncio.Event, cm: contextlib.AbstractAsyncContextManager[App]
) -> AsyncIterator[App | None]:
    """Enter ``cm`` unless ``stop`` is set first (then yield None, having cleaned up)."""
    loop = asyncio.get_running_loop()
    entering = loop.create_task(cm.__aenter__())
    stopping = loop.create_task(stop.wait())
    await asyncio.wait([entering, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not entering.done():
        entering.cancel()  # the context manager's own finally stops what had started
        with contextlib.suppress(asyncio.CancelledError):
            await entering
        yield None
        return
    app = entering.result()  # raises the start-up error
    try:
        yield app
    except BaseException as exc:
        if not await cm.__aexit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        await cm.__aexit__(None, None, None)
