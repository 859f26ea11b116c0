"""A secured local Apache Kafka cluster: SASL_SSL (SCRAM-SHA-512) for clients, ACLs, and one
least-privilege principal per service; what ``cryptopipe kafka-cluster --secure`` and the
``secure_kafka`` fixture run.

:class:`SecureKafkaCluster` starts a :class:`~cryptopipe.infra.apache_kafka.KafkaCluster` with
:class:`~cryptopipe.infra.kafka_security.KafkaSecurity`, then, as the super user: creates the
pipeline's topics (so that no service needs the right to create one), a SCRAM-SHA-512 user per
entry of :data:`GRANTS` with a random password, and exactly the ACLs listed there. Each password
is written to its own file (0600); :meth:`SecureKafkaCluster.describe` is the JSON that
``KAFKA_PRINCIPALS_FILE`` reads (it names the files, never a password). Each principal also has a
client certificate for the ``MTLS`` listener (:meth:`SecureKafkaCluster.mtls_settings`), where the
same ACLs apply to the certificate's name.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptopipe.infra.apache_kafka import KAFKA_VERSION, KafkaCluster
from cryptopipe.infra.errors import InfraError
from cryptopipe.infra.kafka_security import CLIENT_MECHANISM, KafkaSecurity, new_password, write_secret
from cryptopipe.runtime.lifecycle import StartStop
from cryptopipe.schemas import ALL_TOPICS, KafkaSettings, settings_of

log = logging.getLogger(__name__)

SCRAM_ITERATIONS = 8192


@dataclass(frozen=True)
class Grant:
    """Operations allowed to a principal on Kafka resources of one kind.

    ``resource``: ``topic`` or ``group``; ``names`` of topics are the pipeline's (the cluster's
    topic prefix is put in front) unless ``as_is``; ``prefixed`` matches every name that starts
    with one of them; ``*`` is every name.
    """

    resource: str
    names: tuple[str, ...]
    operations: tuple[str, ...]
    prefixed: bool = False
    as_is: bool = False


_WRITE = ("WRITE", "DESCRIBE")
_READ = ("READ", "DESCRIBE")
_BOOKS = ("book-updates", "book-snapshots")

#: Every principal the cluster tool creates, and all it may do. Nothing else is allowed.
GRANTS: Mapping[str, tuple[Grant, ...]] = {
    # Trades, book records and bad frames out; idempotent producing comes with WRITE (KIP-679).
    # At start it reads the end of prices back to resume from (assigned partitions, no group).
    "ingest": (
        Grant("topic", ("prices", *_BOOKS, "dead-letters"), _WRITE),
        Grant("topic", ("prices",), ("READ",)),
    ),
    "prices-consumer": (
        Grant("topic", ("prices",), _READ),
        Grant("group", ("cryptopipe-prices",), ("READ",)),
        Grant("topic", ("dead-letters",), _WRITE),
    ),
    "books-consumer": (
        Grant("topic", _BOOKS, _READ),
        Grant("group", ("cryptopipe-books",), ("READ",)),
        Grant("topic", ("dead-letters",), _WRITE),
    ),
    "alerts-consumer": (
        Grant("topic", ("alerts",), _READ),
        Grant("group", ("cryptopipe-alerts",), ("READ",)),
        Grant("topic", ("dead-letters",), _WRITE),
    ),
    # Spark's job and its express lane: prices (and book updates with --depth) in, alerts out. Its
    # readers assign partitions, so a group only names them: Spark's own, the express lane's.
    "alerting": (
        Grant("topic", ("prices", "book-updates"), _READ),
        Grant("topic", ("alerts",), _WRITE),
        Grant("group", ("spark-kafka-source-", "cryptopipe-alerting-"), ("READ",), prefixed=True),
    ),
    # The orchestrator (`up` itself): topic metadata and ends, for its checks and its drain.
    "pipeline": (Grant("topic", tuple(spec.name for spec in ALL_TOPICS), ("DESCRIBE",)),),
    # `bench` commands and experiments: their runs' own topics (bench-<run>-...), created by them.
    "bench": (
        Grant("topic", ("bench-",), ("ALL",), prefixed=True, as_is=True),
        Grant("group", ("*",), ("READ", "DESCRIBE")),
    ),
}


def _acl_bindings(username: str, grants: tuple[Grant, ...], topic_prefix: str) -> list[Any]:
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    bindings = []
    for grant in grants:
        kind = ResourceType[grant.resource.upper()]
        pattern = ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL
        for name in grant.names:
            resource = topic_prefix + name if kind == ResourceType.TOPIC and not grant.as_is else name
            for operation in grant.operations:
                bindings.append(
                    AclBinding(
                        kind,
                        resource,
                        pattern,
                        f"User:{username}",
                        "*",
                        AclOperation[operation],
                        AclPermissionType.ALLOW,
                    )
                )
    return bindings


class SecureKafkaCluster(StartStop):
    """``size`` secured Apache Kafka nodes on loopback, with the pipeline's topics and principals.

    ``principals[service]`` is ``(username, password_file)``; :meth:`settings` gives a service's
    :class:`KafkaSettings`, :meth:`admin_config` the super user's librdkafka settings.
    """

    def __init__(
        self,
        size: int = 1,
        *,
        heap: str = "384m",
        topic_prefix: str = "",
        version: str = KAFKA_VERSION,
        directory: Path | None = None,
        reauth_ms: int = 0,
    ) -> None:
        self.size = size
        self.reauth_ms = reauth_ms
        """SCRAM sessions last at most this long (KIP-368): a rotated password is refused within it."""
        self.topic_prefix = topic_prefix
        self.version = version
        self._directory = directory
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.security: KafkaSecurity | None = None
        #: The nodes; they get their security at :meth:`start`.
        self.cluster = KafkaCluster(size, heap=heap, version=version)
        self.principals: dict[str, tuple[str, Path]] = {}

    @property
    def _started(self) -> bool:
        return bool(self.cluster.brokers)

    @property
    def directory(self) -> Path:
        if self.security is None:
            raise InfraError("the secured cluster is not started")
        return self.security.directory

    @property
    def bootstrap_servers(self) -> str:
        return self.cluster.bootstrap_servers

    @property
    def kind(self) -> str:
        return self.cluster.kind

    def start(self, ready_timeout: float = 120.0) -> SecureKafkaCluster:
        """Certificates, the nodes, then topics, users and ACLs; ready once every principal can log in."""
        directory = self._directory
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="cryptopipe-secure-kafka-")
            directory = Path(self._tmp.name)
        self.security = self.cluster.security = KafkaSecurity.create(
            directory / "tls", clients=GRANTS, reauth_ms=self.reauth_ms
        )
        try:
            self.cluster.start(ready_timeout=ready_timeout)
            self._provision(directory / "principals", ready_timeout)
        except BaseException:
            self.stop()
            raise
        log.info("secured Kafka ready at %s (SASL_SSL %s)", self.bootstrap_servers, CLIENT_MECHANISM)
        return self

    def stop(self) -> None:
        self.cluster.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def admin_config(self) -> dict[str, Any]:
        """The super user's librdkafka settings (PLAIN over TLS, on the INTERNAL listeners)."""
        if self.security is None:
            raise InfraError("the secured cluster is not started")
        return self.security.admin_config(self.cluster.internal_bootstrap_servers)

    def _provision(self, directory: Path, timeout: float) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.add_topic_prefix(self.topic_prefix, timeout=timeout)
        passwords = {service: new_password() for service in GRANTS}
        for service, password in passwords.items():
            self.principals[service] = (service, write_secret(directory / f"{service}.password", password))
        self.set_passwords(passwords, timeout=timeout)
        self._await_logins(self.principals, timeout)

    def add_topic_prefix(self, prefix: str, *, timeout: float = 60.0) -> None:
        """The pipeline's topics under ``prefix`` too, each principal granted on them as on the
        cluster's own (a test's run of its own on a shared cluster: ``KAFKA_TOPIC_PREFIX``)."""
        from confluent_kafka.admin import AdminClient

        from cryptopipe.runtime import ensure_topics

        ensure_topics(
            self.admin_settings(),
            [spec.with_prefix(prefix) for spec in ALL_TOPICS],
            replication_factor=min(self.size, 3),
            timeout_s=timeout,
        )
        bindings = [b for service, grants in GRANTS.items() for b in _acl_bindings(service, grants, prefix)]
        admin = AdminClient(self.admin_config())  # held: a collected client fails its futures
        for future in admin.create_acls(bindings, request_timeout=timeout).values():
            future.result()

    def add_principal(self, username: str, *, like: str, directory: Path) -> Path:
        """A new SCRAM user allowed what principal ``like`` is (on the cluster's topics), its
        password in ``directory/<username>.password`` (0600); returns that file once it can log in."""
        from confluent_kafka.admin import AdminClient

        password = new_password()
        path = write_secret(directory / f"{username}.password", password)
        self.set_password(username, password)
        bindings = _acl_bindings(username, GRANTS[like], self.topic_prefix)
        admin = AdminClient(self.admin_config())
        for future in admin.create_acls(bindings, request_timeout=60).values():
            future.result()
        self._await_logins({username: (username, path)}, 60.0)
        return path

    def set_password(self, username: str, password: str, *, timeout: float = 60.0) -> None:
        """Create SCRAM-SHA-512 user ``username`` or change its password (a rotation: clients
        still holding the old one are refused at their next login)."""
        self.set_passwords({username: password}, timeout=timeout)

    def set_passwords(self, passwords: Mapping[str, str], *, timeout: float = 60.0) -> None:
        """:meth:`set_password` for each user of ``passwords``, in one request."""
        from confluent_kafka.admin import (  # type: ignore[attr-defined]
            AdminClient,
            ScramCredentialInfo,
            ScramMechanism,
            UserScramCredentialAlteration,
            UserScramCredentialUpsertion,
        )

        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
        upserts: list[UserScramCredentialAlteration] = [
            UserScramCredentialUpsertion(user, info, password.encode())
            for user, password in passwords.items()
        ]
        admin = AdminClient(self.admin_config())
        for future in admin.alter_user_scram_credentials(upserts).values():
            future.result(timeout=timeout)

    def _await_logins(self, principals: Mapping[str, tuple[str, Path]], timeout: float) -> None:
        """Wait until each of ``principals`` can log in (users reach each broker through the
        metadata log)."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        for service, (username, path) in principals.items():
            while True:
                quiet = logging.getLogger("cryptopipe.infra.secure_kafka.librdkafka")
                settings = self.user_settings(username, path)
                config: dict[str, Any] = {**settings.client_config(), "logger": quiet}
                client = AdminClient(config)
                try:
                    client.list_topics(timeout=5)
                    break
                except KafkaException as exc:
                    if time.monotonic() > deadline:
                        raise InfraError(f"principal {service} cannot log in: {exc}") from None
                    time.sleep(0.2)

    def admin_settings(self) -> KafkaSettings:
        """The super user as :class:`KafkaSettings` (the cluster tool's own; no service's)."""
        security = self.security
        if security is None:
            raise InfraError("the secured cluster is not started")
        return settings_of(
            KafkaSettings,
            bootstrap_servers=self.cluster.internal_bootstrap_servers,
            security_protocol="SASL_SSL",
            sasl_mechanism="PLAIN",
            sasl_username="admin",
            sasl_password=security.admin_password,
            sasl_password_file="",
            ssl_ca_location=str(security.ca_file),
            principals_file="",
            topic_prefix=self.topic_prefix,
        )

    def settings(self, service: str, **overrides: Any) -> KafkaSettings:
        """``service``'s :class:`KafkaSettings`: the CLIENT listeners, its user and password file."""
        username, password_file = self.principals[service]
        return self.user_settings(username, password_file, **overrides)

    def user_settings(self, username: str, password_file: Path, **overrides: Any) -> KafkaSettings:
        """SCRAM user ``username``'s :class:`KafkaSettings` on the CLIENT listeners."""
        if self.security is None:
            raise InfraError("the secured cluster is not started")
        values: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": CLIENT_MECHANISM,
            "sasl_username": username,
            "sasl_password": "",
            "sasl_password_file": str(password_file),
            "ssl_ca_location": str(self.security.ca_file),
            "principals_file": "",
            "topic_prefix": self.topic_prefix,
        }
        return settings_of(KafkaSettings, **{**values, **overrides})

    def mtls_settings(self, service: str, **overrides: Any) -> KafkaSettings:
        """``service``'s :class:`KafkaSettings` on the MTLS listeners: TLS with its client
        certificate (key and certificate in one file, for librdkafka and Java alike), no SASL."""
        if self.security is None:
            raise InfraError("the secured cluster is not started")
        pem = str(self.security.client_certs[service])
        values: dict[str, Any] = {
            "bootstrap_servers": self.cluster.mtls_bootstrap_servers,
            "security_protocol": "SSL",
            "sasl_mechanism": "",
            "sasl_username": "",
            "sasl_password": "",
            "sasl_password_file": "",
            "ssl_ca_location": str(self.security.ca_file),
            "ssl_certificate_location": pem,
            "ssl_key_location": pem,
            "principals_file": "",
            "topic_prefix": self.topic_prefix,
        }
        return settings_of(KafkaSettings, **{**values, **overrides})

    def describe(self) -> dict[str, Any]:
        """What ``--json`` writes and KAFKA_PRINCIPALS_FILE reads: no password, only their files."""
        if self.security is None:
            raise InfraError("the secured cluster is not started")
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": CLIENT_MECHANISM,
            "ca_file": str(self.security.ca_file),
            "topic_prefix": self.topic_prefix,
            "principals": {
                service: {"username": username, "password_file": str(path)}
                for service, (username, path) in self.principals.items()
            },
            "mtls": {
                "bootstrap_servers": self.cluster.mtls_bootstrap_servers,
                "security_protocol": "SSL",
                "principals": {
                    service: {"certificate_file": str(path), "key_file": str(path)}
                    for service, path in self.security.client_certs.items()
                },
            },
            "version": self.version,
        }
