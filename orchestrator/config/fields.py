"""The matrix file's building blocks: the strict base model and the grammars of
the strings that end up in Dockerfiles, shell lines and URLs."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

NAME_RE = r"^[a-z0-9][a-z0-9._-]*$"


class Model(BaseModel):
    # Lax mode so YAML lists become tuples and strings become paths; the
    # fields where YAML's own typing matters use Strict* types instead.
    # Each field's docstring is its description in the JSON Schema, which the
    # reference pages and editors show.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


Name = Annotated[str, Field(pattern=NAME_RE, max_length=63)]
# Strings that end up in Dockerfiles and shell lines are checked against their own
# grammar, so that no newline or shell metacharacter can add an instruction.
# An image reference (distribution/reference's grammar, simplified): host[:port]/path[:tag][@digest]
IMAGE_REF_RE = (
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
PACKAGE_RE = {  # Debian policy 5.6.1; RPM names as Fedora's guidelines allow
    "deb": r"^[a-z0-9][a-z0-9+.-]+$",
    "rpm": r"^[A-Za-z0-9_][A-Za-z0-9._+-]*$",
}
PROJECT_RE = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"  # a normalized project name (PEP 503)
URL_RE = r"^(https?|socks5h?)://[^\s\"'\\`$;|&<>(){}]+$"
NO_PROXY_RE = r"^[A-Za-z0-9.,:*_/\[\]-]+$"


def grammar(pattern: str, what: str, max_length: int) -> Any:
    def check(value: str) -> str:
        if len(value) > max_length or not re.fullmatch(pattern, value):
            shown = value if len(value) <= 60 else value[:60] + "..."
            raise ValueError(f"{shown!r} is not {what}")
        return value

    return AfterValidator(check)


ImageRef = Annotated[
    str,
    grammar(IMAGE_REF_RE, "an image reference (e.g. debian:bookworm, host:5000/repo:tag)", 255),
]
ProjectName = Annotated[
    str,
    grammar(PROJECT_RE, "a normalized project name (lower case, '-' between parts)", 200),
]
Url = Annotated[
    str,
    grammar(
        URL_RE, "a URL (http, https or socks5) without spaces, quotes or shell characters", 2048
    ),
]
NoProxy = Annotated[
    str, grammar(NO_PROXY_RE, "a comma-separated list of hosts, domains or CIDRs", 4096)
]
Host = Annotated[str, grammar(r"^[A-Za-z0-9.-]+(:[0-9]+)?$", "a host name", 255)]


def check_packages(family: str, names: tuple[str, ...]) -> tuple[str, ...]:
    for name in names:
        if not re.fullmatch(PACKAGE_RE[family], name) or len(name) > 128:
            raise ValueError(f"{name!r} is not a valid {family} package name")
    return names


PythonVersion = Annotated[str, Field(pattern=r"^3\.\d{1,2}$")]
GlibcVersion = Annotated[str, Field(pattern=r"^2\.\d{1,2}$")]


def parses(parse: Callable[[str], object], error: type[Exception], text: str, what: str) -> None:
    """`text` parses with `parse`, else a ValueError that says it is not `what`."""
    try:
        parse(text)
    except error:
        raise ValueError(f"{text!r} is not {what}") from None


class DuplicateError(ValueError):
    """Carries the list and index so the loader can point at the line."""

    def __init__(self, field: str, index: int, what: str, value: str) -> None:
        super().__init__(f"duplicate {what} {value!r}")
        self.field = field
        self.index = index


def no_duplicates(names: list[str], field: str, what: str) -> None:
    """Each name once, else a DuplicateError at the second."""
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise DuplicateError(field, i, what, name)
        seen.add(name)
