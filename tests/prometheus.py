"""A real Prometheus server for tests: started on a free port, scraping given targets, stopped after."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.helpers import free_port, require_binary


class Prometheus:
    """A running Prometheus; :meth:`query` runs an instant PromQL query."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def _api(self, path: str, params: dict[str, str]) -> Any:
        """The ``data`` of a successful answer of Prometheus's HTTP API."""
        async with (
            aiohttp.ClientSession() as s,
            s.get(
                f"{self.url}{path}", params=params, timeout=aiohttp.ClientTimeout(total=20)
            ) as resp,
        ):
            body = await resp.json()
        assert body["status"] == "success", body
        return body["data"]

    async def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant PromQL query, as Grafana runs a table's or a stat's."""
        return (await self._api("/api/v1/query", {"query": promql}))["result"]  # type: ignore[no-any-return]

    async def query_range(
        self, promql: str, start: float, end: float, step: float
    ) -> list[dict[str, Any]]:
        """A range PromQL query, as Grafana runs a time-series panel's."""
        params = {"query": promql, "start": str(start), "end": str(end), "step": str(step)}
        return (await self._api("/api/v1/query_range", params))["result"]  # type: ignore[no-any-return]

    async def label_values(self, label: str, match: str) -> list[str]:
        """What Grafana's label_values(match, label) variable query asks."""
        return await self._api(f"/api/v1/label/{label}/values", {"match[]": match})  # type: ignore[no-any-return]

    async def wait_for(self, promql: str, within: float = 60.0) -> list[dict[str, Any]]:
        """Poll until the query returns something."""
        async with asyncio.timeout(within):
            while True:
                result = await self.query(promql)
                if result:
                    return result
                await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def prometheus(
    tmp: Path,
    targets: list[str],
    scrape_interval: str = "1s",
    rule_files: list[Path] | None = None,
) -> AsyncIterator[Prometheus]:
    """Run Prometheus scraping ``targets`` (host:port) every ``scrape_interval`` as job
    ``confmon``, evaluating ``rule_files`` as often."""
    binary = require_binary("prometheus")
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        "global:\n"
        f"  scrape_interval: {scrape_interval}\n"
        f"  evaluation_interval: {scrape_interval}\n"
        + (f"rule_files: [{', '.join(repr(str(r)) for r in rule_files)}]\n" if rule_files else "")
        + "scrape_configs:\n"
        "  - job_name: confmon\n"
        f"    static_configs: [{{targets: [{', '.join(repr(t) for t in targets)}]}}]\n",
        encoding="utf-8",
    )
    proc = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = Prometheus(f"http://127.0.0.1:{port}")
    try:
        async with asyncio.timeout(30):
            while True:
                if proc.returncode is not None:
                    err = await proc.stderr.read() if proc.stderr else b""
                    raise RuntimeError(f"prometheus exited: {err.decode(errors='replace')}")
                try:
                    async with aiohttp.ClientSession() as s, s.get(f"{server.url}/-/ready") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        yield server
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
