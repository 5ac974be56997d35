"""Credentials never reach a line of output: URLs lose their passwords and tokens.

`redact` works on any text (a message, a log line, a whole JSON report), the way
pip's `redact_auth_from_url` does for one URL: `https://user:secret@host` becomes
`https://user:****@host`, and a bare token (`https://token@host`) becomes `****`.
The CLI routes everything it prints through `RedactingStream`; reports and logs
are redacted where they are written.
"""

from __future__ import annotations

import re
from typing import TextIO

_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s/@:'\"<>]*)(?::(?P<secret>[^\s/@'\"<>]*))?@"
)
MASK = "****"


def _mask(match: re.Match[str]) -> str:
    scheme, user, secret = match.group("scheme"), match.group("user"), match.group("secret")
    if secret is None:  # a lone token in the user part
        return f"{scheme}{MASK}@"
    return f"{scheme}{user}:{MASK}@"


def strip_credentials(url: str) -> str:
    """The URL with no user part at all: for what is stored, such as an image's pip.conf."""
    return _USERINFO.sub(lambda m: m.group("scheme"), url)


def redact(text: str) -> str:
    return _USERINFO.sub(_mask, text) if "@" in text else text


def redact_bytes(data: bytes) -> bytes:
    return redact(data.decode("utf-8", errors="surrogateescape")).encode(
        "utf-8", errors="surrogateescape"
    )


class RedactingStream:
    """A text stream that redacts what is written to it, then passes it on."""

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        self._inner.write(redact(text))
        return len(text)

    def __getattr__(self, name: str) -> object:  # flush, isatty, fileno, encoding, ...
        return getattr(self._inner, name)
