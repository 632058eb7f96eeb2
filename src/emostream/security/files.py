"""Where a secure local cluster keeps its TLS and SASL material, and making it on first use.

``<cluster dir>/security/`` (0700) holds ``ca.crt``, ``ca.key`` (0600), the brokers' shared
``broker.pem`` (key + chain, 0600, what ``ssl.keystore.location`` points at) and the admin's
client profile ``admin.json`` (0600, the only place the admin password is stored).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from emostream.security.ca import BROKER_CN, BROKER_OU, DEVICE_OU, CertificateAuthority, describe, private_dir, write_private
from emostream.security.profile import ADMIN_USER, client_profile, write_profile

SECURITY_DIR = "security"
SCRAM_MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class SecurityFiles:
    """Paths of one cluster's security material."""

    root: Path

    @classmethod
    def of_cluster(cls, cluster_dir: Path) -> "SecurityFiles":
        """The material of the cluster kept in ``cluster_dir``."""
        return cls(Path(cluster_dir).absolute() / SECURITY_DIR)

    @property
    def ca(self) -> CertificateAuthority:
        """The cluster's CA (files may not exist yet)."""
        return CertificateAuthority(self.root / "ca.crt", self.root / "ca.key")

    @property
    def broker_pem(self) -> Path:
        """Broker private key followed by its certificate and the CA certificate."""
        return self.root / "broker.pem"

    @property
    def admin_profile(self) -> Path:
        """The admin's client security profile."""
        return self.root / "admin.json"


def broker_hosts(advertise: str | None) -> list[str]:
    """Names a broker certificate must carry: loopback, this host's name, the advertised host."""
    hosts = ["localhost", "127.0.0.1", socket.gethostname()]
    if advertise:
        hosts.append(advertise)
    return hosts


def init_ca(files: SecurityFiles) -> bool:
    """Create the CA when there is none; False when one already exists (a CA is never replaced)."""
    private_dir(files.root)
    if files.ca.exists():
        return False
    CertificateAuthority.create(files.ca.cert_path, files.ca.key_path)
    return True


def issue_broker_cert(files: SecurityFiles, advertise: str | None, extra_hosts: list[str] | None = None) -> Path:
    """(Re)issue the brokers' certificate from the cluster CA into ``broker.pem``.

    The new certificate keeps every name the old one had, plus ``extra_hosts``; the CA stays,
    so clients need no change.
    """
    hosts = broker_hosts(advertise) + list(extra_hosts or [])
    if files.broker_pem.exists():
        hosts += list(describe(files.broker_pem).sans)
    key, cert = files.ca.issue(BROKER_CN, BROKER_OU, hosts, server=True)
    write_private(files.broker_pem, key + cert + files.ca.cert_pem())
    return files.broker_pem


def ensure_cluster_material(cluster_dir: Path, bootstrap: str, advertise: str | None) -> SecurityFiles:
    """Whatever is missing of CA, broker certificate and admin profile, made now; the rest kept."""
    files = SecurityFiles.of_cluster(cluster_dir)
    init_ca(files)
    if not files.broker_pem.exists():
        issue_broker_cert(files, advertise)
    if not files.admin_profile.exists():
        profile = client_profile(bootstrap, ADMIN_USER, secrets.token_urlsafe(24), str(files.ca.cert_path))
        write_profile(files.admin_profile, profile)
    return files


def issue_device_cert(files: SecurityFiles, device: str, out_dir: Path) -> tuple[Path, Path]:
    """A client certificate for ``device`` (optional mTLS on the client listener): (cert, key) paths."""
    key, cert = files.ca.issue(device, DEVICE_OU, [], server=False)
    private_dir(out_dir)
    key_path, cert_path = out_dir / f"{device}.key", out_dir / f"{device}.crt"
    write_private(key_path, key)
    cert_path.write_bytes(cert + files.ca.cert_pem())
    return cert_path, key_path


@contextlib.contextmanager
def scram_format_args(files: SecurityFiles, password: str) -> Iterator[list[str]]:
    """StorageTool arguments that create the admin's SCRAM credential at format time.

    The password goes into a 0600 argument file that the ``java`` launcher expands
    (``@file``), so it never appears on a command line that ``ps`` shows; the file is removed
    afterwards.
    """
    path = files.root / f".format-{os.getpid()}-{secrets.token_hex(4)}.args"
    write_private(path, f"--add-scram\n{SCRAM_MECHANISM}=[name={ADMIN_USER},password={password}]\n".encode())
    try:
        yield [f"@{path}"]
    finally:
        path.unlink(missing_ok=True)
