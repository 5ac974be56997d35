"""The upstream package index: simple API client with a disk cache.

Speaks PEP 691 JSON when the index offers it and PEP 503 HTML otherwise
(content negotiation through `Accept`). Answers are cached on disk, parsed,
per project: within `cache_ttl` no request is made; after it, a conditional
request (ETag / Last-Modified) when the index gave validators. Requests run
in a bounded thread pool; transient failures are retried with backoff; a
project the index does not know is `None`, not an error. When the index
cannot be reached at all, `IndexUnavailable` is raised after the retries.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import requests
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    canonicalize_name,
    canonicalize_version,
    parse_sdist_filename,
)
from packaging.version import InvalidVersion, Version

from orchestrator.config.schema import UpstreamIndex
from orchestrator.core.errors import IndexUnavailable
from orchestrator.core.files import write_atomic
from orchestrator.core.net import deadline_seconds, read_body, thread_pool

ACCEPT = (
    "application/vnd.pypi.simple.v1+json, "
    "application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
)
CACHE_FORMAT = 3  # 3: sdist versions read after the project name (hyphenated versions)
RETRY_STATUS = {429, 500, 502, 503, 504}
MAX_PAGE = 64 << 20  # bytes; PyPI's largest project pages are a few MiB


@dataclass(frozen=True)
class IndexFile:
    filename: str
    url: str
    sha256: str | None
    requires_python: str | None
    yanked: bool


# PEP 503 pages are one <a> per file, and the largest (botocore's) are megabytes:
# html.parser took most of a cold plan's time, so anchors are found by pattern. Each
# anchor is read only up to the next one, so the work stays linear on any page.
_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
_START = re.compile(r"<a(?=[\s>/])", re.I)
_TAG_END = re.compile(r"""(?:[^>"']|"[^"]*"|'[^']*')*>""")
_CLOSE = re.compile(r"</a\s*>", re.I)
_ATTR = re.compile(r"""([^\s"'<>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""")
_TAG = re.compile(r"<[^<>]*>")
# An absolute http(s) URL that urljoin would give back unchanged (no params, query or
# characters its parser strips): most index pages link nothing else, and urljoin
# was most of the parse.
_PLAIN = re.compile(r"https?://[A-Za-z0-9.:@\[\]-]+/[A-Za-z0-9._~!$&'()*+,=:@%/-]*\Z")


def _joined(base: str, url: str) -> str:
    return url if _PLAIN.match(url) else urllib.parse.urljoin(base, url)


def parse_html(text: str, base: str) -> list[IndexFile]:
    """PEP 503: one <a> per file; attributes carry requires-python and yanked."""
    text = _COMMENT.sub("", text)
    starts = list(_START.finditer(text))
    ends = [m.start() for m in starts[1:]] + [len(text)] * bool(starts)
    files = []
    for start, end in zip(starts, ends, strict=True):
        segment = text[start.end() : end]
        tag = _TAG_END.match(segment)
        if tag is not None:
            body = _CLOSE.split(segment[tag.end() :], maxsplit=1)[0]
            files.append(_anchor(segment[: tag.end() - 1], body, base))
    return files


def _anchor(attributes: str, body: str, base: str) -> IndexFile:
    attrs = {
        m[1].lower(): html.unescape(m[2] if m[2] is not None else m[3] or m[4] or "")
        for m in _ATTR.finditer(attributes)
    }
    href = attrs.get("href") or ""
    url, _, fragment = href.partition("#")
    digest = fragment.removeprefix("sha256=") if fragment.startswith("sha256=") else None
    label = html.unescape(_TAG.sub("", body)).strip()
    return IndexFile(
        filename=label or url.rsplit("/", 1)[-1],
        url=_joined(base, url),
        sha256=digest,
        requires_python=attrs.get("data-requires-python") or None,
        yanked="data-yanked" in attrs,
    )


def parse_json(data: Mapping[str, object], base: str) -> list[IndexFile]:
    """PEP 691 files; a field of the wrong type is an unreadable answer (ValueError)."""
    files = data.get("files") if isinstance(data, Mapping) else None
    if not isinstance(files, list):
        raise ValueError("PEP 691 answer without a files list")
    return [_json_file(f, base) for f in files]


def _json_file(entry: object, base: str) -> IndexFile:
    if not isinstance(entry, Mapping):
        raise ValueError(f"a file entry is not an object: {str(entry)[:80]!r}")
    hashes = entry.get("hashes") or {}
    if not isinstance(hashes, Mapping):
        raise ValueError(f"{entry.get('filename')!r}: hashes is not an object")
    requires = entry.get("requires-python")
    sha256 = hashes.get("sha256")
    return IndexFile(
        filename=str(entry["filename"]),
        url=_joined(base, str(entry["url"])),
        sha256=sha256 if isinstance(sha256, str) else None,
        requires_python=requires if isinstance(requires, str) and requires else None,
        yanked=bool(entry.get("yanked")),
    )


SDIST_EXTENSIONS = (".tar.gz", ".zip", ".tar.bz2", ".tgz")


def file_version(filename: str, project: str | None = None) -> str | None:
    """The canonical version in a wheel or sdist filename, or None if it does not parse."""
    try:
        if filename.endswith(".whl"):
            # name-version(-build)?-python-abi-platform: the tags need not be parsed
            # here (a page lists thousands of wheels); they are where wheels are chosen.
            parts = filename[:-4].split("-")
            build_ok = len(parts) == 5 or (len(parts) == 6 and parts[2][:1].isdigit())
            return _canonical(parts[1]) if build_ok else None
        spelled = sdist_version(filename, project)
        return _canonical(spelled) if spelled else None
    except (InvalidSdistFilename, InvalidVersion):
        return None


@functools.lru_cache(maxsize=1 << 16)
def _canonical(spelled: str) -> str:
    """A version as spelled in a file name, canonical (each release has many files)."""
    return canonicalize_version(Version(spelled))


def sdist_version(filename: str, project: str | None = None) -> str | None:
    """The version as an sdist's file name spells it. With the project's name, as pip
    reads it: the name first, then all that follows its hyphen, so that a version
    with a hyphen of its own (`pybbox-0.0.5-alpha.zip`) is read whole."""
    ext = next((e for e in SDIST_EXTENSIONS if filename.endswith(e)), None)
    if ext is None:
        return None
    stem = filename[: -len(ext)]
    if project is not None:
        wanted = canonicalize_name(project)
        for at, char in enumerate(stem):
            if char == "-" and canonicalize_name(stem[:at]) == wanted:
                return stem[at + 1 :]
    try:
        return str(parse_sdist_filename(filename)[1])
    except (InvalidSdistFilename, InvalidVersion):
        return None


class ProjectPage:
    """A project's files grouped by canonical version; each group decoded on demand.

    The cache keeps each group as a JSON string, so loading a page for
    botocore (thousands of files) costs one string scan, and only the pinned
    version's files are turned into objects.
    """

    def __init__(self, groups: dict[str, str]) -> None:
        self._groups = groups

    @classmethod
    def of(cls, files: Iterable[IndexFile], project: str | None = None) -> ProjectPage:
        grouped: dict[str, list[list[object]]] = {}
        for f in files:
            version = file_version(f.filename, project)
            if version is not None:
                grouped.setdefault(version, []).append(
                    [f.filename, f.url, f.sha256, f.requires_python, f.yanked]
                )
        return cls({v: json.dumps(rows, separators=(",", ":")) for v, rows in grouped.items()})

    def files(self, version: str) -> list[IndexFile]:
        raw = self._groups.get(canonicalize_version(version))
        return [IndexFile(*row) for row in json.loads(raw)] if raw else []

    def versions(self) -> list[str]:
        """Versions as their files spell them (1.16.0, not the canonical 1.16)."""
        out = []
        for canonical, raw in self._groups.items():
            name = json.loads(raw)[0][0]
            if name.endswith(".whl"):  # its version parsed when it was grouped
                out.append(str(Version(name.split("-")[1])))
                continue
            spelled = sdist_version(name)
            try:  # a hyphenated version is read whole only with the project's name
                same = spelled is not None and canonicalize_version(Version(spelled)) == canonical
            except InvalidVersion:
                same = False
            out.append(spelled if same and spelled else canonical)
        return out


def oldest_supporting(page: ProjectPage, python: str, after: str) -> str | None:
    """The oldest final release newer than `after` that says it fits `python` (X.Y): a
    wheel tagged for it, or a Requires-Python that admits it; None if none does."""
    wanted = Version(f"{python}.0")
    tag = f"cp{python.replace('.', '')}"
    newer = []
    for spelled in page.versions():
        try:
            version = Version(spelled)
        except InvalidVersion:
            continue
        if version > Version(after) and not version.is_prerelease:
            newer.append((version, spelled))
    for _version, spelled in sorted(newer):
        files = [f for f in page.files(spelled) if not f.yanked]
        if any(f"-{tag}-" in f.filename for f in files) or any(
            f.requires_python and _admits(f.requires_python, wanted) for f in files
        ):
            return spelled
    return None


def _admits(requires_python: str, python: Version) -> bool:
    try:
        return python in SpecifierSet(requires_python)
    except InvalidSpecifier:
        return False


@dataclass
class Stats:
    """What a plan cost: requests made, answered from cache, revalidated. Mutable:
    the client's counters, counted up while it works (the plan keeps a copy)."""

    requests: int = 0
    fresh_hits: int = 0
    not_modified: int = 0
    retries: int = 0


class Upstream:
    """Fetch project pages from one simple index, through a disk cache."""

    def __init__(
        self,
        base_url: str,
        cache_dir: Path,
        ttl: float = 600,
        concurrency: int = 32,
        *,
        retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 30,
    ) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.cache_dir = cache_dir / hashlib.sha256(self.base_url.encode()).hexdigest()[:16]
        self.ttl = ttl
        self.concurrency = concurrency
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.stats = Stats()
        self._local = threading.local()
        self._lock = threading.Lock()

    @classmethod
    def of(cls, index: UpstreamIndex, cache: Path) -> Upstream:
        """The matrix's upstream index, cached under `cache` (a run layout's index cache)."""
        return cls(index.url, cache, ttl=index.cache_ttl, concurrency=index.concurrency)

    def projects(self, names: Iterable[str]) -> dict[str, ProjectPage | None]:
        """Files of each project (None when the index does not have it)."""
        unique = sorted(set(names))
        with thread_pool(self.concurrency) as pool:
            return dict(zip(unique, pool.map(self.project, unique), strict=True))

    def project(self, name: str) -> ProjectPage | None:
        cached = self._read_cache(name)
        if cached is not None and time.time() - float(cached["fetched"]) < self.ttl:  # type: ignore[arg-type]
            self._count("fresh_hits")
            return _page(cached)
        return self._fetch(name, cached)

    # -- network --------------------------------------------------------------
    def _fetch(self, name: str, cached: dict[str, object] | None) -> ProjectPage | None:
        url = urllib.parse.urljoin(self.base_url, f"{name}/")
        headers = {"Accept": ACCEPT}
        if cached and cached.get("etag"):
            headers["If-None-Match"] = str(cached["etag"])
        if cached and cached.get("last_modified"):
            headers["If-Modified-Since"] = str(cached["last_modified"])
        response = self._get(url, headers)
        if response.status_code == 304 and cached is not None:
            self._count("not_modified")
            cached["fetched"] = time.time()
            self._write_cache(name, cached)
            return _page(cached)
        if response.status_code == 404:
            self._write_cache(name, {"fetched": time.time(), "missing": True})
            return None
        page = ProjectPage.of(self._parse(response, url), name)
        entry: dict[str, object] = {
            "fetched": time.time(),
            "etag": response.headers.get("ETag"),
            "last_modified": response.headers.get("Last-Modified"),
            "versions": page._groups,
        }
        self._write_cache(name, entry)
        return page

    def _get(self, url: str, headers: dict[str, str]) -> requests.Response:
        if url.startswith("file://"):
            return _file_response(url)
        last: str = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self._count("retries")
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                self._count("requests")
                response = self._session().get(
                    url, headers=headers, timeout=self.timeout, stream=True
                )
                read_capped(response, url)
            except requests.RequestException as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code not in RETRY_STATUS:
                if response.status_code not in (200, 304, 404):
                    raise IndexUnavailable(f"{url}: HTTP {response.status_code}")
                return response
            last = f"HTTP {response.status_code}"
        raise IndexUnavailable(
            f"package index {self.base_url} not reachable after {self.retries + 1} tries "
            f"({last[:200]})",
            hint="check the network or proxy (HTTPS_PROXY), or index.upstream in the matrix",
        )

    def _parse(self, response: requests.Response, url: str) -> list[IndexFile]:
        kind = response.headers.get("Content-Type", "")
        try:
            if "json" in kind:
                return parse_json(response.json(), url)
            return parse_html(response.text, url)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IndexUnavailable(
                f"{url}: the index answered something unreadable: {exc}"
            ) from None

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = "orchestrate (wheel planner)"
            self._local.session = session
        return session

    def _count(self, field: str) -> None:
        with self._lock:
            setattr(self.stats, field, getattr(self.stats, field) + 1)

    # -- cache ----------------------------------------------------------------
    def _cache_path(self, name: str) -> Path:
        return self.cache_dir / f"{name}.json"

    def _read_cache(self, name: str) -> dict[str, object] | None:
        try:
            data = json.loads(self._cache_path(name).read_bytes())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("format") == CACHE_FORMAT else None

    def _write_cache(self, name: str, entry: dict[str, object]) -> None:
        entry["format"] = CACHE_FORMAT
        path = self._cache_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A cache: a file torn by a crash reads as unreadable and is fetched again.
        write_atomic(path, json.dumps(entry, separators=(",", ":")), sync=False)


def read_capped(response: requests.Response, url: str) -> None:
    """Read the body, refusing one over MAX_PAGE or slower than the download deadline
    (a hostile or broken index)."""
    read_body(response, url, limit=MAX_PAGE, deadline=deadline_seconds())


def _page(entry: dict[str, object]) -> ProjectPage | None:
    if entry.get("missing"):
        return None
    groups = entry.get("versions")
    return ProjectPage(groups if isinstance(groups, dict) else {})


def _file_response(url: str) -> requests.Response:
    """A local folder laid out as a simple index (`<root>/<project>/index.html`)."""
    path = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)) / "index.html"
    response = requests.Response()
    response.url = url
    if path.is_file():
        response.status_code = 200
        response._content = path.read_bytes()
        response.headers["Content-Type"] = "text/html"
    else:
        response.status_code = 404
        response._content = b""
    return response
