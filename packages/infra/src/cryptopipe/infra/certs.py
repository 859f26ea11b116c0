"""TLS certificates made for one run: a private CA and server certificates it signs, as PEM files.

Made with the ``cryptography`` package (ECDSA P-256, valid for a day), for local servers that
speak TLS (Redis' ``tls-port``, Kafka's listeners), and client certificates for servers that
authenticate clients by TLS (Kafka's mTLS listener). The CA's key stays in memory: only the CA
certificate (what a client trusts), each certificate and each key (mode 0600) are written.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cryptopipe.runtime import write_private

_VALID = datetime.timedelta(days=1)


@dataclass(frozen=True)
class ServerCert:
    """PEM files for one TLS server: its certificate and key, and the CA that signed it."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, data: bytes, mode: int) -> Path:
    return write_private(path, data, mode=mode)


def _alt_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


class CertificateAuthority:
    """A throwaway CA: signs server certificates for the hosts a run's servers listen on."""

    def __init__(self, name: str = "cryptopipe run CA") -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALID)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(*_CA_USAGE), critical=True)
            .sign(self._key, hashes.SHA256())
        )

    def write_ca(self, path: Path) -> Path:
        """The CA certificate (public: what clients trust) as PEM at ``path``."""
        return _write(path, self.certificate.public_bytes(serialization.Encoding.PEM), 0o644)

    def issue(
        self, directory: Path, name: str, hosts: Sequence[str] = ("127.0.0.1", "localhost")
    ) -> ServerCert:
        """A server certificate for ``hosts`` (its subject alternative names) and its key, written to
        ``directory`` as ``<name>.crt`` and ``<name>.key`` (0600), with the CA as ``ca.crt``."""
        return self._issue(directory, name, ExtendedKeyUsageOID.SERVER_AUTH, hosts)

    def issue_client(self, directory: Path, name: str) -> ServerCert:
        """A client certificate whose subject is ``CN=<name>`` (a server maps it to its principal)
        and its key, written to ``directory`` as ``<name>.crt`` and ``<name>.key`` (0600)."""
        return self._issue(directory, name, ExtendedKeyUsageOID.CLIENT_AUTH, ())

    def _issue(
        self, directory: Path, name: str, usage: x509.ObjectIdentifier, hosts: Sequence[str]
    ) -> ServerCert:
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALID)
        )
        if hosts:
            builder = builder.add_extension(x509.SubjectAlternativeName(_alt_names(hosts)), critical=False)
        cert = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return ServerCert(
            ca_file=self.write_ca(directory / "ca.crt"),
            cert_file=_write(directory / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644),
            key_file=_write(directory / f"{name}.key", key_pem, 0o600),
        )


# digital_signature, content_commitment, key_encipherment, data_encipherment, key_agreement,
# key_cert_sign, crl_sign, encipher_only, decipher_only
_CA_USAGE = (True, False, False, False, False, True, True, False, False)
