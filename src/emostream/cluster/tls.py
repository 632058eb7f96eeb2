"""A small certificate authority: one CA key, node and device certificates, all PEM.

It lives with the cluster because a secure cluster cannot start without it; ``emostream.security``
builds device-facing commands on top of it.

Kafka reads PEM directly (``ssl.keystore.type=PEM``), so no Java keystore or ``keytool`` is
involved. Keys are ECDSA P-256: small, fast on a Raspberry Pi, accepted by Java and librdkafka.
Private keys are only ever written to files with mode 0600; nothing here prints them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from emostream.cluster.config import ORG
from emostream.cluster.private import write_private
from emostream.errors import ConfigError

DEVICE_OU = "devices"
CA_DAYS = 3650
LEAF_DAYS = 825  # the longest validity common TLS clients still accept for a leaf


@dataclass(frozen=True)
class CertInfo:
    """What ``certs show`` prints about one certificate: never key material."""

    path: str
    subject: str
    issuer: str
    not_after: str
    sans: tuple[str, ...]
    sha256: str

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        return {"path": self.path, "subject": self.subject, "issuer": self.issuer, "not_after": self.not_after,
                "sans": list(self.sans), "sha256": self.sha256}


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # PKCS#8, unencrypted: Kafka's PEM keystore reads PKCS#8 only; the file mode protects it.
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(cn: str, ou: str | None = None) -> x509.Name:
    # Built O, OU, CN so that the RFC 2253 form Java shows (most specific first) is "CN=..,OU=..,O=..".
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG)]
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA key and certificate kept as two files; ``key.pem`` is 0600."""

    cert_path: Path
    key_path: Path

    @classmethod
    def create(cls, cert_path: Path, key_path: Path) -> "CertificateAuthority":
        """Make a new CA (a fresh key, a self-signed certificate valid ten years)."""
        key = _new_key()
        name = _name(f"emostream local CA {secrets.token_hex(4)}")
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        write_private(key_path, _key_pem(key))
        cert_path.write_bytes(_cert_pem(cert))
        return cls(cert_path, key_path)

    def exists(self) -> bool:
        """True when both files are there."""
        return self.cert_path.exists() and self.key_path.exists()

    def _load(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        if not self.exists():
            raise ConfigError(f"no CA at {self.cert_path}; create one with 'emostream certs init'")
        cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{self.key_path} is not an EC key made by 'emostream certs init'")
        return cert, key

    def issue(self, cn: str, ou: str, hosts: list[str], server: bool) -> tuple[bytes, bytes]:
        """A new leaf key and certificate signed by this CA: (key PEM, certificate PEM).

        ``hosts`` become subjectAltNames (IP or DNS). A server certificate may also act as a
        client (brokers connect to each other with it); a device certificate is client-only.
        """
        ca_cert, ca_key = self._load()
        key = _new_key()
        now = _now()
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, ou))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(min(now + dt.timedelta(days=LEAF_DAYS), ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if hosts:
            builder = builder.add_extension(x509.SubjectAlternativeName([_san(h) for h in dict.fromkeys(hosts)]), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return _key_pem(key), _cert_pem(cert)

    def cert_pem(self) -> bytes:
        """The CA certificate (public), for trust stores and client profiles."""
        return self.cert_path.read_bytes()


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return x509.DNSName(host)


def describe(path: Path) -> CertInfo:
    """Subject, issuer, expiry, SANs and fingerprint of the first certificate in ``path``."""
    cert = x509.load_pem_x509_certificate(_first_cert(path.read_bytes()))
    try:
        sans = tuple(str(v) for v in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                     .get_values_for_type(x509.DNSName)) + tuple(
            str(v) for v in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            .get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        sans = ()
    return CertInfo(str(path), cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(),
                    cert.not_valid_after_utc.isoformat(), sans, cert.fingerprint(hashes.SHA256()).hex(":"))


def _first_cert(data: bytes) -> bytes:
    start = data.index(b"-----BEGIN CERTIFICATE-----")
    end = data.index(b"-----END CERTIFICATE-----", start) + len(b"-----END CERTIFICATE-----")
    return data[start:end]
