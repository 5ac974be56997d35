"""Values read from files that reach a Dockerfile or a shell line: refused or quoted.

A matrix, a report or an index page is somebody else's text. Grammar checks at
the edge keep most of it out; these are the last gate where such a value is
written into something that runs, so that a newline can never start a new
Dockerfile instruction or shell command.
"""

from __future__ import annotations

import re
import shlex

from orchestrator.core.errors import InputError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(value: str, what: str) -> str:
    """`value` unchanged when it has no control character (newline, CR, NUL...)."""
    if _CONTROL.search(value):
        raise InputError(f"{what} {shown(value)} holds a control character; refused")
    return value


def shell_word(value: str, what: str) -> str:
    """`value` as one shell word, refused if it spans lines."""
    return shlex.quote(one_line(value, what))


def comment(value: object) -> str:
    """Text for a comment line of a generated script: control characters shown, not kept."""
    return _CONTROL.sub("?", str(value))


# C0, DEL and C1: a terminal acts on them (ESC, CSI 0x9b), and a newline would let
# somebody else's text start a line a CI system reads as a command (`::error`).
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(value: object) -> str:
    """Text from a bundle, a report or an engine, as one safe line of output: every
    control character shown as `?`, so it can neither move the cursor nor start a
    line of its own."""
    return _UNPRINTABLE.sub("?", str(value))


def clipped(value: str, limit: int = 120) -> str:
    """A value as a message names it, bare: control characters shown as `?`, cut."""
    text = comment(value)
    return text if len(text) <= limit else text[:limit] + "..."


def shown(value: str, limit: int = 60) -> str:
    """A value as a message shows it: repr'd and cut, so a huge or odd value stays short."""
    return repr(value if len(value) <= limit else value[:limit] + "...")
