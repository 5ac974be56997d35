"""Load a matrix file: YAML → frozen `Matrix`, or a `ConfigError` at file:line.

PyYAML's node tree keeps a mark (line, column) for every key and value, so
we compose the nodes once, build plain data from them, validate that with
pydantic, and map each validation error's location back to a node.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from orchestrator.config.bindep import BindepError, parse_bindep
from orchestrator.config.schema import (
    BranchSpec,
    BuilderSpec,
    DuplicateError,
    Matrix,
    OverrideSpec,
)
from orchestrator.core.errors import ConfigError
from orchestrator.core.files import read_bounded
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
class _Marks:
    """Line numbers (1-based) of every value, and of every key, by path."""

    values: dict[Loc, int] = field(default_factory=dict)
    keys: dict[Loc, int] = field(default_factory=dict)
    nodes: int = 0  # built so far: aliases count each time they are expanded


MAX_BYTES = 1 << 20  # a matrix is a few KiB; a bigger file is a mistake or an attack
MAX_NODES = 100_000  # after alias expansion ("billion laughs" stops here, quickly)
MAX_DEPTH = 64


def load_matrix(path: Path) -> Matrix:
    """Read and validate one matrix file; every failure is a ConfigError."""
    text = _read(path)
    data, marks = _compose(text, str(path))
    if not isinstance(data, dict) or not data:
        raise ConfigError(
            "the matrix is empty" if not data else "the matrix must be a mapping of keys",
            path=str(path),
            line=1,
            hint="see the matrix reference in the README, or examples/local.yaml",
        )
    try:
        matrix = Matrix.model_validate(data)
    except ValidationError as exc:
        raise _convert(exc, data, marks, str(path)) from None
    digest = hashlib.sha256(text.encode()).hexdigest()
    located = matrix.model_copy(update={"source": path.resolve(), "digest": digest})
    return _resolve_paths(located, marks, path)


def _read(path: Path) -> str:
    try:
        text = read_bounded(path, MAX_BYTES).decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(
            "file does not exist", path=str(path), hint="pass --matrix with an existing file"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read the file: {exc.strerror or exc}",
            path=str(path),
            hint="a matrix is a regular YAML file of a few KiB",
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read the file: {exc}", path=str(path)) from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise ConfigError("the file contains a NUL byte", path=str(path), line=line)
    return text


def _compose(text: str, name: str) -> tuple[Any, _Marks]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:  # PyYAML's composer recurses once per level of nesting
        raise ConfigError(
            f"the file is nested too deep (a matrix needs fewer than {MAX_DEPTH} levels)",
            path=name,
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(f"YAML syntax error: {exc.problem}", path=name, line=line) from None
    except yaml.YAMLError as exc:  # e.g. a character YAML does not allow
        raise ConfigError(f"YAML error: {str(exc).splitlines()[0]}", path=name) from None
    if node is None:
        return None, _Marks()
    marks = _Marks()
    return _build(node, (), marks, name, seen=()), marks


def _guard(node: yaml.Node, loc: Loc, marks: _Marks, name: str, *, seen: tuple[int, ...]) -> None:
    """Bounds on what aliases can do: no cycles, no explosion, no endless depth."""
    line = node.start_mark.line + 1
    marks.nodes += 1
    if not node.tag.startswith("tag:yaml.org,2002:") or ":python/" in node.tag:
        raise ConfigError(f"YAML value not allowed: tag {node.tag!r}", path=name, line=line)
    if id(node) in seen:
        raise ConfigError("an alias refers to itself (recursive alias)", path=name, line=line)
    if marks.nodes > MAX_NODES or len(loc) > MAX_DEPTH:
        raise ConfigError(
            "the file expands to too much data (aliases repeated too often, or nested "
            "too deep); a matrix needs none of that",
            path=name,
            line=line,
        )


def _key_of(key_node: yaml.Node, loc: Loc, name: str) -> Any:
    line = key_node.start_mark.line + 1
    if not isinstance(key_node, yaml.ScalarNode):
        raise ConfigError("a key must be a plain name, not a list or mapping", path=name, line=line)
    if key_node.tag == "tag:yaml.org,2002:merge":
        raise ConfigError(
            "merge keys (<<) are not supported; write the keys out",
            path=name,
            line=line,
            key=_dotted(loc) or None,
        )
    return _scalar(key_node)


def _build(node: yaml.Node, loc: Loc, marks: _Marks, name: str, *, seen: tuple[int, ...]) -> Any:
    _guard(node, loc, marks, name, seen=seen)
    seen = (*seen, id(node))
    marks.values[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _key_of(key_node, loc, name)
            if key in out:
                raise ConfigError(
                    "key appears twice in one mapping",
                    path=name,
                    line=key_node.start_mark.line + 1,
                    key=_dotted((*loc, str(key))),
                )
            marks.keys[(*loc, str(key))] = key_node.start_mark.line + 1
            out[key] = _build(value_node, (*loc, str(key)), marks, name, seen=seen)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, (*loc, i), marks, name, seen=seen) for i, item in enumerate(node.value)
        ]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    # A throwaway loader gives scalars YAML's own types (int, bool, null ...).
    try:
        return yaml.SafeLoader("").construct_object(node, deep=True)
    except yaml.YAMLError as exc:  # e.g. a !!python tag, which the safe loader refuses
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"YAML value not allowed: {problem}", path="", line=node.start_mark.line + 1
        ) from None


def _convert(exc: ValidationError, data: Any, marks: _Marks, name: str) -> ConfigError:
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


def _problem(error: Any, data: Any, marks: _Marks) -> tuple[int | None, str, str] | None:
    raw_loc: Loc = tuple(error["loc"])
    loc, dropped = _strip_union_tags(raw_loc, data)
    if dropped:
        return None
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, DuplicateError):
        loc = (*loc, ctx_error.field, ctx_error.index)
        return _line(loc, marks), _dotted(loc), str(ctx_error)
    kind = error["type"]
    if kind == "extra_forbidden":
        return marks.keys.get(loc), _dotted(loc), _unknown_key(loc)
    if kind == "missing":
        hint = MISSING_HINTS.get(str(loc[-1]))
        text = f"missing required key {loc[-1]!r}" + (f" ({hint})" if hint else "")
        return _line(loc[:-1], marks), _dotted(loc), text
    return _line(loc, marks), _dotted(loc), _value_message(loc, error)


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


def _line(loc: Loc, marks: _Marks) -> int | None:
    while loc:
        if loc in marks.values:
            return marks.values[loc]
        loc = loc[:-1]
    return marks.values.get(())


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


SYSTEM_FOLDERS = frozenset(
    Path(p)
    for p in (
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/home",
        "/lib",
        "/lib64",
        "/opt",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/srv",
        "/sys",
        "/tmp",
        "/usr",
        "/usr/local",
        "/var",
        "/var/lib",
        "/var/tmp",
    )
)


def _resolve_paths(matrix: Matrix, marks: _Marks, path: Path) -> Matrix:
    """Make file paths absolute, relative to the matrix; check that files exist and
    that the index root is a folder of its own."""
    branches = tuple(
        _resolve_branch(matrix, i, b, marks, path=path) for i, b in enumerate(matrix.branches)
    )
    overrides = tuple(
        _resolve_bindep(matrix, i, o, marks, path=path) for i, o in enumerate(matrix.overrides)
    )
    root, warnings = _index_root(matrix, marks, path)
    return matrix.model_copy(
        update={
            "builder": _resolve_builder(matrix, marks, path),
            "index": matrix.index.model_copy(update={"root": root}),
            "overrides": overrides,
            "branches": branches,
            "warnings": warnings,
        }
    )


def _resolve_builder(matrix: Matrix, marks: _Marks, path: Path) -> BuilderSpec:
    certs = tuple(matrix.resolve(p) for p in matrix.builder.ca_certificates)
    for i, cert in enumerate(certs):
        _exists(cert, "CA certificate", ("builder", "ca_certificates", i), marks, path=path)
    constraints = matrix.builder.build_constraints
    if constraints is not None:
        constraints = matrix.resolve(constraints)
        where: Loc = ("builder", "build_constraints")
        _exists(constraints, "build constraints file", where, marks, path=path)
    return matrix.builder.model_copy(
        update={"ca_certificates": certs, "build_constraints": constraints}
    )


def _index_root(matrix: Matrix, marks: _Marks, path: Path) -> tuple[Path, tuple[str, ...]]:
    """The index root, absolute; refused when it is a system folder, a warning when a
    relative one leaves the matrix's folder."""
    root = matrix.resolve(matrix.index.root)
    loc: Loc = ("index", "root")
    if root in SYSTEM_FOLDERS or root == Path.home():
        raise ConfigError(
            f"index root {str(root)!r} is a system folder; publishing there would "
            "mix the index with the system's files",
            path=str(path),
            line=_line(loc, marks),
            key=_dotted(loc),
            hint="use a folder of its own, e.g. /srv/wheels",
        )
    if matrix.index.root.is_absolute() or path.resolve().parent in (root, *root.parents):
        return root, ()
    return root, (
        f"{path}:{_line(loc, marks)}: index.root {str(matrix.index.root)!r} resolves "
        f"to {root}, outside this file's folder; write an absolute path if that is meant",
    )


def _resolve_branch(
    matrix: Matrix, i: int, branch: BranchSpec, marks: _Marks, *, path: Path
) -> BranchSpec:
    """Local files made absolute and checked; each platform glob must match a platform."""
    update: dict[str, object] = {}
    if not branch.remote:
        constraints = matrix.resolve(Path(branch.constraints))
        _exists(constraints, "constraints file", ("branches", i, "constraints"), marks, path=path)
        update["constraints"] = str(constraints)
    if branch.packages is not None:
        packages = matrix.resolve(branch.packages)
        _exists(packages, "packages file", ("branches", i, "packages"), marks, path=path)
        update["packages"] = packages
    names = [f"{d.name}-{d.release}-{a.value}" for d in matrix.distros for a in d.arches]
    for j, glob in enumerate(branch.platforms):
        if not fnmatch.filter(names, glob):
            loc: Loc = ("branches", i, "platforms", j)
            raise ConfigError(
                f"branch {branch.name!r}: platform glob {glob!r} matches no platform",
                path=str(path),
                line=_line(loc, marks),
                key=_dotted(loc),
                hint="platforms: " + ", ".join(names),
            )
    return branch.model_copy(update=update)


def _resolve_bindep(
    matrix: Matrix, i: int, override: OverrideSpec, marks: _Marks, *, path: Path
) -> OverrideSpec:
    """A bindep.txt path made absolute and checked to exist and parse, at load time."""
    if override.bindep is None:
        return override
    file = matrix.resolve(override.bindep)
    loc: Loc = ("overrides", i, "bindep")
    _exists(file, "bindep file", loc, marks, path=path)
    try:
        parse_bindep(file.read_text(errors="replace"), str(file))
    except BindepError as exc:
        raise ConfigError(
            str(exc), path=str(path), line=_line(loc, marks), key=_dotted(loc)
        ) from None
    return override.model_copy(update={"bindep": file})


def _exists(file: Path, what: str, loc: Loc, marks: _Marks, *, path: Path) -> None:
    if not file.is_file():
        raise ConfigError(
            f"{what} {str(file)!r} does not exist",
            path=str(path),
            line=_line(loc, marks),
            key=_dotted(loc),
        )
