"""Errors raised while finding or starting the pipeline's servers."""

from __future__ import annotations

from cryptopipe.runtime.jvm import JvmError


class InfraError(Exception):
    """Base class of every error this package raises."""


class BinaryNotFoundError(InfraError):
    """A server executable could not be found; ``hint`` says how to get one."""

    def __init__(self, name: str, hint: str) -> None:
        self.name = name
        self.hint = hint
        super().__init__(f"no {name} executable found. {hint}")


class ServerStartError(InfraError):
    """A server process did not start or did not become ready in time.

    ``log_tail`` holds the last lines the server wrote, so the cause is in the message.
    """

    def __init__(self, name: str, detail: str, log_tail: str = "") -> None:
        self.name = name
        self.detail = detail
        self.log_tail = log_tail
        message = f"{name} failed to start: {detail}"
        if log_tail:
            message += "\n--- last lines of its log ---\n" + log_tail
        super().__init__(message)


class ResolutionError(InfraError):
    """No server of the requested kind could be found or started; ``attempts`` lists why."""

    def __init__(self, name: str, attempts: list[str]) -> None:
        self.name = name
        self.attempts = attempts
        super().__init__(f"could not find or start {name}:\n  - " + "\n  - ".join(attempts))


#: What finding or starting a server can raise: infra's own errors, and the JVM kit's (no Java,
#: jars that cannot be resolved) from a broker that runs on the JVM.
START_ERRORS: tuple[type[Exception], ...] = (InfraError, JvmError)
