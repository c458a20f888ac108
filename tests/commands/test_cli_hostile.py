"""The command line under abuse: hostile option values, a full disk, a closed pipe.

Every bad value is one line and exit 2 before anything starts; output that
cannot be written is one line and exit 1 (a full disk) or a quiet exit (a reader
that went away). Real processes of ``python -m monitor``, writing to the real
``/dev/full``, to pipes whose reader has closed, and under a real file-size limit.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.cli import CLOSED_PIPE_EXIT, build_parser
from monitor.errors import UsageError
from tests.helpers import CONFIGS, ROOT

HANOI = str(CONFIGS / "hanoi.yaml")
CUT_SHORT = "confmon: standard output was closed by its reader; the output is cut short\n"
LAB_BASE = "127.62.3.1"  # this module's loopback block: 127.62.0.0/16
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux; the module has it from 3.10
FULL = "confmon: cannot write standard output (/dev/full): No space left on device"


def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """``python -m monitor ARGS`` as a real process, with a generous bound."""
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )


# --- output that cannot be written -------------------------------------------------------

WRITERS = [
    ["check-config", HANOI],
    ["check-config", "--json", HANOI],
    ["inventory", "export", HANOI],
    ["probe", "--help"],
    ["--version"],
]


@pytest.mark.parametrize("args", WRITERS, ids=" ".join)
def test_a_full_disk_is_one_line_and_exit_1(args: list[str]) -> None:
    """stdout on /dev/full: 'cannot write standard output (/dev/full): No space left on device'."""
    with open("/dev/full", "w") as full:
        proc = run(args, stdout=full, stderr=subprocess.PIPE)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [FULL]


@pytest.mark.parametrize("args", WRITERS, ids=" ".join)
def test_a_closed_pipe_is_one_line_and_exit_141(args: list[str]) -> None:
    """The reader closed before a byte was written (| head -0): one line, no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = run(args, stdout=write_end, stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr) == (CLOSED_PIPE_EXIT, CUT_SHORT)


def test_a_pipe_closed_midway_is_one_line_and_exit_141() -> None:
    """| head -c 100 on a 45 KB export: the reader leaves after 100 bytes; one line."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(read_end, F_SETPIPE_SZ, 4096)  # the export cannot fit: the child must wait
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "inventory", "export", HANOI],
        stdout=write_end,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        assert len(reader.read(100)) == 100
    assert proc.stderr is not None
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(60) == CLOSED_PIPE_EXIT
    assert err == CUT_SHORT


def test_output_file_on_a_full_device(tmp_path: Path) -> None:
    """-o /dev/full --force: 'cannot write /dev/full: No space left on device', exit 1."""
    proc = run(
        ["inventory", "export", HANOI, "-o", "/dev/full", "--force"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == ["confmon: cannot write /dev/full: No space left on device"]


def _small_file_limit() -> None:
    """In the child: files may not grow past 4 KiB (the write fails with EFBIG)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_a_failed_overwrite_keeps_the_old_file(tmp_path: Path) -> None:
    """A write that fails halfway (file-size limit) leaves the old file whole and no leftovers."""
    target = tmp_path / "hanoi.csv"
    target.write_text("the old export\n", encoding="utf-8")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitor",
            "inventory",
            "export",
            HANOI,
            "-o",
            str(target),
            "--force",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
        preexec_fn=_small_file_limit,
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"confmon: cannot write {target}: File too large"]
    assert target.read_text(encoding="utf-8") == "the old export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hanoi.csv"]


def test_an_overwrite_that_fits_replaces_the_file(tmp_path: Path) -> None:
    """The same, without the limit: the new export, with the old file's permissions."""
    target = tmp_path / "hanoi.csv"
    target.write_text("the old export\n", encoding="utf-8")
    target.chmod(0o640)
    proc = run(
        ["inventory", "export", HANOI, "-o", str(target), "--force"],
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert target.read_text(encoding="utf-8").startswith("id,")
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hanoi.csv"]


def test_a_fifo_without_reader_is_refused_not_waited_for(tmp_path: Path) -> None:
    """-o FIFO with nobody reading: one line at once, where open() would block for ever."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    proc = run(
        ["inventory", "export", HANOI, "-o", str(fifo), "--force"],
        capture_output=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"confmon: cannot write {fifo}: No such device or address"]


# --- hostile option values: refused by the parser, one line ------------------------------

ESC = "\x1b[2J"
NOT_NUMBERS = ["", " ", "abc", ESC, "0x10"]
NOT_FINITE = ["nan", "inf", "-inf", "1e309"]
HUGE_DIGITS = "9" * 5000

#: (arguments before the option, option, values it must refuse)
HOSTILE = [
    (["dashboard"], "--width", [*NOT_NUMBERS, *NOT_FINITE, "0", "-5", "39", "100000", "1.5", "٣", HUGE_DIGITS]),
    (["dashboard"], "--height", [*NOT_NUMBERS, *NOT_FINITE, "0", "-1", "9", "5000", HUGE_DIGITS]),
    (["dashboard"], "--refresh", [*NOT_NUMBERS, *NOT_FINITE, "0", "-1", "0.01", "21", HUGE_DIGITS]),
    (["dashboard"], "--url", ["", "junk", "http://", "http://[::1", "http://h:99999", "http://h:0", "ftp://h", "http://u@h", "http://h/?q=1", "http://h:x", ESC]),
    (["dashboard"], "--tz", ["", "Mars/Olympus", "../../etc/passwd", "/etc/localtime", ESC]),
    (["lab", "-c", HANOI], "--seed", [*NOT_NUMBERS, *NOT_FINITE, "1.5", "٣", HUGE_DIGITS]),
    (["lab", "-c", HANOI], "--control-port", [*NOT_NUMBERS, *NOT_FINITE, "-1", "65536", "99999", "²", HUGE_DIGITS]),
    (["demo"], "--seed", [*NOT_NUMBERS, *NOT_FINITE, "2.5", HUGE_DIGITS]),
    (["demo"], "--duration", [*NOT_NUMBERS, *NOT_FINITE, "0", "-1", "1e10", HUGE_DIGITS]),
    (["rollcall", "-c", HANOI], "--format", ["", "xml", ESC]),
]  # fmt: skip
CASES = [(pre, opt, value) for pre, opt, values in HOSTILE for value in values]


@pytest.mark.parametrize(
    ("before", "option", "value"), CASES, ids=[f"{c[1]}={c[2][:12]!r}" for c in CASES]
)
def test_each_parser_refuses_hostile_values_in_one_line(
    before: list[str], option: str, value: str
) -> None:
    """The parser itself refuses the value: UsageError (exit 2), one line naming the option."""
    with pytest.raises(UsageError) as caught:
        build_parser().parse_args([*before, f"{option}={value}"])
    message = str(caught.value)
    assert caught.value.exit_code == 2
    assert f"argument {option}" in message
    assert "\n" not in message and "\x1b" not in message and len(message) < 400


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dashboard", "--width", "0", "--snapshot", "x.svg"], "'0' is out of range (40..1000)"),
        (["dashboard", "--url", "junk"], "is not an http:// or https:// URL"),
        (["lab", "-c", HANOI, "--control-port", "²", "--lab-base", LAB_BASE], "is not a port number"),
        (["lab", "-c", HANOI, "--lab-base", "10.0.0.1"], "the lab listens on loopback only"),
        (["lab", "-c", HANOI, "--lab-base", LAB_BASE, "--impair", f"{ESC}=down"], "no point matches '\\x1b[2J'"),
        (["demo", "--duration", "nan", "--lab-base", LAB_BASE], "'nan' is not a finite number"),
        (["demo", "--lab-base", "::1"], "is not an IPv4 address"),
        (["demo", "--no-dashboard", "--lab-base", LAB_BASE, "--scenario", f"x{ESC}"], "x\\x1b[2J: unknown scenario"),
        (["probe", "icmp", "127.0.0.1", "-o", f"count={HUGE_DIGITS}"], "-o count: Input should be a valid integer"),
        (["probe", "http", "127.0.0.1", "-o", "status=" + "[" * 20_000], "-o status: a value of 20000 characters; at most 10000"),
        (["probe", "tcp", "127.0.0.1:80", "-o", "timeout=2026-01-01"], "'2026-01-01' is not a duration"),
        (["rollcall", "-c", HANOI, "--format", "xml"], "invalid choice: 'xml'"),
    ],
)  # fmt: skip
async def test_hostile_values_through_the_real_command(args: list[str], message: str) -> None:
    """In a real process: exit 2, one line on stderr, no traceback, nothing started."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"{args} was accepted and ran")
    text = err.decode()
    assert proc.returncode == 2, text
    assert out == b""
    assert len(text.splitlines()) == 1 and message in text, text
    assert "Traceback" not in text and "\x1b" not in text


INTERRUPTED_AT_IMPORT = """
import os, signal, sys

class Interrupt:
    '''Ctrl-C arrives while the command line is being imported (its first tenth of a second).'''

    def find_spec(self, name, path, target=None):
        if name == "monitor.cli":
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, Interrupt())
sys.argv = ["confmon", "check-config", sys.argv[1]]
from monitor.entry import main
main()
"""


def test_ctrl_c_while_the_program_starts_is_a_quiet_130() -> None:
    """A SIGINT before the command line is imported: exit 130, no KeyboardInterrupt traceback."""
    proc = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_AT_IMPORT, HANOI],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert (proc.returncode, proc.stderr) == (130, ""), proc.stderr


def test_the_lab_inventory_on_a_full_disk_leaves_no_file(tmp_path: Path) -> None:
    """`lab --write-inventory` that cannot write the whole file says so in one line, exits 1
    before serving anything, and leaves neither an empty file nor a temporary one."""
    target = tmp_path / "lab.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "lab", "-c", HANOI, "--write-inventory", str(target)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
        preexec_fn=_small_file_limit,
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"confmon: cannot write {target}: File too large"]
    assert list(tmp_path.iterdir()) == []
