"""Credentials never reach a line of output: URLs lose their passwords and tokens.

`redact` works on any text (a message, a log line, a whole JSON report), the way
pip's `redact_auth_from_url` does for one URL: `https://user:secret@host` becomes
`https://user:****@host`, and a bare token (`https://token@host`) becomes `****`.
The CLI routes everything it prints through `RedactingStream`; reports and logs
are redacted where they are written.
"""

from __future__ import annotations

import re
from typing import BinaryIO, TextIO

# The password runs to the *last* @ of the authority (`user:Sec@ret@host`): requests
# sends all of it, so all of it is masked.
_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s/@:'\"<>]*)(?::(?P<secret>[^\s/'\"<>]*))?@"
)
# `user:password@host[:port]` without a scheme, as a registry URL is written; not an
# image's `name:tag@sha256:...` digest.
_BARE_USERINFO = re.compile(
    r"(?<![\w.+/:@-])(?P<user>[A-Za-z0-9._~%+-]+):(?P<secret>[^\s/'\"<>]+)@(?!sha\d+:)(?=[A-Za-z0-9\[])"
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
    if "@" not in text:
        return text
    text = _USERINFO.sub(_mask, text)
    return _BARE_USERINFO.sub(lambda m: f"{m.group('user')}:{MASK}@", text)


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


class RedactingLog:
    """A binary log that redacts whole lines: a credential split across two chunks of a
    stream is joined before it is looked at. A line longer than LONG_LINE is written
    in parts (a stream with no newline still reaches the file)."""

    LONG_LINE = 1 << 16

    def __init__(self, inner: BinaryIO, secrets: tuple[str, ...] = ()) -> None:
        self._inner = inner
        self._pending = b""
        self._secrets = tuple(s.encode() for s in secrets if s)

    def write(self, chunk: bytes) -> int:
        data = self._pending + chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) > self.LONG_LINE:
            cut = len(data)
        self._pending = data[cut:]
        if cut:
            self._inner.write(self._clean(data[:cut]))
        return len(chunk)

    def flush(self) -> None:
        self._inner.flush()

    def close(self) -> None:
        """Write what is left of the last line (the stream ended without a newline)."""
        if self._pending:
            self._inner.write(self._clean(self._pending))
            self._pending = b""
        self._inner.flush()

    def _clean(self, data: bytes) -> bytes:
        for secret in self._secrets:
            data = data.replace(secret, MASK.encode())
        return redact_bytes(data) if b"@" in data else data
