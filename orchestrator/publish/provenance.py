"""A provenance statement for each published wheel: in-toto Statement v1 with a
SLSA Provenance v1 predicate, unsigned (signing can wrap it in DSSE later).

It names what went in (the sdist's URL and sha256, the builder image by digest,
the exact build requirements) and what we found out (the runtime packages and
the smoke test's verdict, as byproducts). The in-toto attestation library
builds and validates it: the predicate is parsed into SLSA's own protobuf
message, so a field name that is not SLSA's fails here, not at a verifier.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from urllib.parse import quote

from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.v1.statement import Statement

from orchestrator import DISTRIBUTION
from orchestrator.jobs.records import WheelRecord

PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://github.com/orchestrate/orchestrate/wheel-build/v1"
BUILDER_ID = "https://github.com/orchestrate/orchestrate"


def statement(record: WheelRecord, filename: str, sha256: str) -> bytes:
    """The statement for `filename` (the name it is published under) built by `record`."""
    subject = ResourceDescriptor(name=filename, digest={"sha256": sha256})
    predicate = json_format.ParseDict(_predicate(record), provenance_pb2.Provenance())
    made = Statement([subject.pb], PREDICATE_TYPE, json_format.MessageToDict(predicate))
    made.validate()
    data = json_format.MessageToDict(made.pb)
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def _predicate(record: WheelRecord) -> dict[str, object]:
    external = {
        "requirement": f"{record.name}=={record.version}",
        "platform": record.platform,
        "python": record.python,
    }
    internal: dict[str, object] = {
        "build_constraints": list(record.build_constraints),
        "phases": record.phases,
        "mode": record.mode or "",
    }
    if record.rebuild:
        internal["rebuild"] = record.rebuild
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": external,
            "internalParameters": internal,
            "resolvedDependencies": _dependencies(record),
        },
        "runDetails": {
            "builder": {"id": BUILDER_ID, "version": {"orchestrate": _version()}},
            "metadata": _metadata(record),
            "byproducts": _byproducts(record),
        },
    }


def _dependencies(record: WheelRecord) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    sdist = record.sdist or {}
    if sdist.get("url"):
        sha = str(record.source_sha256 or sdist.get("sha256", ""))
        out.append(
            {
                "name": str(sdist.get("filename", "")),
                "uri": str(sdist["url"]),
                "digest": {"sha256": sha},
            }
        )
    where = f"oci://{record.image_pull}" if record.image_pull else record.image_ref
    builder: dict[str, object] = {"name": "builder", "uri": where}
    digest = record.image_pull.rpartition("@sha256:")[2] if "@sha256:" in record.image_pull else ""
    builder["digest"] = {"sha256": digest} if digest else {}
    builder["annotations"] = {"image_id": record.image, "engine": record.engine}
    out.append({k: v for k, v in builder.items() if v})
    for pin in record.build_requires:
        name, _, version = pin.partition("==")
        out.append({"name": pin, "uri": f"pkg:pypi/{quote(name.lower())}@{quote(version)}"})
    system = record.system_packages or {}
    installed = system.get("installed")
    for line in installed if isinstance(installed, list) else []:
        name, _, version = str(line).partition("=")
        uri = f"pkg:{system.get('family')}/{name}@{quote(version)}"
        out.append({"name": str(line), "uri": uri})
    return out


def _byproducts(record: WheelRecord) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    if record.runtime is not None:
        out.append(
            {"name": "runtime", "mediaType": "application/json", "annotations": record.runtime}
        )
    if record.smoke is not None:
        smoke = {k: v for k, v in record.smoke.items() if k != "checks"}
        smoke["checks"] = record.smoke.get("checks", [])
        out.append({"name": "smoke-test", "mediaType": "application/json", "annotations": smoke})
    return out


def _metadata(record: WheelRecord) -> dict[str, str]:
    finished = datetime.now(UTC)
    started = finished - timedelta(seconds=record.duration)
    return {
        "invocationId": record.job,
        "startedOn": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "finishedOn": finished.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def _version() -> str:
    try:
        return dist_version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"
