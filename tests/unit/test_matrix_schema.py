"""The matrix file's JSON Schema: written by the CLI, kept in the repository,
named by every example matrix, and as strict as the loader on the keys."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

from orchestrator.config import overrides
from orchestrator.config import schema as models
from orchestrator.config.fields import Model

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "schema" / "platforms.schema.json"
MARK = re.compile(r"^# yaml-language-server: \$schema=(\S+)\n")


def matrix_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "*.yaml", "*.yml"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [ROOT / f for f in listed if "\ndistros:" in (ROOT / f).read_text()]


def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))


def test_the_committed_schema_is_what_the_command_prints() -> None:
    printed = subprocess.run(
        ["orchestrate", "matrix", "schema"], capture_output=True, text=True, check=True
    ).stdout
    assert printed == SCHEMA_FILE.read_text(), "run: orchestrate matrix schema > " + str(
        SCHEMA_FILE.relative_to(ROOT)
    )


def test_there_are_example_matrices_to_check() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in matrix_files()}
    assert {"platforms.yaml", "examples/local.yaml", "examples/openstack.yaml"} <= names


@pytest.mark.parametrize("path", matrix_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_matrix_names_the_schema_and_validates(path: Path) -> None:
    text = path.read_text()
    mark = MARK.match(text)
    assert mark, f"{path} does not start with the yaml-language-server $schema comment"
    assert (path.parent / mark.group(1)).resolve() == SCHEMA_FILE
    errors = [e.message for e in validator().iter_errors(yaml.safe_load(text))]
    assert errors == []


def _broken(data: dict[str, Any], how: str) -> dict[str, Any]:
    data = copy.deepcopy(data)
    if how == "unknown-key":
        data["enignes"] = data.pop("engines", [])
    elif how == "bad-arch":
        data["distros"][0]["arches"] = ["sparc"]
    elif how == "python-as-number":
        data["distros"][0]["python"] = [3.1]
    elif how == "no-distros":
        del data["distros"]
    return data


@pytest.mark.parametrize("how", ["unknown-key", "bad-arch", "python-as-number", "no-distros"])
def test_a_broken_copy_fails(how: str) -> None:
    data = yaml.safe_load((ROOT / "examples" / "local.yaml").read_text())
    assert list(validator().iter_errors(data)) == []
    assert list(validator().iter_errors(_broken(data, how))) != []


def test_an_arch_alias_is_valid_as_the_loader_takes_it() -> None:
    data = yaml.safe_load((ROOT / "examples" / "local.yaml").read_text())
    data["distros"][0]["arches"] = ["x86_64", "aarch64"]
    assert list(validator().iter_errors(data)) == []


def _models() -> list[type[BaseModel]]:
    found = {
        m
        for module in (models, overrides)
        for m in vars(module).values()
        if isinstance(m, type) and issubclass(m, Model) and m is not Model
    }
    return sorted(found, key=lambda m: m.__name__)


@pytest.mark.parametrize("model", _models(), ids=lambda m: m.__name__)
def test_every_key_has_a_description(model: type[BaseModel]) -> None:
    """The reference pages and editors' hovers show it."""
    schema = model.model_json_schema(mode="validation")
    for name, field in schema["properties"].items():
        assert field.get("description"), f"{model.__name__}.{name} has no docstring"
