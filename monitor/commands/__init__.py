"""One module per ``confmon`` command; each has ``add_parser(subparsers)``.

A command's module registers its arguments and sets ``handler`` (``args -> exit
code``) on its parser; :mod:`monitor.cli` only assembles them and turns errors
into one line and an exit code. Heavy imports (aiohttp, the probes, the lab)
happen inside the handlers, so ``confmon check-config`` stays quick.
"""

from __future__ import annotations

__all__ = ["COMMANDS"]

#: the command modules, in the order ``confmon --help`` lists them
COMMANDS = (
    "check_config",
    "run",
    "agent",
    "server",
    "probe",
    "demo",
    "rollcall",
    "dashboard",
    "lab",
    "inventory",
    "alerts",
    "report",
)
