"""Strict validation of parsed YAML against a pydantic model, with file:line errors.

pydantic's own messages are written for programmers (``Extra inputs are not
permitted``); these are rewritten for operators (``unknown key (did you mean
'fail_after'?); expected one of: ...``) and located by the YAML line map.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, TypeVar

import pydantic
from pydantic import BaseModel

from monitor.errors import ConfigError, ConfigIssue
from monitor.inventory.source import Loc, Source
from monitor.text import quoted

__all__ = ["did_you_mean", "keys_of", "validate"]

M = TypeVar("M", bound=BaseModel)


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class that the value at ``loc`` is validated against, if any."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
        elif isinstance(current, type) and issubclass(current, BaseModel):
            info = _field_named(current, part)
            current = info.annotation if info else None
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """Strip Optional[...] and Annotated[...] down to the interesting type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _field_named(model: type[BaseModel], key: str) -> Any:
    """The field that the file's key ``key`` sets (a field's alias is its name in the file)."""
    for name, info in model.model_fields.items():
        if (info.alias or name) == key:
            return info
    return None


def keys_of(model: type[BaseModel]) -> list[str]:
    """The keys a model takes, as written in the file (``from``, not ``from_``)."""
    return [info.alias or name for name, info in model.model_fields.items()]


def did_you_mean(word: str, choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or nothing."""
    if len(word) > 200:  # difflib is quadratic; a key that long is no typo
        return ""
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {quoted(close[0])}?)" if close else ""


def _describe(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return quoted(value)
    if isinstance(value, int | float):
        return quoted(value)
    return f"{quoted(value)} ({type(value).__name__})"


def _message(root: type[BaseModel], err: Any) -> str:
    kind = err["type"]
    loc = tuple(err["loc"])
    value = err.get("input")
    if kind == "extra_forbidden":
        model = _model_at(root, loc[:-1])
        if model is None:
            return "unknown key"
        keys = keys_of(model)
        return f"unknown key{did_you_mean(str(loc[-1]), keys)}; expected one of: " + ", ".join(keys)
    if kind == "missing":
        return "required field is missing"
    if kind == "value_error":
        return str(err["ctx"]["error"])
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {_describe(value)}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {_describe(value)}"
    if kind in ("string_type",):
        hint = "; put it in quotes" if isinstance(value, int | float | bool) else ""
        return f"expected text, got {_describe(value)}{hint}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {_describe(value)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of keys to values, got {_describe(value)}"
    if kind == "list_type":
        return f"expected a list, got {_describe(value)}"
    if kind == "string_pattern_mismatch" and loc and loc[0] == "profiles":
        return f"{quoted(value)} is not a valid profile name: use letters, digits, '-', '_' and '.'"
    if kind == "string_pattern_mismatch" and loc and loc[0] == "alerts":
        field = loc[-1] if isinstance(loc[-1], str) else "value"
        if field == "name":
            return (
                f"{quoted(value)} is not a valid receiver name: use letters, digits, '-', '_' "
                "and '.' (at most 64, starting with a letter or digit)"
            )
        if field == "secret_env":
            return f"{quoted(value)} is not an environment variable name"
        return f"{quoted(value)} is not valid here"
    if kind == "string_pattern_mismatch":
        return f"{quoted(value)} is not valid: use lowercase letters, digits, '-' and '_'"
    if kind == "literal_error":
        expected = str(err.get("ctx", {}).get("expected", "?"))
        return f"{_describe(value)} is not one of: {expected}"
    if kind in ("string_too_long", "too_long"):
        limit = err.get("ctx", {}).get("max_length", "?")
        return f"too long: at most {limit} characters, got {_describe(value)}"
    if kind in ("string_too_short",):
        return "must not be empty"
    if kind == "too_short" and loc == ("points",):
        return "no points: list at least one meeting point"
    bounds = {
        "less_than_equal": "at most",
        "greater_than_equal": "at least",
        "less_than": "less than",
        "greater_than": "greater than",
    }
    if kind in bounds:
        limit = next(iter(err.get("ctx", {}).values()), "?")
        return f"must be {bounds[kind]} {limit}, got {_describe(value)}"
    msg = str(err["msg"])
    return f"{msg[:1].lower()}{msg[1:]}, got {_describe(value)}"


def validate(source: Source, model: type[M], top: str) -> M:
    """Validate ``source.data`` against ``model``; every problem becomes a located issue.

    ``top`` says what the file should hold, for a file that is not a mapping.
    """
    if not isinstance(source.data, dict):
        raise ConfigError([source.issue((), f"expected {top}, got {_describe(source.data)}")])
    # a file's keys are its own: an alias's attribute name ("from_") is no key of it
    try:
        return model.model_validate(source.data, by_alias=True, by_name=False)
    except pydantic.ValidationError as exc:
        issues = []
        for err in exc.errors(include_url=False):
            loc: Loc = tuple(err["loc"])
            # a dict-key error has the key itself as the last element, with "[key]" suffix
            loc = tuple(p for p in loc if not (isinstance(p, str) and p.endswith("[key]")))
            issues.append(source.issue(loc, _message(model, err)))
        raise ConfigError(_dedupe(issues)) from None


def _dedupe(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    seen: set[tuple[int, str]] = set()
    out = []
    for issue in issues:
        if (issue.line, issue.field) not in seen:
            seen.add((issue.line, issue.field))
            out.append(issue)
    return out
