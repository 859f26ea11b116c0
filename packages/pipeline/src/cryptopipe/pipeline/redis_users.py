"""Which Redis user each service of a run logs in as.

- A Redis the run started (a local ``redis-server`` or a container): one ACL user per service
  (:mod:`cryptopipe.infra.redis_acl`), made with the admin password only ``up`` holds; the
  passwords go to owner-only files.
- A Redis you run (``REDIS_URL`` set) with ``REDIS_USERS_FILE``: the users that file names.
- A Redis you run without it: none; every service uses ``REDIS_URL`` as given, as before (``up``
  does not create users on a server it does not own).
"""

from __future__ import annotations

from pathlib import Path

from cryptopipe.infra import RedisEndpoint
from cryptopipe.infra.redis_acl import users_from_file
from cryptopipe.infra.redis_server import KIND_CONFIGURED
from cryptopipe.pipeline.preflight import check_redis
from cryptopipe.schemas import ConfigError, RedisSettings


def redis_users(
    endpoint: RedisEndpoint, settings: RedisSettings, secrets_dir: Path
) -> dict[str, RedisSettings] | None:
    """Each Redis service's settings (its own user, its password file) by service name, or None
    when every service is to use the configured ``REDIS_URL``. A user of ``REDIS_USERS_FILE``
    that Redis refuses is a :class:`ConfigError` naming the file and the user, before any
    service starts."""
    if settings.users_file:
        base = settings.model_copy(update={"url": endpoint.url})
        users = users_from_file(settings.users_file, base)
        for service, user in users.items():
            try:
                check_redis(user)
            except ConfigError as exc:
                raise ConfigError(f"REDIS_USERS_FILE: the user of {service}: {exc}") from None
        return users
    if endpoint.kind == KIND_CONFIGURED:
        return None
    return endpoint.service_users(settings.key_prefix, secrets_dir)
