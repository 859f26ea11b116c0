"""Errors raised by the store package."""

from __future__ import annotations

from cryptopipe import schemas


class StoreError(Exception):
    """Base class of every error this package raises."""


class ConfigError(StoreError, schemas.ConfigError):
    """A required setting is missing; ``variable`` names the environment variable.

    A wrong value is reported by :func:`cryptopipe.schemas.load_settings` as the base class,
    :class:`cryptopipe.schemas.ConfigError`.
    """

    def __init__(self, variable: str, detail: str) -> None:
        self.variable = variable
        self.detail = detail
        super().__init__(f"{variable}: {detail}")


class ConsumerFatalError(StoreError):
    """The Kafka client reported a fatal error; the consumer cannot continue."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"fatal Kafka error {code}: {detail}")


class RedisRefusedError(StoreError):
    """Redis refused this service: the credentials in REDIS_URL (``reason`` "credentials"), or a
    command its ACL user may not run (``reason`` "permission"). Retrying cannot help."""

    def __init__(self, component: str, reason: str, detail: str, *, variable: str = "REDIS_URL") -> None:
        self.component = component
        self.reason = reason
        self.detail = detail
        self.variable = variable
        if reason == "credentials":
            what = f"Redis refused the credentials in {variable}"
        else:
            what = "Redis refused a command to the ACL user in REDIS_URL"
        super().__init__(f"{what} ({detail})")

    def naming(self, variable: str) -> RedisRefusedError:
        """The same refusal, its credentials named as ``variable`` (REDIS_PASSWORD_FILE: the
        password came from that file, not the URL)."""
        return RedisRefusedError(self.component, self.reason, self.detail, variable=variable)
