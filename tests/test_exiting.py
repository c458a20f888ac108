"""A stopped service ends its process even when something in it never returns."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from monitor.exiting import run_service

HUNG = textwrap.dedent(
    """
    import asyncio, threading
    from monitor.exiting import own_process, run_service
    from monitor.logs import setup_logging

    async def main() -> int:
        # what a library's blocking call in the default executor looks like at exit
        asyncio.get_running_loop().run_in_executor(None, threading.Event().wait)
        threading.Thread(target=threading.Event().wait, name="stuck-worker").start()
        return 3

    setup_logging()
    own_process()
    raise SystemExit(run_service(main(), grace=0.5))
    """
)


def test_a_process_held_by_a_hung_thread_ends_with_the_services_code_and_says_why() -> None:
    """Without the watchdog this process never ends (the timeout below fails the test)."""
    done = subprocess.run([sys.executable, "-c", HUNG], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    assert "did not end within 0.5s" in done.stderr
    assert "stuck-worker (not daemon)" in done.stderr
    assert "Traceback" not in done.stderr


def test_in_process_the_watchdog_never_ends_the_callers_program(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A test (or any program) calling a command keeps running after the service is done."""

    async def main() -> int:
        await asyncio.sleep(0)
        return 0

    assert run_service(main(), grace=0.01) == 0
    assert run_service(main(), grace=0.01) == 0  # the process is still here
    assert "did not end" not in caplog.text
