"""Reading YAML while remembering where every value came from, within fixed bounds.

The file is read as a stream of parser events and built into plain Python data
by one loop with an explicit stack, never by recursion and never through
PyYAML's node graph: a document nested 10,000 deep, an alias bomb ("billion
laughs", also through merge keys) or a 16 MiB list of numbers stops at a limit
with one line, instead of a ``RecursionError``, gigabytes of nodes or minutes of
work. Along the way every field path gets its line, so that validation errors
found later (by pydantic or by our own rules) name the exact line, and
duplicate keys, which PyYAML would silently overwrite, are reported.

Plain scalars are typed by a smaller set of rules than YAML 1.1's: ``true`` and
``false`` are booleans (``yes``, ``no``, ``on`` and ``off`` stay text), numbers
are decimal, and nothing is a sexagesimal number or a date. So ``from: 22:00``
is the text ``"22:00"`` and not the number 1320, ``name: No`` is a name, and an
error quotes what the user wrote.

Every limit is a module constant, documented in docs/configuration.md.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final

import yaml

from monitor.errors import ConfigError, ConfigIssue, UsageError
from monitor.text import printable, quoted

__all__ = [
    "MAX_ALIAS_VALUES",
    "MAX_CONFIG_BYTES",
    "MAX_NESTING",
    "MAX_VALUES",
    "Loc",
    "Source",
    "config_issue",
    "format_loc",
    "load_yaml",
    "make_loader",
    "parse_yaml",
    "read_config_bytes",
    "reads_as_text",
]

Loc = tuple[str | int, ...]

#: an inventory file larger than this is refused unread (configs/hanoi.yaml is 40 KiB)
MAX_CONFIG_BYTES: Final = 16 << 20
#: mappings and lists inside each other: a 32-level tree of points needs 65
MAX_NESTING: Final = 100
#: values (scalars, lists, mappings) in one file, aliases expanded: about 150,000 points
MAX_VALUES: Final = 1_000_000
#: of those, values that come from aliases and merge keys (``*name``, ``<<: *name``)
MAX_ALIAS_VALUES: Final = 100_000
#: a field path in an error is cut to this many characters per key
_KEY_LIMIT: Final = 60
#: ... and the whole path to this many
_PATH_LIMIT: Final = 100

try:  # the C parser is several times faster; fall back when libyaml is absent
    _Base: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Base = yaml.SafeLoader


_T = "tag:yaml.org,2002:"


def make_loader(base: type[yaml.SafeLoader]) -> type[yaml.SafeLoader]:
    """``base`` (PyYAML's C or pure-Python safe loader) with the typing rules of the module
    docstring: the implicit resolvers below and no others."""

    class ConfigLoader(base):  # type: ignore[valid-type,misc]
        yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, re.Pattern[str]]]]] = {}

    add = ConfigLoader.add_implicit_resolver
    add(_T + "bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
    add(_T + "int", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789"))
    add(
        _T + "float",
        re.compile(
            # a dot or an exponent: "010" is neither an int nor a float, and stays text
            r"^(?:[-+]?(?:(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+)"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
        ),
        list("-+0123456789."),
    )
    add(_T + "merge", re.compile(r"^<<$"), ["<"])
    add(_T + "null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
    return ConfigLoader


_ConfigLoader = make_loader(_Base)

#: scalar tags a file may use, written or implied, and how each is built
_SCALARS: Final = {
    _T + "str": yaml.SafeLoader.construct_yaml_str,
    _T + "int": yaml.SafeLoader.construct_yaml_int,
    _T + "float": yaml.SafeLoader.construct_yaml_float,
    _T + "bool": yaml.SafeLoader.construct_yaml_bool,
    _T + "null": yaml.SafeLoader.construct_yaml_null,
    _T + "timestamp": yaml.SafeLoader.construct_yaml_timestamp,
}
_COLLECTIONS: Final = {None, "!", _T + "map", _T + "seq"}

#: characters YAML does not allow in a file at all (YAML 1.1 §5.1), NUL and ESC among them
_NOT_YAML: Final = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def format_loc(loc: Loc) -> str:
    """``('points', 3, 'host')`` -> ``points[3].host``; keys escaped and cut for showing."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = printable(part, _KEY_LIMIT)
            out += f".{text}" if out else text
    if len(out) > _PATH_LIMIT:  # a path 100 levels deep: its start and its end say enough
        out = f"{out[: _PATH_LIMIT // 2]}…{out[-_PATH_LIMIT // 2 :]}"
    return out


def config_issue(line: int, loc: Loc | str, message: str, file: str) -> ConfigIssue:
    """A :class:`ConfigIssue` whose every part is safe to print (control characters escaped)."""
    where = loc if isinstance(loc, str) else format_loc(loc)
    return ConfigIssue(line, printable(where), printable(message), printable(file))


@dataclass
class Source:
    """Parsed data with the line of every field path."""

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
        return config_issue(self.line_of(loc) if line is None else line, loc, message, self.file)


def _line(event: yaml.Event) -> int:
    mark = event.start_mark
    return mark.line + 1 if mark is not None else 1


def _fmt(loc: Loc) -> str:
    return format_loc(loc) or "(top level)"


class _Stop(Exception):
    """Parsing cannot go on: ``issue`` says why."""

    def __init__(self, line: int, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.line, self.loc, self.message = line, loc, message


@dataclass(slots=True)
class _Anchor:
    value: Any = None
    values: int = 0  # how many values it holds (itself included)
    done: bool = False


@dataclass(slots=True)
class _Frame:
    """A mapping or a list being built."""

    loc: Loc
    line: int
    container: Any  # dict or list
    live: bool  # False below a duplicate or refused key: built, then dropped
    anchor: _Anchor | None
    values_before: int
    key: str | None = None
    #: what the next value is: "key", "value" (under ``key``), "merge" or "skip"
    expect: str = "key"
    key_line: int = 0
    merges: list[tuple[Any, int]] = field(default_factory=list)


class _Builder:
    """Builds data from parser events, counting everything against the module's limits."""

    def __init__(self, loader: yaml.SafeLoader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.lines: dict[Loc, int] = {}
        self.issues: list[ConfigIssue] = []
        self.anchors: dict[str, _Anchor] = {}
        self.stack: list[_Frame] = []
        self.values = 0
        self.aliased = 0

    # --- where the next value goes ------------------------------------------------------

    def _here(self) -> tuple[Loc, bool]:
        """The field path of the value about to start, and whether it is kept."""
        if not self.stack:
            return (), True
        top = self.stack[-1]
        if isinstance(top.container, list):
            return (*top.loc, len(top.container)), top.live
        assert top.key is not None
        return (*top.loc, top.key), top.live and top.expect == "value"

    def _count(self, line: int, loc: Loc, values: int, aliased: bool) -> None:
        self.values += values
        if aliased:
            self.aliased += values
            if self.aliased > MAX_ALIAS_VALUES:
                raise _Stop(
                    line,
                    loc,
                    f"aliases expand too far: more than {MAX_ALIAS_VALUES:,} values come from "
                    "aliases and merge keys (an alias bomb?)",
                )
        if self.values > MAX_VALUES:
            raise _Stop(line, loc, f"more than {MAX_VALUES:,} values: this is not an inventory")

    def _finish(self, value: Any, line: int) -> Any:
        """Put a finished value where it belongs; returns it if it is the whole document."""
        if not self.stack:
            return value
        top = self.stack[-1]
        if isinstance(top.container, list):
            top.container.append(value)
            return None
        if top.expect == "value":
            assert top.key is not None
            top.container[top.key] = value
        elif top.expect == "merge":
            top.merges.append((value, top.key_line))
        top.expect, top.key = "key", None
        return None

    # --- events -------------------------------------------------------------------------

    def _key(self, top: _Frame, key: Any, raw: str | None, line: int) -> None:
        if not isinstance(key, str):
            shown = quoted(raw) if raw is not None else quoted(key)
            self.issues.append(
                config_issue(
                    line,
                    _fmt(top.loc),
                    f"key {shown} is read as {_kind(key)}; keys are text: put it in quotes",
                    self.file,
                )
            )
            top.expect, top.key = "skip", shown
            return
        top.key, top.key_line = key, line
        if key in top.container:
            if top.live:
                first = self.lines.get((*top.loc, key), line)
                self.issues.append(
                    config_issue(
                        line,
                        _fmt((*top.loc, key)),
                        f"duplicate key (first defined on line {first})",
                        self.file,
                    )
                )
            top.expect = "skip"
            return
        top.expect = "value"
        if top.live:
            self.lines[(*top.loc, key)] = line

    def scalar(self, event: yaml.ScalarEvent) -> Any:
        line = _line(event)
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.loader.resolve(  # type: ignore[no-untyped-call]
                yaml.ScalarNode, event.value, event.implicit
            )
        top = self.stack[-1] if self.stack else None
        if top is not None and isinstance(top.container, dict) and top.expect == "key":
            if tag == _T + "merge":
                top.key, top.key_line, top.expect = "<<", line, "merge"
                return None
            self._key(top, self._construct(tag, event, line, top.loc), event.value, line)
            return None
        if tag == _T + "merge":  # '<<' is a merge key only in a key's place
            tag = _T + "str"
        loc, live = self._here()
        self._count(line, loc, 1, aliased=False)
        value = self._construct(tag, event, line, loc)
        if event.anchor is not None:
            self.anchors[event.anchor] = _Anchor(value, 1, True)
        if live:
            self.lines.setdefault(loc, line)
        return self._finish(value, line)

    def _construct(self, tag: str, event: yaml.ScalarEvent, line: int, loc: Loc) -> Any:
        build = _SCALARS.get(tag)
        if build is None:
            raise _Stop(line, loc, f"tag {quoted(tag)} is not used in an inventory: remove it")
        node = yaml.ScalarNode(tag, event.value, style=event.style)
        try:
            return build(self.loader, node)
        except Exception:  # a scalar the tag's own parser refuses (e.g. `!!int x`)
            name = tag.removeprefix(_T)
            raise _Stop(line, loc, f"{quoted(event.value)} is not a valid {name}") from None

    def alias(self, event: yaml.AliasEvent) -> Any:
        line = _line(event)
        top = self.stack[-1] if self.stack else None
        key = top if top is not None and isinstance(top.container, dict) else None
        if key is not None and key.expect != "key":
            key = None
        loc, live = (key.loc, False) if key is not None else self._here()
        anchor = self.anchors.get(event.anchor or "")
        if anchor is None:
            raise _Stop(
                line, loc, f"alias *{printable(event.anchor or '', 40)} is not defined above it"
            )
        if not anchor.done:
            raise _Stop(line, loc, "an alias refers to a value that contains it")
        if key is not None:
            self._key(key, anchor.value, f"*{event.anchor}", line)
            return None
        self._count(line, loc, anchor.values, aliased=True)
        if live:
            self.lines.setdefault(loc, line)
        return self._finish(anchor.value, line)

    def start(self, event: yaml.CollectionStartEvent, container: Any) -> None:
        line = _line(event)
        top = self.stack[-1] if self.stack else None
        what = "mapping" if isinstance(container, dict) else "list"
        if top is not None and isinstance(top.container, dict) and top.expect == "key":
            raise _Stop(line, top.loc, f"a key must be text, not a {what}")
        loc, live = self._here()
        if event.tag not in _COLLECTIONS:
            raise _Stop(
                line, loc, f"tag {quoted(event.tag)} is not used in an inventory: remove it"
            )
        if len(self.stack) >= MAX_NESTING:
            raise _Stop(line, loc, f"values nested more than {MAX_NESTING} levels deep")
        self._count(line, loc, 1, aliased=False)
        anchor = None
        if event.anchor is not None:
            anchor = self.anchors[event.anchor] = _Anchor()
        if live:
            self.lines.setdefault(loc, line)
        self.stack.append(_Frame(loc, line, container, live, anchor, self.values - 1))

    def end(self, event: yaml.CollectionEndEvent) -> Any:
        frame = self.stack.pop()
        if isinstance(frame.container, dict) and frame.merges:
            self._merge(frame)
        if frame.anchor is not None:
            frame.anchor.value = frame.container
            frame.anchor.values = self.values - frame.values_before
            frame.anchor.done = True
        return self._finish(frame.container, frame.line)

    def _merge(self, frame: _Frame) -> None:
        """``<<: *base`` (or a list of them): keys not written here come from there, the
        first source first."""
        own = frame.container
        for value, line in frame.merges:
            sources = value if isinstance(value, list) else [value]
            for source in sources:
                if not isinstance(source, dict):
                    raise _Stop(
                        line,
                        frame.loc,
                        "'<<' (merge) takes a mapping or a list of mappings, e.g. <<: *defaults",
                    )
                # the source itself was counted in full where it was written (or aliased,
                # as the value of '<<'), so the mapping's own count covers what it shares
                added = [k for k in source if k not in own]
                self._count(line, frame.loc, len(added), aliased=True)
                for key in added:
                    own[key] = source[key]
                    if frame.live:
                        self.lines.setdefault((*frame.loc, key), line)


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _decode(raw: bytes, file: str) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError([config_issue(1, "", "the file is UTF-16: save it as UTF-8", file)])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [
                config_issue(
                    line,
                    "",
                    f"byte 0x{raw[exc.start]:02x} is not valid UTF-8; save the file as UTF-8",
                    file,
                )
            ]
        ) from None


def _check_characters(text: str, file: str) -> None:
    bad = _NOT_YAML.search(text)
    if bad is None:
        return
    line = text.count("\n", 0, bad.start()) + 1
    column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
    char = bad.group()
    hint = " (is this a binary or UTF-16 file?)" if char == "\x00" else ""
    raise ConfigError(
        [
            config_issue(
                line,
                "",
                f"character {quoted(char)} (U+{ord(char):04X}, column {column}) is not allowed "
                f"in a YAML file{hint}: remove it",
                file,
            )
        ]
    )


def parse_yaml(text: bytes | str, file: str) -> Source:
    """Parse YAML text into a :class:`Source`; raise :class:`ConfigError` for any problem.

    Handles non-UTF-8 bytes, characters YAML forbids, empty documents, syntax
    errors, duplicate keys, several documents, and the limits of the module
    docstring, each reported as one line with its line number.
    """
    if isinstance(text, bytes):
        text = _decode(text, file)
    if text.startswith("\ufeff"):
        text = text[1:]
    _check_characters(text, file)
    loader = _ConfigLoader(text)
    builder = _Builder(loader, file)
    root: Any = None
    documents = 0
    try:
        while True:
            event = loader.get_event()  # type: ignore[no-untyped-call]
            if isinstance(event, yaml.ScalarEvent):
                done = builder.scalar(event)
            elif isinstance(event, yaml.AliasEvent):
                done = builder.alias(event)
            elif isinstance(event, yaml.MappingStartEvent):
                builder.start(event, {})
                continue
            elif isinstance(event, yaml.SequenceStartEvent):
                builder.start(event, [])
                continue
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                done = builder.end(event)
            elif isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise _Stop(
                        _line(event),
                        (),
                        "a second YAML document ('---'): an inventory is one document",
                    )
                continue
            elif isinstance(event, yaml.StreamEndEvent):
                break
            else:  # stream start, document end
                continue
            if not builder.stack:
                root = done
    except _Stop as stop:
        raise ConfigError(
            [*builder.issues, config_issue(stop.line, _fmt(stop.loc), stop.message, file)]
        ) from None
    except yaml.MarkedYAMLError as exc:
        # the context (e.g. where an unclosed quote opened) is where the fix goes
        problem = exc.problem or "syntax error"
        mark = exc.problem_mark
        if exc.context and exc.context_mark is not None:
            at = f" (at line {mark.line + 1})" if mark is not None else ""
            problem = f"{exc.context}: {problem}{at}"
            mark = exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError([config_issue(line, "", f"YAML syntax error: {problem}", file)]) from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError([config_issue(1, "", f"YAML error: {first}", file)]) from None
    finally:
        loader.dispose()
    if documents == 0:
        raise ConfigError([config_issue(1, "", "the file is empty; expected a YAML mapping", file)])
    if builder.issues:
        raise ConfigError(builder.issues)
    return Source(file=file, data=root, lines=builder.lines)


def reads_as_text(text: str) -> bool:
    """Whether ``text`` written as a plain (unquoted) scalar reads back as that text under
    this module's typing rules; a writer must quote it when not."""
    loader = _ConfigLoader("")
    try:
        tag = loader.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
        return bool(tag == _T + "str")
    finally:
        loader.dispose()


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} bytes"


def read_config_bytes(path: str | Path, what: str = "YAML") -> bytes:
    """The bytes of a config file: a regular file of at most :data:`MAX_CONFIG_BYTES`.

    Anything else is refused with one line before it is read: a FIFO without a
    writer would block for ever, ``/dev/zero`` never ends, and a directory is not
    a file. An empty path is a :class:`UsageError` ("no config file given").
    """
    name = printable(str(path))
    if str(path) == "":
        raise UsageError(f"no config file given: give the path of a {what} file")

    def refuse(message: str) -> ConfigError:
        return ConfigError([config_issue(0, "", message, name)])

    def kind(mode: int) -> str:
        if stat.S_ISDIR(mode):
            return f"is a directory, not a {what} file"
        if stat.S_ISFIFO(mode):
            return "is a FIFO (named pipe), not a regular file"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            return "is a device, not a regular file"
        if stat.S_ISSOCK(mode):
            return "is a socket, not a regular file"
        return "is not a regular file"

    try:
        # stat before open: opening a device or a FIFO can block or have side effects
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise refuse(f"cannot read file: {kind(info.st_mode)}")
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | os.O_CLOEXEC
        fd = os.open(path, flags)
    except OSError as exc:
        raise refuse(f"cannot read file: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)  # what was opened, in case the path changed since the stat
        if not stat.S_ISREG(info.st_mode):
            raise refuse(f"cannot read file: {kind(info.st_mode)}")
        if info.st_size > MAX_CONFIG_BYTES:
            raise refuse(
                f"file is {_size(info.st_size)}; a config file may be at most "
                f"{_size(MAX_CONFIG_BYTES)}"
            )
        chunks: list[bytes] = []
        left = MAX_CONFIG_BYTES + 1  # one byte more tells a file that grew past the limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise refuse(f"cannot read file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    if len(raw) > MAX_CONFIG_BYTES:
        raise refuse(f"file is over {_size(MAX_CONFIG_BYTES)}, the most a config file may be")
    return raw


def load_yaml(path: str | Path) -> Source:
    """Read (see :func:`read_config_bytes`) and parse (see :func:`parse_yaml`) a YAML file."""
    return parse_yaml(read_config_bytes(path), printable(str(path)))
