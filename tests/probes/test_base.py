"""ProbeContext.shared: one resource per key, opened once, closed together."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from monitor.probes.base import ProbeContext


class Resource:
    def __init__(self, name: str, closed: list[str]) -> None:
        self.name = name
        self._closed = closed

    async def close(self) -> None:
        self._closed.append(self.name)


async def test_shared_opens_once_per_key_and_closes_last_first() -> None:
    closed: list[str] = []
    opened: list[str] = []

    def opener(name: str) -> Callable[[], Awaitable[Resource]]:
        async def open_() -> Resource:
            opened.append(name)
            await asyncio.sleep(0.01)  # callers arriving meanwhile wait for this one
            return Resource(name, closed)

        return open_

    async with ProbeContext() as ctx:
        first = await asyncio.gather(*(ctx.shared("a", opener("a")) for _ in range(10)))
        other = await ctx.shared("b", opener("b"))
        assert all(r is first[0] for r in first)
        assert await ctx.shared("a", opener("a")) is first[0]
        assert other is not first[0]
        assert opened == ["a", "b"]
        assert closed == []
    assert closed == ["b", "a"]
    # a closed context opens afresh
    again = await ctx.shared("a", opener("a"))
    assert again is not first[0] and opened == ["a", "b", "a"]
    await ctx.close()


async def test_failed_opener_leaves_nothing_behind() -> None:
    closed: list[str] = []
    attempts = 0

    async def flaky() -> Resource:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise PermissionError("not yet")
        return Resource("x", closed)

    async with ProbeContext() as ctx:
        with pytest.raises(PermissionError):
            await ctx.shared("x", flaky)
        resource = await ctx.shared("x", flaky)
        assert attempts == 2
    assert closed == [resource.name]
