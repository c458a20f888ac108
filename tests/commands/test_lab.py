"""``confmon lab`` as an operator runs it: summary, impairments, control API, clean exit."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from monitor.cli import main
from monitor.commands.common import Parser
from monitor.commands.lab import add_parser, parse_impair_options
from monitor.errors import UsageError
from monitor.inventory import Inventory, load_inventory
from monitor.lab import Impairment
from tests.helpers import ROOT, free_port
from tests.lab.clients import parse_sip, sip_request, udp_client, write_inventory


def _lab_argv() -> list[str]:
    """How to run the command: ``python -m monitor lab`` once registered, else the module."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["lab", "--help"])
        except SystemExit as exc:
            code = int(exc.code or 0)
    if code == 0:
        return [sys.executable, "-m", "monitor", "lab"]
    return [sys.executable, "-m", "monitor.commands.lab"]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = Parser(prog="confmon")
    add_parser(parser.add_subparsers(parser_class=Parser))
    return parser.parse_args(["lab", *argv])


def test_impair_options_expand_patterns(inventory: tuple[Inventory, dict[str, int]]) -> None:
    """POINT=SPEC options parse, and a pattern names every matching point."""
    inv, _ = inventory
    got = parse_impair_options(["hq.*=loss:5%", "other=down"], inv)
    assert got == [
        ("hq.a", Impairment(loss=0.05)),
        ("hq.b", Impairment(loss=0.05)),
        ("other", Impairment(down=True)),
    ]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("hq", "--impair 'hq': write POINT=SPEC"),
        ("hq=delay:soon", "--impair 'hq=delay:soon': delay: 'soon' is not a duration"),
        ("nowhere=down", "--impair 'nowhere=down': no point matches 'nowhere'"),
        ("zz*=down", "no point matches 'zz*'"),
    ],
)
def test_bad_impair_option_is_one_usage_line(
    inventory: tuple[Inventory, dict[str, int]], option: str, message: str
) -> None:
    """A bad --impair is a UsageError (exit 2) of one line naming the option."""
    with pytest.raises(UsageError) as exc:
        parse_impair_options([option], inventory[0])
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_bad_seed_and_port_are_usage_errors() -> None:
    """--seed and --control-port are checked by the parser."""
    with pytest.raises(UsageError, match="is not a whole number"):
        _parse(["-c", "x.yaml", "--seed", "abc"])
    with pytest.raises(UsageError, match="is not a port number"):
        _parse(["-c", "x.yaml", "--control-port", "70000"])


def test_write_inventory_refuses_to_overwrite(tmp_path: Path) -> None:
    """--write-inventory will not overwrite a file unless --force is given."""
    write_inventory(tmp_path)
    existing = tmp_path / "exists.yaml"
    existing.write_text("keep me")
    args = _parse(["-c", str(tmp_path / "lab.yaml"), "--write-inventory", str(existing)])
    with pytest.raises(UsageError, match="exists; pass --force"):
        args.handler(args)
    assert existing.read_text() == "keep me"


def test_bad_impair_exits_2_with_one_line(tmp_path: Path) -> None:
    """Run as a command, a bad --impair exits 2 with one line on stderr and binds nothing."""
    write_inventory(tmp_path)
    proc = subprocess.run(
        [*_lab_argv(), "-c", str(tmp_path / "lab.yaml"), "--impair", "hq=loss:lots"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "confmon: --impair 'hq=loss:lots': loss: 'lots' is not a ratio: write e.g. 2% or 0.02"
    ]


async def _read_until_ready(stream: asyncio.StreamReader) -> list[str]:
    lines: list[str] = []
    async with asyncio.timeout(30):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"the lab exited early; it printed {lines}")
            lines.append(line.rstrip("\n"))
            if line.startswith("ready in "):
                return lines


async def test_lab_command_serves_until_sigterm(tmp_path: Path) -> None:
    """The command prints its plan, answers, obeys the control API and exits 0 on SIGTERM."""
    _, ports = write_inventory(tmp_path)
    control = free_port()
    mapped = tmp_path / "mapped.yaml"
    proc = await asyncio.create_subprocess_exec(
        *_lab_argv(),
        "-c",
        str(tmp_path / "lab.yaml"),
        "--seed",
        "3",
        "--impair",
        "hq=delay:40ms",
        "--control-port",
        str(control),
        "--list",
        "--write-inventory",
        str(mapped),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        lines = await _read_until_ready(proc.stdout)
        text = "\n".join(lines)
        assert "hq\t127.20.0.1" in lines and "other\t127.20.0.4" in lines
        assert "4 points of" in text and "on 127.20.0.1 .. 127.20.0.4" in text
        assert f"sip    {ports['sip']}/udp+tcp" in text
        assert f"media  {ports['media']}/udp" in text
        assert f"http   {ports['http']}/tcp" in text and "GET /status" in text
        assert "impaired: hq: delay 40ms (and the 2 points below it)" in text
        assert f"control: http://127.0.0.1:{control}/impairments" in text
        assert [p.host for p in load_inventory(mapped).points.values()][-1] == "127.20.0.4"

        client = await udp_client()
        try:
            sent = client.send(sip_request(via_port=client.port), ("127.20.0.1", ports["sip"]))
            data, at = await client.recv(5)
            assert parse_sip(data)[0] == "SIP/2.0 200 OK" and at - sent >= 0.0399
            async with (
                aiohttp.ClientSession() as http,
                http.put(
                    f"http://127.0.0.1:{control}/impairments/other", json={"down": True}
                ) as response,
            ):
                assert response.status == 200
            client.send(b"echo", ("127.20.0.4", ports["media"]))
            assert await client.nothing(0.3)
        finally:
            client.close()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert out.decode().startswith("stopped: ")
