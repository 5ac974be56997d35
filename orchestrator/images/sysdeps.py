"""System packages written into Dockerfiles: a job's extra packages added to its
builder, and the smoke test's bare base with the runtime packages. Every name is
checked against the package grammar, every apt line quoted, here where they are
written."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from orchestrator.config.bindep import PACKAGE_NAME, BindepError
from orchestrator.core.quoting import one_line, shell_word
from orchestrator.engines import Engine
from orchestrator.images.derived import derived_image
from orchestrator.model import Arch

RUNTIME_FACTS = "/etc/orchestrate/runtime.json"  # the probe's --runtime output
JOB_PACKAGES = "/etc/orchestrate/job-packages.txt"  # name=version of each, read by job.py


def install_dockerfile(image: str, family: str, packages: tuple[str, ...]) -> str:
    """A Dockerfile that adds `packages` to the builder `image` (an image ID) for one
    job, as root and with network, and writes what was installed, with versions, to
    JOB_PACKAGES (a virtual package has no line there, hence `|| true`). The fetch
    and build phases then run in the result as the build user; the engine's layer
    cache makes it once per builder and package set."""
    names = " ".join(packages)
    query = (
        f"dpkg-query -W -f '${{Package}}=${{Version}}\\n' {names}"
        if family == "deb"
        else f"rpm -q --qf '%{{NAME}}=%{{VERSION}}-%{{RELEASE}}\\n' {names}"
    )
    run = f"{install_command(family, packages)}; {query} > {JOB_PACKAGES} || true"
    # What wheels built here link against, with these packages in.
    probe = (
        "set -- $ORCHESTRATE_PYTHONS; /opt/orchestrate/py$1/bin/python "
        f'/usr/local/bin/orchestrate-probe --runtime "$@" > {RUNTIME_FACTS}'
    )
    return f"FROM {one_line(image, 'image')}\nUSER root\nRUN set -eux; {run}; {probe}\n"


def install_command(family: str, packages: tuple[str, ...], sources: tuple[str, ...] = ()) -> str:
    """The shell command that installs `packages` as root (with `sources`, extra apt
    lines, added first), leaving no package lists behind."""
    for name in packages:
        if not PACKAGE_NAME.fullmatch(name):
            raise BindepError(f"{name!r} is not a package name")
    names = " ".join(packages)
    if family != "deb":
        return f"dnf install -y --setopt=install_weak_deps=False {names}; dnf clean all"
    added = "".join(f"echo {shell_word(line, 'apt source')} >> {APT_LIST}; " for line in sources)
    return (
        f"export DEBIAN_FRONTEND=noninteractive; {added}apt-get update -q; "
        f"apt-get install -y -q --no-install-recommends {names}; rm -rf /var/lib/apt/lists/*"
    )


APT_LIST = "/etc/apt/sources.list.d/orchestrate.list"  # the matrix's apt_sources


def base_dockerfile(
    base: str, family: str, packages: tuple[str, ...], sources: tuple[str, ...] = ()
) -> str:
    """The smoke test's image: the platform's bare base plus `packages` only."""
    install = install_command(family, packages, sources)
    return f"FROM {one_line(base, 'image')}\nUSER root\nRUN set -eux; {install}\n"


def system_image(
    engine: Engine,
    builder: str,
    arch: Arch,
    family: str,
    *,
    packages: tuple[str, ...],
    env: Mapping[str, str],
    on_line: Callable[[str], None],
) -> str:
    """The ID of `builder` (an image ID on `engine`) with `packages` installed: a
    tiny `FROM <builder ID>` build on the job's engine (so it works the same on an
    ssh:// engine), as root and with network, made once per builder and package set
    (tagged with its Dockerfile's hash); the job's phases then run in it as the
    build user, and `reproduce` repeats the step."""
    dockerfile = install_dockerfile(builder, family, packages)
    return derived_image(
        engine,
        dockerfile,
        "orchestrate-job-packages",
        arch,
        packages=packages,
        env=env,
        on_line=on_line,
    )
