"""The command line as a user meets it: help, usage errors, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from monitor.cli import main


def test_help_lists_the_built_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """`confmon --help` lists the commands that exist and exits 0."""
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("check-config", "inventory"):
        assert command in out


def test_unknown_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped command gives one line and exit 2."""
    assert main(["chek-config"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "invalid choice" in err


def test_missing_argument_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A command without its required file gives one line and exit 2."""
    assert main(["check-config"]) == 2
    assert "the following arguments are required: FILE" in capsys.readouterr().err


def test_python_dash_m_is_confmon() -> None:
    """`python -m monitor --version` works like the console script."""
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("confmon ")


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["run", "-c", "configs/hanoi.yaml", "--state-db", ""], "--state-db is empty"),
        (
            ["server", "-c", "configs/hanoi.yaml", "--broker", "mqtt://x", "--state-db", " "],
            "--state-db is empty",
        ),
        (["dashboard", "--snapshot", ""], "--snapshot is empty"),
    ],
)
def test_an_empty_path_is_refused_not_taken_as_not_given(
    argv: list[str], why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unset variable in a service file must not silently pick the default (or, for
    --snapshot, start the live screen in a script that never ends). Refused before anything
    is read or probed."""
    assert main(argv) == 2
    assert why in capsys.readouterr().err
