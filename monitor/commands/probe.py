"""``confmon probe TYPE TARGET``: one probe, every phase printed, for troubleshooting.

Settings start from the probe's defaults (as in a profile) and are changed with
``-o key=value`` (validated like the config file, so ``-o timeout=2s`` and
``-o transport=tcp`` work). ``TARGET`` may carry a port (``host:port``,
``[IPv6]:port``) and, for http, be a whole URL; it is read by
:func:`monitor.probes.target.parse_target`, as every probe kind's is. Exit 0 when the probe succeeded,
1 when it failed, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import pydantic
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from monitor.commands.common import Subparsers, output_console
from monitor.core.results import ProbeResult, result_json
from monitor.errors import UsageError
from monitor.probes.base import ProbeContext
from monitor.probes.registry import PROBE_TYPES, PROBES, SPECS
from monitor.probes.target import parse_target
from monitor.text import printable, quoted

__all__ = ["build_settings", "run_probe"]

#: each probe's settings model, by probe name
SETTINGS: dict[str, type[pydantic.BaseModel]] = {
    name: spec.settings for name, spec in SPECS.items()
}


def _split_target(kind: str, target: str) -> tuple[str, dict[str, Any]]:
    """Host and settings implied by the target (``host:port``, or a URL for http).

    Every probe kind reads its target with :func:`monitor.probes.target.parse_target`,
    so a mistake (an unclosed bracket, a port that is not a number or out of
    range, a bare IPv6 address that ends like a port) reads the same for all.
    """
    spec = SPECS[kind]
    implied: dict[str, Any] = {}
    try:
        if spec.settings_from_url is not None and "://" in target:
            host, implied = spec.settings_from_url(target)
            return host, implied
        parsed = parse_target(target, takes_port=spec.takes_port)
    except ValueError as exc:
        message = str(exc)
        if "takes no port" in message:
            message = f"{kind} has no port: give just the host ({quoted(target)})"
        raise UsageError(f"probe target {message}" if message[0] == "'" else message) from None
    if parsed.port is not None:
        implied["port"] = parsed.port
    return parsed.host, implied


def build_settings(kind: str, target: str, options: list[str]) -> tuple[str, pydantic.BaseModel]:
    """Host and validated settings for a one-off probe."""
    if kind not in PROBE_TYPES:
        raise UsageError(f"unknown probe {kind!r}; choose one of {', '.join(PROBE_TYPES)}")
    host, values = _split_target(kind, target)
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise UsageError(f"-o {quoted(option, 60)}: expected key=value, e.g. -o timeout=2s")
        if len(value) > MAX_OPTION:
            raise UsageError(
                f"-o {printable(key.strip(), 60)}: a value of {len(value)} characters;"
                f" at most {MAX_OPTION}"
            )
        values[key.strip()] = _guess(value.strip())
    port = SETTINGS[kind].model_fields.get("port")
    if port is not None and port.is_required() and "port" not in values:
        raise UsageError(f"{kind} needs a port: give host:port or -o port=N")
    try:
        return host, SETTINGS[kind].model_validate(values)
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = str(err["ctx"]["error"]) if err["type"] == "value_error" else err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown setting; {kind} takes: {', '.join(SETTINGS[kind].model_fields)}"
        raise UsageError(f"-o {printable(where, 60)}: {printable(msg, 300)}") from None


#: longest ``-o`` value read, in characters (a list of statuses needs a few dozen)
MAX_OPTION = 10_000


def _guess(value: str) -> Any:
    """Option values are text; numbers, booleans and lists are read the way YAML would.

    What YAML would make of it beyond those (a date, binary, a 5,000-digit number it
    cannot convert, nesting too deep to compose) stays the text it was, for the
    settings model to refuse in its own words.
    """
    import datetime

    import yaml

    try:
        guessed = yaml.safe_load(value)
    except (yaml.YAMLError, ValueError, RecursionError):
        return value
    if isinstance(guessed, datetime.date | bytes):
        return value
    return guessed


def _fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.2f} ms" if value < 10 else f"{value:.2f} s"


def _shown(value: object) -> str:
    """Text from the peer (a reason phrase, a Server header) as rich markup that shows it as is.

    Control characters are escaped (:func:`monitor.text.printable`) and ``[`` is
    escaped for rich, so ``[/x]`` in a header neither styles the line nor raises.
    """
    return escape(printable(str(value), 400))


def print_result(r: ProbeResult, console: Console) -> None:
    """Every phase, the figures and the details of one result."""
    verdict = "[bold green]OK[/]" if r.ok else "[bold red]FAILED[/]"
    console.print(
        f"{r.probe} {_shown(r.target)}: {verdict} in {_fmt_seconds(r.duration)}"
        + (f" — {_shown(r.error)}" if r.error else "")
    )
    table = Table(box=None, padding=(0, 2), show_header=True, header_style="bold")
    table.add_column("phase")
    table.add_column("")
    table.add_column("time", justify="right")
    table.add_column("detail")
    for p in r.phases:
        table.add_row(
            p.name,
            "[green]✔[/]" if p.ok else "[red]✖[/]",
            _fmt_seconds(p.seconds),
            _shown(p.detail),
        )
    if r.phases:
        console.print(table)
    figures = []
    if r.rtt is not None:
        figures.append(f"rtt {_fmt_seconds(r.rtt)}")
    if r.rtt_min is not None and r.rtt_max is not None:
        figures.append(f"min/max {_fmt_seconds(r.rtt_min)}/{_fmt_seconds(r.rtt_max)}")
    if r.jitter is not None:
        figures.append(f"jitter {_fmt_seconds(r.jitter)}")
    if r.loss is not None:
        figures.append(f"loss {r.loss:.1%}")
    if r.mos is not None:
        figures.append(f"MOS {r.mos:.2f}")
    if figures:
        console.print("  " + " · ".join(figures))
    for key, value in r.details.items():
        if "rtt" in key and isinstance(value, list | tuple):
            value = ", ".join("lost" if v is None else f"{v * 1000:.2f}" for v in value) + " ms"
        elif isinstance(value, list | tuple) and len(value) > 12:
            value = f"{list(value[:12])} … ({len(value)} in all)"
        console.print(f"  [dim]{_shown(key)}:[/] {_shown(value)}", highlight=False)


async def run_probe(kind: str, target: str, options: list[str], as_json: bool) -> int:
    """Run one probe and print it; exit code 0 if it succeeded, else 1."""
    host, settings = build_settings(kind, target, options)
    async with ProbeContext() as ctx:
        result = await PROBES[kind](host, settings, ctx)
    if as_json:
        print(json.dumps(result_json(result), ensure_ascii=False, indent=2))
    else:
        print_result(result, output_console(highlight=False))
    return 0 if result.ok else 1


# --- the command line -----------------------------------------------------------------


def _handle(args: argparse.Namespace) -> int:
    import asyncio

    return asyncio.run(run_probe(args.type, args.target, args.option, args.json))


def add_parser(sub: Subparsers) -> None:
    """Register ``confmon probe``."""
    p = sub.add_parser(
        "probe",
        help="run one probe now and print every phase (troubleshooting)",
        description=(
            "Run one probe against one target and print every phase it went through. "
            "Exit 0 when it succeeded, 1 when it failed."
        ),
        epilog=(
            "examples:  confmon probe icmp 127.0.0.1 -o count=20  |  confmon probe sip 127.20.0.1:5060 "
            "-o transport=tcp  |  confmon probe http https://mcu.example/status  |  "
            "confmon probe media 127.20.0.1:7078 -o packets=200"
        ),
    )
    p.add_argument(
        "type",
        choices=PROBE_TYPES,
        metavar="TYPE",
        help=f"{', '.join(PROBE_TYPES[:-1])} or {PROBE_TYPES[-1]}",
    )
    p.add_argument(
        "target",
        metavar="TARGET",
        help="host, host:port, [IPv6] or [IPv6]:port (a bare IPv6 address ending like a port is "
        "refused: write the brackets), or an http(s):// URL for http",
    )
    p.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a probe setting as in a profile, e.g. -o timeout=2s -o count=10 (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=_handle)
