"""Reading answers from servers we do not control: bounded in size and in time.

A per-read timeout does not bound a whole answer: a server that sends one byte
a second never trips it. Every body is read here, in pieces as they arrive,
against a total deadline as well as a size cap.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import requests
import urllib3

from orchestrator.core.errors import IndexUnavailable

PAGE_DEADLINE = 120.0  # seconds for one whole index page or constraints file
FILE_DEADLINE = 900.0  # seconds for one whole wheel or sdist
PIECE = 1 << 16


def deadline_seconds(default: float = PAGE_DEADLINE) -> float:
    """`$ORCHESTRATE_DOWNLOAD_DEADLINE` (seconds, a finite number > 0), else `default`."""
    text = os.environ.get("ORCHESTRATE_DOWNLOAD_DEADLINE")
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        from orchestrator.core.errors import InputError

        raise InputError(
            f"ORCHESTRATE_DOWNLOAD_DEADLINE={text[:40]!r} is not a number of seconds above 0"
        )
    return value


def pieces(
    response: requests.Response, url: str, *, limit: int, deadline: float
) -> Iterator[bytes]:
    """The body as it arrives; IndexUnavailable past `limit` bytes or `deadline` seconds.
    urllib3's read1 returns what has arrived instead of waiting for a full piece."""
    end, size = time.monotonic() + deadline, 0
    raw = response.raw
    try:
        while piece := raw.read1(PIECE, decode_content=True):
            size += len(piece)
            if size > limit:
                raise IndexUnavailable(f"{url}: the answer is over {limit >> 20} MiB; refusing it")
            if time.monotonic() > end:
                raise IndexUnavailable(
                    f"{url}: the answer did not finish within {deadline:g} s "
                    f"({size} bytes so far); giving up"
                )
            yield piece
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        # what requests' own iter_content would raise, so callers catch one family
        raise requests.ConnectionError(f"{url}: {exc}") from None
    finally:
        response.close()


def read_body(response: requests.Response, url: str, *, limit: int, deadline: float) -> bytes:
    """The whole body, bounded; kept on the response too, as `response.content` reads it."""
    body = b"".join(pieces(response, url, limit=limit, deadline=deadline))
    response._content = body
    return body


@contextlib.contextmanager
def thread_pool(workers: int) -> Iterator[ThreadPoolExecutor]:
    """A pool that, when its block fails or is interrupted, does not wait for workers
    stuck in a read: queued work is cancelled, and the command can end at once."""
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
