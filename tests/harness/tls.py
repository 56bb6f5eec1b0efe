"""A private certificate authority for TLS tests, and SeaweedFS serving S3 over https with a
certificate it signed.

:func:`private_ca` writes ``ca.pem`` (the authority, which no system trust store knows) and
``cert.pem``/``key.pem`` (for ``localhost``, ``127.0.0.1`` and ``::1``, signed by it).
:class:`TlsSeaweedServer` serves S3 over https on a port of its own besides the plain http
port (which its readiness probe uses); :attr:`~TlsSeaweedServer.endpoint_url` is the https one.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sdk.local_server import SeaweedServer
from sdk.local_server.ports import SeaweedPorts
from sdk.process import free_port


@dataclass(frozen=True)
class CaFiles:
    """PEM files: the authority's certificate, and a server certificate and key."""

    ca: Path
    cert: Path
    key: Path


def private_ca(directory: Path) -> CaFiles:
    """A new authority and a server certificate it signed, written under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    valid = (now - dt.timedelta(days=1), now + dt.timedelta(days=2))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "blobfs test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = CaFiles(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


class TlsSeaweedServer(SeaweedServer):
    """SeaweedFS serving S3 over https (a certificate of :func:`private_ca`) as well as http."""

    def __init__(self, directory: Path, ca: CaFiles, **kwargs: Any) -> None:
        super().__init__(directory, **kwargs)
        self.ca = ca
        self.https_port = free_port()

    def command(self, weed: Path, ports: SeaweedPorts) -> list[str]:
        return [
            *super().command(weed, ports),
            f"-s3.cert.file={self.ca.cert}",
            f"-s3.key.file={self.ca.key}",
            f"-s3.port.https={self.https_port}",
        ]

    @property
    def endpoint_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def http_endpoint_url(self) -> str:
        return super().endpoint_url


__all__ = ["CaFiles", "TlsSeaweedServer", "private_ca"]
