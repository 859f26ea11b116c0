"""What makes a local Apache Kafka node secure: TLS on every listener, SASL on every connection,
KRaft's ``StandardAuthorizer``, and one super user for the brokers and the cluster tool.

Each node gets four listeners on 127.0.0.1, all over TLS:

- ``CLIENT`` (advertised, what services connect to): SASL_SSL, SCRAM-SHA-512 only, whose users
  the cluster tool creates once the cluster is up (:mod:`cryptopipe.infra.secure_kafka`);
- ``MTLS`` (advertised too): SSL with ``ssl.client.auth=required``. A client proves who it is with
  a certificate the run's CA signed; ``CN=<name>`` is mapped to principal ``User:<name>``
  (``ssl.principal.mapping.rules``), so the same ACLs apply as over SCRAM;
- ``INTERNAL`` (between brokers, and the cluster tool's admin connection): SASL_SSL PLAIN, user
  ``admin``;
- ``CONTROLLER`` (KRaft's quorum): SASL_SSL PLAIN, user ``admin``. KRaft cannot authenticate its
  controllers with SCRAM, whose credentials live in the metadata the quorum serves.

The PLAIN password sits in ``server.properties`` (mode 0600, in the node's 0700 directory), never in
a command line; Kafka logs that setting as ``[hidden]``. Certificates are made for the run
(:class:`~cryptopipe.infra.certs.CertificateAuthority`): one CA, one server certificate for
127.0.0.1 and localhost, shared by the nodes, and a client certificate per principal named at
:meth:`KafkaSecurity.create` (its key and certificate in one PEM file, 0600, as Kafka's Java client
wants them).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptopipe.infra.broker import LOOPBACK, kafka_metadata_ready
from cryptopipe.infra.certs import CertificateAuthority
from cryptopipe.infra.process import LocalServer, listening_on
from cryptopipe.runtime import write_private

ADMIN_USER = "admin"
"""The super user: inter-broker and controller traffic, and the cluster tool. No service uses it."""
CLIENT_MECHANISM = "SCRAM-SHA-512"
_PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
_SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


def new_password() -> str:
    """A random password: 32 URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


def write_secret(path: Path, secret: str) -> Path:
    """``secret`` and a newline in a file at ``path`` that only its owner can read (0600)."""
    return write_private(path, secret + "\n")


@dataclass(frozen=True)
class KafkaSecurity:
    """The TLS material and super-user password a secured node is configured with."""

    directory: Path
    ca_file: Path
    keystore: Path
    """The node's private key and certificate in one PEM file (Kafka's ``PEM`` keystore), 0600."""
    admin_password: str = field(repr=False)
    client_certs: dict[str, Path] = field(default_factory=dict)
    """Each client principal's key and certificate (``CN=<principal>``) in one PEM file, 0600."""
    reauth_ms: int = 0
    """SCRAM sessions on CLIENT last at most this long before the client must log in again
    (``connections.max.reauth.ms``, KIP-368): a rotated password is refused within it. 0: forever."""

    @classmethod
    def create(cls, directory: Path, *, clients: Iterable[str] = (), reauth_ms: int = 0) -> KafkaSecurity:
        """A CA, a server certificate for 127.0.0.1/localhost, a client certificate for each of
        ``clients`` and a super-user password, in ``directory`` (made 0700)."""
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        authority = CertificateAuthority("cryptopipe Kafka run CA")
        issued = authority.issue(directory, "kafka")
        keystore = directory / "kafka-keystore.pem"
        write_secret(keystore, issued.key_file.read_text("utf-8") + issued.cert_file.read_text("utf-8"))
        certs = {}
        for name in clients:
            client = authority.issue_client(directory / "clients", name)
            pem = client.key_file.read_text("utf-8") + client.cert_file.read_text("utf-8")
            certs[name] = write_private(directory / "clients" / f"{name}.pem", pem)
            client.key_file.unlink()
            client.cert_file.unlink()
        return cls(directory, issued.ca_file, keystore, new_password(), certs, reauth_ms)

    def _plain_jaas(self) -> str:
        password = self.admin_password
        return (
            f'{_PLAIN_MODULE} required username="{ADMIN_USER}" password="{password}" '
            f'user_{ADMIN_USER}="{password}";'
        )

    def properties(
        self, *, port: int, advertised_port: int, internal_port: int, controller_port: int, mtls_port: int
    ) -> dict[str, str]:
        """The ``server.properties`` entries of one secured node (they replace the plain listeners)."""
        props = {
            "listeners": (
                f"CLIENT://{LOOPBACK}:{port},MTLS://{LOOPBACK}:{mtls_port},"
                f"INTERNAL://{LOOPBACK}:{internal_port},CONTROLLER://{LOOPBACK}:{controller_port}"
            ),
            "advertised.listeners": (
                f"CLIENT://{LOOPBACK}:{advertised_port},MTLS://{LOOPBACK}:{mtls_port},"
                f"INTERNAL://{LOOPBACK}:{internal_port}"
            ),
            "listener.security.protocol.map": (
                "CLIENT:SASL_SSL,MTLS:SSL,INTERNAL:SASL_SSL,CONTROLLER:SASL_SSL"
            ),
            "listener.name.mtls.ssl.client.auth": "required",
            # CN=prices-consumer (a client certificate of the run's CA) is User:prices-consumer.
            "ssl.principal.mapping.rules": "RULE:^CN=([A-Za-z0-9._-]+)$/$1/,DEFAULT",
            "inter.broker.listener.name": "INTERNAL",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.client.sasl.enabled.mechanisms": CLIENT_MECHANISM,
            "listener.name.client.scram-sha-512.sasl.jaas.config": f"{_SCRAM_MODULE} required;",
            "listener.name.internal.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.internal.plain.sasl.jaas.config": self._plain_jaas(),
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": self._plain_jaas(),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_file),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{ADMIN_USER}",
            "allow.everyone.if.no.acl.found": "false",
            "auto.create.topics.enable": "false",
        }
        if self.reauth_ms > 0:
            props[f"listener.name.client.{CLIENT_MECHANISM.lower()}.connections.max.reauth.ms"] = str(
                self.reauth_ms
            )
        return props

    def admin_config(self, bootstrap_servers: str) -> dict[str, Any]:
        """librdkafka settings of the super user, for ``bootstrap_servers`` on INTERNAL listeners."""
        return {
            "bootstrap.servers": bootstrap_servers,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "PLAIN",
            "sasl.username": ADMIN_USER,
            "sasl.password": self.admin_password,
            "ssl.ca.location": str(self.ca_file),
        }

    def ready(self, internal_port: int) -> Callable[[LocalServer], bool]:
        """A node's readiness probe: it listens on its INTERNAL port and answers the super user's
        Metadata request there, over TLS."""
        config = self.admin_config(f"{LOOPBACK}:{internal_port}")
        config.pop("bootstrap.servers")

        def ready(server: LocalServer) -> bool:
            return (
                server.pid is not None
                and listening_on(server.pid, internal_port)
                and kafka_metadata_ready(f"{LOOPBACK}:{internal_port}", timeout=2.0, **config)
            )

        return ready
