"""Reading YAML while remembering where every value came from.

PyYAML's composer gives a node tree with line marks; we turn it into plain
Python data plus a map from field path to line, so that validation errors found
later (by pydantic or by our own rules) can name the exact line. Duplicate keys,
which PyYAML would silently overwrite, are reported here.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from monitor.errors import ConfigError, ConfigIssue

__all__ = ["Loc", "Source", "format_loc", "load_yaml", "parse_yaml"]

Loc = tuple[str | int, ...]

try:  # the C composer is several times faster; fall back when libyaml is absent
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


def format_loc(loc: Loc) -> str:
    """``('points', 3, 'host')`` -> ``points[3].host``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class Source:
    """Parsed YAML data with the line of every field path."""

    file: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int:
        """The line of ``loc``, or of its nearest ancestor that has one."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), 1)

    def issue(self, loc: Loc, message: str, *, line: int | None = None) -> ConfigIssue:
        """A :class:`ConfigIssue` at ``loc`` in this file."""
        return ConfigIssue(
            line=self.line_of(loc) if line is None else line,
            field=format_loc(loc),
            message=message,
            file=self.file,
        )


#: more values than this is an alias bomb ("billion laughs"), not an inventory
MAX_NODES = 1_000_000


class _Walker:
    def __init__(self, loader: yaml.SafeLoader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.lines: dict[Loc, int] = {}
        self.issues: list[ConfigIssue] = []
        self._open: set[int] = set()  # collections being expanded: an alias to one is a loop
        self._count = 0

    def _fail(self, node: yaml.Node, loc: Loc, message: str) -> ConfigError:
        return ConfigError([ConfigIssue(node.start_mark.line + 1, _fmt(loc), message, self.file)])

    def walk(self, node: yaml.Node, loc: Loc) -> Any:
        self._count += 1
        if self._count > MAX_NODES:
            raise self._fail(node, loc, f"more than {MAX_NODES:,} values: aliases expand too far")
        if isinstance(node, yaml.CollectionNode):
            if id(node) in self._open:
                raise self._fail(node, loc, "an alias refers to a value that contains it")
            self._open.add(id(node))
            try:
                return self._walk(node, loc)
            finally:
                self._open.discard(id(node))
        return self._walk(node, loc)

    def _walk(self, node: yaml.Node, loc: Loc) -> Any:
        self.lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if not isinstance(key, str):
                    self.issues.append(
                        ConfigIssue(line, _fmt(loc), f"key {key!r} must be a string", self.file)
                    )
                    continue
                if key in out:
                    self.issues.append(
                        ConfigIssue(
                            line,
                            _fmt((*loc, key)),
                            f"duplicate key (first defined on line {self.lines[(*loc, key)]})",
                            self.file,
                        )
                    )
                    continue
                self.lines[(*loc, key)] = line
                out[key] = self.walk(value_node, (*loc, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.walk(child, (*loc, i)) for i, child in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)


def _fmt(loc: Loc) -> str:
    return format_loc(loc) or "(top level)"


def parse_yaml(text: bytes | str, file: str) -> Source:
    """Parse YAML text into a :class:`Source`; raise :class:`ConfigError` for any problem.

    Handles non-UTF-8 bytes, empty documents, syntax errors and duplicate keys,
    each reported with its line.
    """
    if isinstance(text, bytes):
        raw = text
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigError(
                [
                    ConfigIssue(
                        line,
                        "",
                        f"byte 0x{raw[exc.start]:02x} is not valid UTF-8; save the file as UTF-8",
                        file,
                    )
                ]
            ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(
                [ConfigIssue(1, "", "the file is empty; expected a YAML mapping", file)]
            )
        walker = _Walker(loader, file)
        data = walker.walk(node, ())
    except yaml.MarkedYAMLError as exc:
        # the context (e.g. where an unclosed quote opened) is where the fix goes
        problem = exc.problem or "syntax error"
        mark = exc.problem_mark
        if exc.context and exc.context_mark is not None:
            at = f" (at line {mark.line + 1})" if mark is not None else ""
            problem = f"{exc.context}: {problem}{at}"
            mark = exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError([ConfigIssue(line, "", f"YAML syntax error: {problem}", file)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(1, "", f"YAML error: {exc}", file)]) from None
    finally:
        loader.dispose()
    if walker.issues:
        raise ConfigError(walker.issues)
    return Source(file=file, data=data, lines=walker.lines)


#: an inventory larger than this is refused unread (configs/hanoi.yaml is 40 KiB)
MAX_CONFIG_BYTES = 16 << 20


def load_yaml(path: str | Path) -> Source:
    """Read and parse a YAML file (see :func:`parse_yaml`).

    Only a regular file of at most :data:`MAX_CONFIG_BYTES` is read: a FIFO without a
    writer would block for ever, and ``/dev/zero`` never ends.
    """
    name = str(path)

    def refuse(message: str) -> ConfigError:
        return ConfigError([ConfigIssue(0, "", message, name)])

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise refuse(f"cannot read file: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise refuse(f"cannot read file: {kind} (give the path of a YAML file)")
        if info.st_size > MAX_CONFIG_BYTES:
            raise refuse(f"file is {info.st_size} bytes; an inventory may have {MAX_CONFIG_BYTES}")
        with os.fdopen(fd, "rb", closefd=True) as f:
            fd = -1
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise refuse(f"cannot read file: {exc.strerror}") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(raw) > MAX_CONFIG_BYTES:
        raise refuse(f"file is over {MAX_CONFIG_BYTES} bytes")
    return parse_yaml(raw, name)
