"""Throwaway certificates: a CA, and a server certificate it signed, as PEM files.

For every TLS server the tests run (the broker's TLS port, a PostgreSQL stand-in, a webhook
receiver): the code under test verifies them only against the CA given to it.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Pki:
    """The files of one :func:`make_pki`."""

    ca: Path  # the CA's certificate: what a client is told to trust
    cert: Path  # the server's certificate
    key: Path  # the server's private key, PKCS#8 (as the broker wants it)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _subject_alternative_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def make_pki(directory: Path, host: str, tag: str, valid_days: int = 30) -> Pki:
    """A CA named after ``tag`` and a server certificate it signed for ``host`` (an IP
    address, or a DNS name), valid from yesterday for ``valid_days``; files named after
    ``tag`` in ``directory``, so several can live side by side."""
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=valid_days)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(f"tuya-events test CA {tag}"))
        .issuer_name(_name(f"tuya-events test CA {tag}"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(host))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName([_subject_alternative_name(host)]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(
        directory / f"ca-{tag}.pem", directory / f"server-{tag}.pem", directory / f"{tag}.key"
    )
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pki
