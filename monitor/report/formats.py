"""The renderers by name, and which one a file's suffix picks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from monitor.report import as_csv, as_html, as_json, as_markdown
from monitor.report.compute import Report

__all__ = ["FORMATS", "SUFFIXES", "format_of"]

#: every format: ``render(report) -> text``
FORMATS: dict[str, Callable[[Report], str]] = {
    "html": as_html.render,
    "md": as_markdown.render,
    "csv": as_csv.render,
    "json": as_json.render,
}

#: the suffix of ``-o FILE`` -> its format
SUFFIXES = {
    ".html": "html",
    ".htm": "html",
    ".md": "md",
    ".markdown": "md",
    ".csv": "csv",
    ".json": "json",
}


def format_of(path: str) -> str | None:
    """The format a file name's suffix picks (case does not matter), or None."""
    return SUFFIXES.get(Path(path).suffix.lower())
