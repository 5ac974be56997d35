"""Check a published index the way its clients read it: `orchestrate doctor --index URL`.

For each simple index under URL (the URL itself, or each `<platform>/simple/`
that a wheel-cache root page links), it reads the pages as HTML and, where the
server offers it, as PEP 691 JSON, with pypi-simple (a client library other
than our own writer, so a page only our code could read is caught); then it
checks what pip would check: every file's sha256 and size, every PEP 658
`.metadata` file's hash and that it names the file's project and version, and
that no page carries a key that a client in `QUIRKS` fails on.
"""

from __future__ import annotations

import email.parser
import hashlib
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import pypi_simple
import requests
from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_wheel_filename,
)

from orchestrator.core.errors import IndexUnavailable
from orchestrator.core.net import FILE_DEADLINE, deadline_seconds, pieces, thread_pool
from orchestrator.model import Check
from orchestrator.plan.upstream import MAX_PAGE, read_capped

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
MAX_FILE = 4 << 30  # bytes; a wheel over this is not something a cache serves
SHOWN = 3  # problems named in a check's detail; the count says how many there are
# What a broken, hostile or absent page can raise while it is read and parsed.
READ_ERRORS = (
    requests.RequestException,
    ValueError,
    KeyError,
    TypeError,
    IndexUnavailable,
    pypi_simple.UnsupportedRepoVersionError,  # a repository version newer than we read
)


@dataclass(frozen=True)
class Quirk:
    """A page feature that a known client version fails on."""

    where: str
    clients: str
    effect: str
    found: Callable[[Mapping[str, object]], bool]  # on one PEP 691 file entry


QUIRKS = (
    Quirk(
        "JSON files[].dist-info-metadata as a mapping",
        "pip 23.0 and 23.0.1 (Debian 12's `python3 -m venv`)",
        "crashes with TypeError: unhashable type: 'dict'; PEP 714 renamed the key "
        "to core-metadata for this reason",
        lambda entry: isinstance(entry.get("dist-info-metadata"), Mapping),
    ),
    Quirk(
        "JSON files[].yanked neither true/false nor a reason string",
        "pip and uv",
        "reject the page",
        lambda entry: not isinstance(entry.get("yanked", False), bool | str),
    ),
    Quirk(
        "JSON files[].core-metadata neither true/false nor a hash mapping",
        "pip >= 23.1 and uv",
        "reject the page",
        lambda entry: not isinstance(entry.get("core-metadata", False), bool | Mapping),
    ),
)


@dataclass(frozen=True, kw_only=True)
class Findings:
    """What one simple index showed; each tuple holds problems, described."""

    root: str
    projects: int = 0
    files: int = 0
    metadata: int = 0
    json_offered: bool = False
    pages: tuple[str, ...] = ()
    hashes: tuple[str, ...] = ()
    metadata_problems: tuple[str, ...] = ()
    quirks: tuple[str, ...] = ()

    def checks(self) -> list[Check]:
        served = f"HTML and JSON ({JSON_TYPE})" if self.json_offered else "HTML only"
        return [
            _check(
                f"pages {self.root}",
                self.pages,
                f"{self.projects} project(s), {served}, readable by pypi-simple"
                + (" and the same in both forms" if self.json_offered else ""),
                "republish the index (orchestrate publish) or fix the server's configuration",
            ),
            _check(
                f"files {self.root}",
                self.hashes,
                f"{self.files} file(s): sha256 and size as the pages say",
                "a file changed after publishing: `orchestrate rollback` to the last good "
                "release, then publish again",
            ),
            _check(
                f"metadata {self.root}",
                self.metadata_problems,
                f"{self.metadata} PEP 658 .metadata file(s) match their hash and name "
                "their file's project and version",
                "republish the index (orchestrate publish)",
            ),
            _check(
                f"clients {self.root}",
                self.quirks,
                f"no key that a known client fails on ({len(QUIRKS)} known)",
                "serve only what PEP 691/714 allow: republish with this orchestrate version",
            ),
        ]


def _check(subject: str, problems: Sequence[str], ok_detail: str, fix: str) -> Check:
    if not problems:
        return Check(subject=subject, ok=True, detail=ok_detail)
    shown = "; ".join(problems[:SHOWN])
    more = f" (and {len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
    return Check(
        subject=subject, ok=False, detail=f"{len(problems)} problem(s): {shown}{more}", fix=fix
    )


def check_index(url: str, timeout: float = 30.0, workers: int = 8) -> list[Check]:
    """Checks for every simple index at or under `url`; an unreachable URL is one
    failed check with required=True, so the caller can tell it apart (`reachable`)."""
    session = requests.Session()
    session.headers["User-Agent"] = "orchestrate doctor --index"
    reader = Reader(session, timeout)
    try:
        roots = simple_roots(reader, url)
    except READ_ERRORS as exc:
        return [unreachable(url, exc)]
    checks: list[Check] = []
    for root in roots:
        try:
            checks += examine(reader, root, workers).checks()
        except READ_ERRORS as exc:
            checks.append(unreachable(root, exc))
    return checks


def unreachable(url: str, exc: Exception) -> Check:
    text = exc.message if isinstance(exc, IndexUnavailable) else str(exc)
    reason = f"{type(exc).__name__}: {text[:200]}"
    return Check(
        subject=f"index {url}",
        ok=False,
        detail=f"not readable: {reason}",
        fix="check the URL (an index root, or a <platform>/simple/ URL) and that it is served",
    )


def reachable(checks: Iterable[Check]) -> bool:
    return not any(c.subject.startswith("index ") and not c.ok for c in checks)


@dataclass(frozen=True)
class Reader:
    session: requests.Session
    timeout: float

    def get(self, url: str, accept: str) -> requests.Response:
        response = self.session.get(
            url, headers={"Accept": accept}, timeout=self.timeout, stream=True
        )
        read_capped(response, url)
        response.raise_for_status()
        return response

    def digest(self, url: str, *, keep: bool = False) -> tuple[str, int, bytes]:
        """sha256 and size, streamed; with `keep` (a metadata file) also the bytes, up
        to MAX_PAGE. A wheel is never held in memory."""
        with self.session.get(url, timeout=self.timeout, stream=True) as response:
            response.raise_for_status()
            digest, size, body = hashlib.sha256(), 0, bytearray()
            deadline = deadline_seconds(FILE_DEADLINE)
            for chunk in pieces(response, url, limit=MAX_FILE, deadline=deadline):
                size += len(chunk)
                digest.update(chunk)
                if keep and len(body) < MAX_PAGE:
                    body += chunk
        return digest.hexdigest(), size, bytes(body)


def simple_roots(reader: Reader, url: str) -> list[str]:
    """`url` itself, unless it is a wheel-cache root page linking `<x>/simple/` indexes."""
    url = url if url.endswith("/") else url + "/"
    response = reader.get(url, pypi_simple.ACCEPT_HTML_ONLY)
    if "html" not in response.headers.get("Content-Type", "html"):
        return [url]
    links = list(pypi_simple.parse_links_stream([response.text], base_url=url))
    roots = [link.url for link in links if link.url.endswith("/simple/")]
    return roots if roots and len(roots) == len(links) else [url]


@dataclass(frozen=True, kw_only=True)
class _Seen:
    """What one project page or one file showed: problems per kind, described."""

    packages: tuple[pypi_simple.DistributionPackage, ...] = ()
    pages: tuple[str, ...] = ()
    quirks: tuple[str, ...] = ()
    hashes: tuple[str, ...] = ()
    metadata_problems: tuple[str, ...] = ()
    metadata: int = 0


def examine(reader: Reader, root: str, workers: int) -> Findings:
    html_index = pypi_simple.IndexPage.from_response(reader.get(root, pypi_simple.ACCEPT_HTML_ONLY))
    projects = sorted(html_index.projects)
    answer = reader.get(root, pypi_simple.ACCEPT_JSON_ONLY)
    json_offered = _is_json(answer)
    seen = [_Seen()]
    if json_offered:
        listed = sorted(pypi_simple.IndexPage.from_response(answer).projects)
        if listed != projects:
            seen.append(
                _Seen(pages=(f"{root}: the JSON and HTML indexes list different projects",))
            )
    elif "json" in answer.headers.get("Content-Type", ""):
        quirk = (
            f"{root}: JSON served as {answer.headers['Content-Type']!r}: pip skips the page "
            f"and uv fails; PEP 691 needs {JSON_TYPE}"
        )
        seen.append(_Seen(quirks=(quirk,)))
    with thread_pool(workers) as pool:
        pages = list(
            pool.map(lambda n: _project(reader, root, n, json_offered=json_offered), projects)
        )
        packages = [p for page in pages for p in page.packages]
        files = list(pool.map(lambda p: _file(reader, p), packages))
    seen += [*pages, *files]
    return Findings(
        root=root,
        projects=len(projects),
        files=len(packages),
        metadata=sum(s.metadata for s in seen),
        json_offered=json_offered,
        pages=tuple(x for s in seen for x in s.pages),
        hashes=tuple(x for s in seen for x in s.hashes),
        metadata_problems=tuple(x for s in seen for x in s.metadata_problems),
        quirks=tuple(x for s in seen for x in s.quirks),
    )


def _is_json(response: requests.Response) -> bool:
    return response.headers.get("Content-Type", "").split(";")[0].strip() == JSON_TYPE


def _project(reader: Reader, root: str, name: str, *, json_offered: bool) -> _Seen:
    url = urllib.parse.urljoin(root, f"{canonicalize_name(name)}/")
    try:
        html_page = pypi_simple.ProjectPage.from_response(
            reader.get(url, pypi_simple.ACCEPT_HTML_ONLY), name
        )
        if not json_offered:
            return _Seen(packages=tuple(html_page.packages))
        answer = reader.get(url, pypi_simple.ACCEPT_JSON_ONLY)
        json_page = pypi_simple.ProjectPage.from_response(answer, name)
        quirks = tuple(_quirks(url, answer.json()))
    except READ_ERRORS as exc:
        return _Seen(pages=(f"{url}: {type(exc).__name__}: {str(exc)[:160]}",))
    differ = _listing(html_page) != _listing(json_page)
    problem = (f"{url}: the JSON and HTML pages list different files or hashes",)
    return _Seen(packages=tuple(json_page.packages), quirks=quirks, pages=problem if differ else ())


def _listing(page: pypi_simple.ProjectPage) -> set[tuple[str, str | None, str | None]]:
    return {
        (
            p.filename,
            p.digests.get("sha256"),
            (p.metadata_digests or {}).get("sha256"),
        )
        for p in page.packages
    }


def _quirks(url: str, data: object) -> list[str]:
    files = data.get("files") if isinstance(data, Mapping) else None
    entries = [e for e in files if isinstance(e, Mapping)] if isinstance(files, list) else []
    return [
        f"{url}{entry.get('filename')}: {quirk.where}: {quirk.clients} {quirk.effect}"
        for entry in entries
        for quirk in QUIRKS
        if quirk.found(entry)
    ]


def _file(reader: Reader, package: pypi_simple.DistributionPackage) -> _Seen:
    try:
        sha256, size, _ = reader.digest(package.url)
    except READ_ERRORS as exc:
        return _Seen(hashes=(f"{package.url}: {type(exc).__name__}: {str(exc)[:160]}",))
    hashes = []
    expected = package.digests.get("sha256")
    if expected is None:
        hashes.append(f"{package.filename}: the page gives no sha256 (--require-hashes fails)")
    elif sha256 != expected:
        hashes.append(_mismatch(package.filename, sha256, expected))
    if package.size is not None and size != package.size:
        hashes.append(f"{package.filename}: {size} bytes, the page says {package.size}")
    metadata = _metadata(reader, package) if package.has_metadata else _Seen()
    return replace(metadata, hashes=tuple(hashes))


def _mismatch(name: str, got: str, expected: str) -> str:
    return f"{name}: sha256 {got[:16]}..., the page says {expected[:16]}..."


def _metadata(reader: Reader, package: pypi_simple.DistributionPackage) -> _Seen:
    url = package.metadata_url
    try:
        sha256, _, body = reader.digest(url, keep=True)
    except READ_ERRORS as exc:
        return _Seen(metadata_problems=(f"{url}: {type(exc).__name__}: {str(exc)[:160]}",))
    problems = []
    expected = (package.metadata_digests or {}).get("sha256")
    if expected is not None and sha256 != expected:
        problems.append(_mismatch(f"{package.filename}.metadata", sha256, expected))
    problem = _names_its_file(package.filename, body)
    if problem:
        problems.append(f"{package.filename}.metadata: {problem}")
    return _Seen(metadata=1, metadata_problems=tuple(problems))


def _names_its_file(filename: str, body: bytes) -> str | None:
    """pip refuses metadata whose Name or Version differ from the file's (pip >= 22.2)."""
    try:
        name, version, _, _ = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None  # an sdist: its name is checked by pip only after the build
    message = email.parser.BytesParser().parsebytes(body, headersonly=True)
    meta_name, meta_version = message.get("Name", ""), message.get("Version", "")
    if canonicalize_name(meta_name) != name:
        return f"names project {meta_name!r}, the file is {name!r}"
    if canonicalize_version(meta_version) != canonicalize_version(version):
        return f"names version {meta_version!r}, the file is {version}"
    return None
