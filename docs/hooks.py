"""MkDocs hook: the reference pages are generated from the code at build time.

A page holds a marker such as `<!-- generated: matrix -->`; the hook puts the text
made from the code in its place, so the pages cannot drift from what the tool
accepts: the matrix keys from the models' JSON Schema, the exit codes and failure
categories from their enums, the report's fields from its schema, the benchmark
table from `benchmarks/results.json`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import TABLE_HEAD, Row, table_cells
from orchestrator.config.schema import matrix_json_schema
from orchestrator.core.errors import EXIT_CODES
from orchestrator.model import CATEGORY_TEXT, Category

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!-- generated: ([a-z-]+) -->")


def on_page_markdown(markdown: str, **_: Any) -> str:
    return MARKER.sub(lambda m: GENERATORS[m.group(1)](), markdown)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(head: tuple[str, ...], rows: list[tuple[object, ...]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return str(prop["$ref"]).rsplit("/", 1)[-1]
    if "const" in prop:
        return json.dumps(prop["const"])
    if "enum" in prop:
        return ", ".join(json.dumps(v) for v in prop["enum"])
    if "anyOf" in prop:
        return " or ".join(_type(p) for p in prop["anyOf"])
    if prop.get("type") == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if prop.get("type") == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"mapping to {_type(prop['additionalProperties'])}"
    return str(prop.get("type", "any"))


def _default(prop: dict[str, Any], *, required: bool) -> str:
    if required:
        return "required"
    return f"`{json.dumps(prop['default'])}`" if "default" in prop else "-"


def _object_rows(
    schema: dict[str, Any], defs: dict[str, Any], prefix: str
) -> Iterator[tuple[str, str, str, str]]:
    """One row per key, depth first: `distros[].base.suite`."""
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        default = _default(prop, required=name in required)
        yield (f"`{path}`", _type(prop), default, prop["description"])
        for inner, suffix in _nested(prop, defs):
            yield from _object_rows(inner, defs, f"{path}{suffix}.")


def _nested(prop: dict[str, Any], defs: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    """The objects a key holds: itself, its list's items, or an alternative of either."""
    for option in prop.get("anyOf", [prop]):
        is_list = option.get("type") == "array"
        target = option.get("items", {}) if is_list else option
        ref = target.get("$ref", "").rsplit("/", 1)[-1]
        if ref in defs and "properties" in defs[ref]:
            yield defs[ref], "[]" if is_list else ""


def matrix_keys() -> str:
    schema = matrix_json_schema()
    rows: list[tuple[object, ...]] = list(_object_rows(schema, schema["$defs"], ""))
    return _table(("key", "type", "default", "what it sets"), rows)


def exit_codes() -> str:
    return _table(("code", "meaning"), list(EXIT_CODES.items()))


def categories() -> str:
    rows: list[tuple[object, ...]] = [
        (f"`{c.value}`", "yes" if c.retryable else "no", CATEGORY_TEXT[c]) for c in Category
    ]
    return _table(("category", "retried", "what happened"), rows)


def report_fields() -> str:
    schema = json.loads((ROOT / "orchestrator" / "report" / "schema.json").read_text())
    rows: list[tuple[object, ...]] = [
        (f"`{name}`", _type(prop), prop.get("description", ""))
        for name, prop in schema["properties"].items()
    ]
    return _table(("field", "type", "what it holds"), rows)


def benchmarks() -> str:
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    rows = [Row(**row) for row in results["rows"]]
    head = f"Run of {results['date']} on {results['machine']} ({results['seconds']:.0f} s).\n\n"
    notes = "".join(f"- {r.name}: {r.note}\n" for r in rows if r.note)
    table = _table(TABLE_HEAD, [table_cells(r) for r in rows])
    return f"{head}{table}\n{notes}"


GENERATORS: dict[str, Callable[[], str]] = {
    "matrix": matrix_keys,
    "exit-codes": exit_codes,
    "categories": categories,
    "report": report_fields,
    "benchmarks": benchmarks,
}
