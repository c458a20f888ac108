"""The small exception hierarchy that the command line turns into one-line errors.

Every error a user can cause (bad config, bad arguments, missing permissions)
is a :class:`ConfmonError`; its ``str()`` is the one line printed, and
``exit_code`` is what the process exits with (2 for bad usage or config, 1 for
runtime failures). Anything else reaching the top level is a bug.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ConfigError", "ConfigIssue", "ConfmonError", "IcmpNotPermitted", "UsageError"]


class ConfmonError(Exception):
    """An error whose message is meant for the user, as one line."""

    exit_code = 1


class IcmpNotPermitted(ConfmonError):
    """This process may open neither a raw nor a ping socket; the message says what to grant."""


class UsageError(ConfmonError):
    """Bad command-line usage."""

    exit_code = 2


@dataclass(frozen=True, order=True)
class ConfigIssue:
    """One problem in a config file, located by line and field path."""

    line: int
    field: str
    message: str
    file: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class ConfigError(ConfmonError):
    """A config file that cannot be used. Holds every issue found, in line order."""

    exit_code = 2

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = sorted(issues)
        super().__init__(str(self.issues[0]) if self.issues else "invalid config")

    def lines(self, limit: int = 20) -> list[str]:
        """The issues as printable lines, at most ``limit`` plus a count of the rest."""
        out = [str(i) for i in self.issues[:limit]]
        if len(self.issues) > limit:
            out.append(f"... and {len(self.issues) - limit} more problems")
        return out
