"""Shared test helpers: real peers, free ports, and the CI rule for missing binaries.

A test that needs an external program (mosquitto, kamailio, promtool, fping,
ip) calls :func:`require_binary`. Locally it skips with the reason; under CI
(``CONFMON_REQUIRE_BINARIES=1``, set by ``.ci/run``) it fails instead, so a
missing install step cannot pass silently.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
REQUIRE_ENV = "CONFMON_REQUIRE_BINARIES"


def _missing(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: required in CI)")
    pytest.skip(reason)


def require_binary(name: str) -> str:
    """Path of an external program, or skip (locally) / fail (CI) naming what to install."""
    path = shutil.which(name) or next(
        (
            p
            for d in ("/usr/sbin", "/sbin", "/usr/local/sbin")
            if os.access(p := f"{d}/{name}", os.X_OK)
        ),
        None,
    )
    if path is None:
        _missing(f"'{name}' is not installed (apt-get install the package that provides it)")
    assert path is not None
    return path


def require_root(what: str) -> None:
    """Skip (locally) / fail (CI) unless running as root."""
    if os.geteuid() != 0:
        _missing(f"{what} needs root")


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port that is free right now on ``host`` for ``kind`` sockets."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def run_in_empty_netns(script: str, timeout: float = 30) -> list[str]:
    """Run a Python script in a network namespace with no interface up; its output lines.

    Nothing it sends can leave the machine (there is no route at all), which makes it the
    place to test "no route" and "no resolver" failures. Needs root and unshare(1).
    """
    require_root("unshare -n")
    unshare = require_binary("unshare")
    out = subprocess.run(
        [unshare, "--net", sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


async def eventually(check: Callable[[], object], within: float, what: str) -> None:
    """Poll the (plain, quick) ``check()`` every 50 ms until it is truthy; fail after ``within``
    seconds saying ``what`` was awaited. Bounds are generous: the machine may be loaded."""
    import asyncio
    import time

    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(0.05)
