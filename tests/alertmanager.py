"""A real Prometheus Alertmanager for tests of confmon's alert webhooks.

:class:`Alertmanager` writes an ``alertmanager.yml`` in the test's directory with one
route (``group_by: [district]``, the given ``group_wait`` / ``group_interval`` /
``repeat_interval``) to one receiver, ``confmon-test``. With ``webhook_url`` the receiver
has a ``webhook_configs`` entry posting there (``send_resolved: true``); without it the
receiver has no configs (alerts are accepted and kept, nothing is sent).

The process listens on a free loopback port (``url``), keeps its silences and
notification log under ``directory/data``, logs to ``directory/alertmanager.log``
(``log``) and runs with clustering off (``--cluster.listen-address=``: no gossip port,
no settle wait before the first notification). It is ready when ``GET /-/ready`` answers
200. Use it as a context manager, plain (``with``) or, from async tests, ``async with``
(which starts and stops it in a thread, so the event loop, and a webhook server on it,
keeps running).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from tests.helpers import free_port, require_binary

__all__ = ["RECEIVER", "Alertmanager"]

#: the name of the one receiver (the webhook payload's ``receiver``)
RECEIVER = "confmon-test"

#: urllib without the environment's http_proxy (the readiness probe is to 127.0.0.1)
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _binary() -> str:
    """The Debian package's ``prometheus-alertmanager``, else upstream's ``alertmanager``."""
    return (
        shutil.which("prometheus-alertmanager")
        or shutil.which("alertmanager")
        or require_binary("prometheus-alertmanager")  # skips (locally) / fails (CI)
    )


class Alertmanager:
    """An Alertmanager process on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        directory: Path,
        webhook_url: str | None = None,
        *,
        group_wait: str = "1s",
        group_interval: str = "1s",
        repeat_interval: str = "1h",
    ) -> None:
        self.binary = _binary()
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.webhook_url = webhook_url
        receiver: dict[str, Any] = {"name": RECEIVER}
        if webhook_url is not None:
            receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": True}]
        config = {
            "route": {
                "receiver": RECEIVER,
                "group_by": ["district"],
                "group_wait": group_wait,
                "group_interval": group_interval,
                "repeat_interval": repeat_interval,
            },
            "receivers": [receiver],
        }
        self.config = self.dir / "alertmanager.yml"
        # JSON is YAML: every string comes out quoted, whatever the URL holds
        self.config.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        self.storage = self.dir / "data"
        self.log = self.dir / "alertmanager.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, within: float = 30.0) -> None:
        """Start the process and wait until ``/-/ready`` answers 200, up to ``within`` seconds.

        A port taken between :func:`free_port` and the bind is retried on another one;
        any other exit, or no readiness in time, raises :class:`RuntimeError` with the
        log's tail.
        """
        deadline = time.monotonic() + within
        for _attempt in range(3):
            self.port = free_port()
            offset = self.log.stat().st_size if self.log.exists() else 0
            with self.log.open("ab") as out:
                self.proc = subprocess.Popen(
                    [
                        self.binary,
                        f"--config.file={self.config}",
                        f"--storage.path={self.storage}",
                        f"--web.listen-address=127.0.0.1:{self.port}",
                        f"--web.external-url={self.url}",  # not http://<hostname>:port
                        "--cluster.listen-address=",
                        "--log.level=debug",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if self._ready():
                    return
                time.sleep(0.1)
            else:
                self.stop()
                raise RuntimeError(
                    f"alertmanager not ready on {self.url} within {within:g} s:\n{self._tail()}"
                )
            code = self.proc.returncode
            self.proc = None
            if "address already in use" not in self._tail(since=offset):
                raise RuntimeError(f"alertmanager exited with {code}:\n{self._tail()}")
        raise RuntimeError(f"alertmanager found no free port in 3 tries:\n{self._tail()}")

    def _ready(self) -> bool:
        try:
            with _NO_PROXY.open(f"{self.url}/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def _tail(self, since: int = 0, size: int = 4000) -> str:
        try:
            data = self.log.read_bytes()[since:]
        except OSError:
            return "(no log)"
        return data[-size:].decode(errors="replace")

    def stop(self, within: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it is still running after ``within`` seconds."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(within)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(within)
        self.proc = None

    async def alerts(self, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds now (``GET /api/v2/alerts``), as its JSON list."""
        async with session.get(
            f"{self.url}/api/v2/alerts", timeout=aiohttp.ClientTimeout(total=10)
        ) as resp:
            resp.raise_for_status()
            body = await resp.json()
        assert isinstance(body, list), body
        return body

    def __enter__(self) -> Alertmanager:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Alertmanager:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)
