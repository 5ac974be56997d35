"""One error tree for everything a user can see.

Each class carries the exit code the CLI uses and a message that says what
failed and what to try. The CLI catches `OrchestrateError` once and exits;
nothing else in the package calls `sys.exit`.

Exit codes: EXIT_CODES below, which the reference pages print.
"""

from __future__ import annotations

from collections.abc import Callable

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INPUT = 2
EXIT_ENVIRONMENT = 3
EXIT_CONFLICT = 4
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_FAILED: "a build, publish or check ran and part of it failed. For `build`: any build "
    "item of the plan that did not end built, shared or cached: a failed or blocked job "
    "(hash mismatch, bad sdist, no builder image), or a job not started because of "
    "`--deadline` or `--fail-fast`",
    EXIT_INPUT: "bad input: matrix, requirements, selector or option",
    EXIT_ENVIRONMENT: "environment: an engine, registry, index or tool is missing or unreachable",
    EXIT_CONFLICT: "conflict with what is published (e.g. a wheel that is not reproducible)",
    EXIT_INTERNAL: "internal error: a bug of orchestrate's, never the input's or the host's "
    "(please report it with the `--debug` output). A night checks before it reports that "
    "every build item of the plan on its platforms has exactly one job record; one without "
    "is this code, naming the items",
    EXIT_INTERRUPTED: "interrupted (SIGINT/SIGTERM), from the first moment of start-up: running "
    "containers are stopped and removed, the report of what finished is written, and the "
    "jobs never started are listed in it as not started",
}


class OrchestrateError(Exception):
    """Base class: a message for the user, a hint, and an exit code."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self, clean: Callable[[str], str] = str) -> str:
        """The message and hint as the CLI prints them; `clean` makes each one safe
        to print (a message may quote a bundle's or an engine's text)."""
        text = f"error: {clean(self.message)}"
        if self.hint:
            text += f"\n  hint: {clean(self.hint)}"
        return text


class InputError(OrchestrateError):
    """Bad input from the user: a file, a flag or a selector."""

    exit_code = EXIT_INPUT


class ConfigError(InputError):
    """A matrix file that does not load; names the file, line and key."""

    def __init__(
        self,
        message: str,
        *,
        path: str,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = path if line is None else f"{path}:{line}"
        if key:
            where += f": {key}"
        super().__init__(f"{where}: {message}", hint)
        self.path = path
        self.line = line
        self.key = key


class RequirementsError(InputError):
    """A requirements or constraints line that cannot be used."""


class SelectorError(InputError):
    """A --platform pattern that matches nothing."""


class EnvironmentProblem(OrchestrateError):
    """Something outside us is missing or unreachable."""

    exit_code = EXIT_ENVIRONMENT


class EngineError(EnvironmentProblem):
    """A Docker engine that cannot be reached or cannot do what is needed."""


class RegistryError(EnvironmentProblem):
    """A container registry that cannot be reached or refuses us."""


class IndexUnavailable(EnvironmentProblem):
    """The upstream package index cannot be reached after retries."""


class TemplateError(InputError):
    """A Dockerfile template that does not render for a platform."""


class BuildStepFailed(OrchestrateError):
    """A step of an image build failed (not the engine): retrying will not help."""


class StoreConflict(OrchestrateError):
    """A wheel differs from the one already published under that name."""

    exit_code = EXIT_CONFLICT


class BadBundle(InputError):
    """A shard's bundle that is not whole or not of this night: refused before any of
    it is used (exit 2)."""


class TamperedBundle(StoreConflict):
    """A bundle whose files differ from its manifest (exit 4): edited or damaged on
    the way."""


class UnsafeName(InputError):
    """A file name that would escape the store or does not parse."""


class InternalError(OrchestrateError):
    """A broken promise of our own code (an invariant), never bad input: exit 70."""

    exit_code = EXIT_INTERNAL

    def render(self, clean: Callable[[str], str] = str) -> str:
        return f"internal error: {clean(self.message)}\n  please report it, with the run's report"


class Interrupted(OrchestrateError):
    """SIGINT or SIGTERM: what finished has been reported."""

    exit_code = EXIT_INTERRUPTED
