"""The loader's words: pydantic's validation errors as file:line messages, with the
key's dotted path, plain English for the value's problem and a did-you-mean for
an unknown key. Every value's and key's line comes from PyYAML's marks."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from orchestrator.config.fields import DuplicateError
from orchestrator.config.schema import Matrix
from orchestrator.core.errors import ConfigError
from orchestrator.model import ARCH_ALIASES, Arch, Family

Loc = tuple[str | int, ...]

# Extra words for a missing key, where the bare name is not enough.
MISSING_HINTS = {
    "base": "an image reference such as debian:bookworm, or "
    "{bootstrap: debootstrap, suite: bookworm}",
    "registry": "registry: {url: 127.0.0.1:5000, repository: orchestrate/builder}",
    "distros": "a list of {name, release, family, base, python, glibc, arches}",
}


@dataclass
class Marks:
    """Line numbers (1-based) of every value, and of every key, by path. Mutable: the
    loader fills it as it walks the YAML nodes (counting them against the alias
    limit), then only reads it."""

    values: dict[Loc, int] = field(default_factory=dict)
    keys: dict[Loc, int] = field(default_factory=dict)
    nodes: int = 0  # built so far: aliases count each time they are expanded


def convert(exc: ValidationError, data: Any, marks: Marks, name: str) -> ConfigError:
    errors = _root_causes(exc.errors())
    problems = [p for p in (_problem(e, data, marks) for e in errors) if p is not None]
    problems = sorted(dict.fromkeys(problems), key=lambda p: p[0] or 0)
    problems = problems or [(None, "", str(exc))]
    line, key, message = problems[0]
    if len(problems) > 1:
        message += "".join(
            f"\n  also {name}:{ln}: {k}: {m}" if ln else f"\n  also {k}: {m}"
            for ln, k, m in problems[1:]
        )
    return ConfigError(message, path=name, line=line, key=key or None)


def _root_causes(errors: list[Any]) -> list[Any]:
    """Drop "too short" on a list whose own items already failed: it is derived."""
    locs = [tuple(e["loc"]) for e in errors]
    return [
        e
        for e in errors
        if e["type"] != "too_short"
        or not any(len(o) > len(e["loc"]) and o[: len(e["loc"])] == tuple(e["loc"]) for o in locs)
    ]


def _problem(error: Any, data: Any, marks: Marks) -> tuple[int | None, str, str] | None:
    raw_loc: Loc = tuple(error["loc"])
    loc, dropped = _strip_union_tags(raw_loc, data)
    if dropped:
        return None
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, DuplicateError):
        loc = (*loc, ctx_error.field, ctx_error.index)
        return line_of(loc, marks), dotted(loc), str(ctx_error)
    kind = error["type"]
    if kind == "extra_forbidden":
        return marks.keys.get(loc), dotted(loc), _unknown_key(loc)
    if kind == "missing":
        hint = MISSING_HINTS.get(str(loc[-1]))
        text = f"missing required key {loc[-1]!r}" + (f" ({hint})" if hint else "")
        return line_of(loc[:-1], marks), dotted(loc), text
    return line_of(loc, marks), dotted(loc), _value_message(loc, error)


def _strip_union_tags(loc: Loc, data: Any) -> tuple[Loc, bool]:
    """Remove pydantic's union-member tags; drop errors of the wrong member.

    For `base: str | Bootstrap`, pydantic reports both members' errors; the
    one that matches what the user wrote (a string or a mapping) is the one
    worth showing.
    """
    out: list[str | int] = []
    node = data
    for part in loc:
        found, child = _child(node, part)
        if part == "[key]":  # pydantic's mark of an error in the key itself
            continue
        if found:
            out.append(part)
            node = child
        elif isinstance(part, str) and part in {"str", "int", "bool"} | _model_names():
            if (part == "str") == isinstance(node, dict):
                return tuple(out), True
        else:
            out.append(part)
            node = None
    return tuple(out), False


def _child(node: Any, part: str | int) -> tuple[bool, Any]:
    if isinstance(node, dict) and part in node:
        return True, node[part]
    if isinstance(node, list) and isinstance(part, int) and part < len(node):
        return True, node[part]
    return False, None


def _model_names() -> set[str]:
    return {"Bootstrap"}


def _value_message(loc: Loc, error: Any) -> str:
    field_name = next((p for p in reversed(loc) if isinstance(p, str)), "")
    value = error.get("input")
    if field_name in {"arches", "arch"} and error["type"] == "enum":
        aliases = ", ".join(f"{k} for {v}" for k, v in ARCH_ALIASES.items())
        known = ", ".join(a.value for a in Arch)
        return f"unknown arch {value!r} (expected one of {known}; aliases: {aliases})"
    if field_name in {"family", "packages"} and error["type"] == "enum":
        known = ", ".join(f.value for f in Family)
        return f"unknown package family {value!r} (expected one of {known})"
    if field_name == "python" and isinstance(value, float):
        return f"python version {value!r} must be a quoted string, e.g. '3.11'"
    shown = repr(value)
    msg = _plain_words(error)
    return f"{msg} (got {shown[:60] + '...' if len(shown) > 60 else shown})"


def _plain_words(error: Any) -> str:
    """Our words for pydantic's error types: none of its own wording reaches users."""
    kind, ctx = str(error["type"]), error.get("ctx") or {}
    words = {
        "too_short": f"needs at least {ctx.get('min_length', 1)} item(s)",
        "too_long": f"takes at most {ctx.get('max_length')} item(s)",
        "string_too_short": "must not be empty",
        "string_too_long": f"is longer than {ctx.get('max_length')} characters",
        "string_pattern_mismatch": "is not of the expected form",
        "string_type": "must be a text value",
        "int_type": "must be a whole number",
        "int_parsing": "must be a whole number",
        "bool_type": "must be true or false",
        "bool_parsing": "must be true or false",
        "greater_than_equal": f"must be at least {ctx.get('ge')}",
        "less_than_equal": f"must be at most {ctx.get('le')}",
        "literal_error": f"must be {ctx.get('expected')}",
        "enum": f"must be one of {ctx.get('expected')}",
        "dict_type": "must be a mapping of keys",
        "model_type": "must be a mapping of keys",
        "model_attributes_type": "must be a mapping of keys",
        "tuple_type": "must be a list",
        "list_type": "must be a list",
        "path_type": "must be a file path",
    }
    if kind in words:
        return words[kind]
    return str(error["msg"]).removeprefix("Value error, ")


def _unknown_key(loc: Loc) -> str:
    known = _known_keys(loc[:-1])
    text = f"unknown key {loc[-1]!r}"
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f"{text}; did you mean {close[0]!r}?"
    if known:
        return f"{text} (known keys: {', '.join(sorted(known))})"
    return text


def _known_keys(loc: Loc) -> list[str]:
    """The field names of the model that sits at `loc` in the schema."""
    model: Any = Matrix
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        info = model.model_fields.get(str(part))
        if info is None:
            return []
        model = _inner_model(info.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [n for n in model.model_fields if n != "source"]
    return []


def _inner_model(annotation: Any) -> Any:
    """tuple[X, ...], X | None and X | Y down to the BaseModel inside, if any."""
    for arg in _flatten(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return annotation


def _flatten(annotation: Any) -> Iterator[Any]:
    origin = typing.get_origin(annotation)
    if origin in (tuple, list, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            yield from _flatten(arg)
    else:
        yield annotation


def line_of(loc: Loc, marks: Marks) -> int | None:
    while loc:
        if loc in marks.values:
            return marks.values[loc]
        loc = loc[:-1]
    return marks.values.get(())


def dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
