"""A secure cluster's TLS and SASL material: where it is kept, and making it on first use.

``<cluster dir>/security/`` (0700) holds ``ca.crt``, ``ca.key`` (0600), the local nodes' shared
``broker.pem`` (key + chain, 0600, what ``ssl.keystore.location`` points at) and the admin's
client profile ``admin.json`` (0600, the only place the admin password is stored).

A host of a multi-host cluster gets its own ``broker.pem`` (issued for its names by
:func:`issue_host_cert`) and a copy of ``ca.crt``, under the same names in its install folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emostream.cluster.config import ADMIN_USER, BROKER_CN, BROKER_OU, SASL_MECHANISM
from emostream.cluster.private import private_dir, write_private
from emostream.cluster.tls import CertificateAuthority, describe
from emostream.errors import ConfigError, UsageError
from emostream.kafka.configuration import read_security_profile

SECURITY_DIR = "security"
NODE_KEYSTORE = "broker.pem"  # key + certificate + CA, as Kafka's PEM keystore reads it
CA_CERT = "ca.crt"
SCRAM_MECHANISM = SASL_MECHANISM


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
        return CertificateAuthority(self.root / CA_CERT, self.root / "ca.key")

    @property
    def broker_pem(self) -> Path:
        """Local nodes' private key followed by their certificate and the CA certificate."""
        return self.root / NODE_KEYSTORE

    @property
    def admin_profile(self) -> Path:
        """The admin's client security profile."""
        return self.root / "admin.json"


def broker_hosts(advertise: str | None) -> list[str]:
    """Names a local broker certificate must carry: loopback, this host's name, the advertised host."""
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


def _write_keystore(files: SecurityFiles, path: Path, hosts: list[str]) -> Path:
    key, cert = files.ca.issue(BROKER_CN, BROKER_OU, hosts, server=True)
    write_private(path, key + cert + files.ca.cert_pem())
    return path


def issue_broker_cert(files: SecurityFiles, advertise: str | None, extra_hosts: list[str] | None = None) -> Path:
    """(Re)issue the local nodes' certificate from the cluster CA into ``broker.pem``.

    The new certificate keeps every name the old one had, plus ``extra_hosts``; the CA stays,
    so clients need no change.
    """
    hosts = broker_hosts(advertise) + list(extra_hosts or [])
    if files.broker_pem.exists():
        hosts += list(describe(files.broker_pem).sans)
    return _write_keystore(files, files.broker_pem, hosts)


def issue_host_cert(files: SecurityFiles, names: list[str], out_dir: Path) -> tuple[Path, Path]:
    """A node certificate for one host of a multi-host cluster: (``broker.pem``, ``ca.crt``) in ``out_dir``.

    ``names`` (DNS names or IPs) are every address clients and the other nodes use for this host:
    they verify it. The subject is the nodes' shared one, so the host acts as ``User:broker``.
    ``out_dir`` is created 0700 when missing; an existing folder keeps its mode.
    """
    if not names:
        raise UsageError("a host certificate needs the host's name or IP (--host NAME, --ip IP)")
    if not files.ca.exists():
        raise UsageError(f"no CA in {files.root}; create one with 'emostream certs init --dir {files.root.parent}'")
    private_dir(out_dir)
    keystore = _write_keystore(files, out_dir / NODE_KEYSTORE, names)
    ca = out_dir / CA_CERT
    ca.write_bytes(files.ca.cert_pem())
    return keystore, ca


def _admin_profile(bootstrap: str, password: str, ca_file: str) -> dict[str, Any]:
    # The keys of a client security profile (see emostream.security.profile.client_profile).
    return {"bootstrap": bootstrap, "security_protocol": "SASL_SSL", "sasl_mechanism": SASL_MECHANISM,
            "username": ADMIN_USER, "password": password, "ca_file": ca_file}


def ensure_admin_profile(files: SecurityFiles, bootstrap: str) -> Path:
    """The admin's profile (a random password, 0600), made now unless it exists."""
    if not files.admin_profile.exists():
        profile = _admin_profile(bootstrap, secrets.token_urlsafe(24), str(files.ca.cert_path))
        write_private(files.admin_profile, (json.dumps(profile, indent=2) + "\n").encode())
    return files.admin_profile


def admin_password(files: SecurityFiles) -> str:
    """The admin password kept in the admin profile; UsageError when there is none."""
    try:
        return read_security_profile(files.admin_profile)["password"]
    except (ConfigError, KeyError) as exc:
        raise UsageError(f"no readable admin profile at {files.admin_profile} ({exc}); "
                         "a secure cluster makes one ('emostream kafka up --secure' or 'kafka config --secure')") from exc


def ensure_cluster_material(cluster_dir: Path, bootstrap: str, advertise: str | None) -> SecurityFiles:
    """Whatever is missing of CA, broker certificate and admin profile, made now; the rest kept."""
    files = SecurityFiles.of_cluster(cluster_dir)
    init_ca(files)
    if not files.broker_pem.exists():
        issue_broker_cert(files, advertise)
    ensure_admin_profile(files, bootstrap)
    return files


def scram_args_text(password: str) -> str:
    """The StorageTool arguments that create the admin's SCRAM credential at format time."""
    return f"--add-scram\n{SCRAM_MECHANISM}=[name={ADMIN_USER},password={password}]\n"


@contextlib.contextmanager
def scram_format_args(files: SecurityFiles, password: str) -> Iterator[list[str]]:
    """StorageTool arguments that create the admin's SCRAM credential at format time.

    The password goes into a 0600 argument file that the ``java`` launcher expands
    (``@file``), so it never appears on a command line that ``ps`` shows; the file is removed
    afterwards.
    """
    path = files.root / f".format-{os.getpid()}-{secrets.token_hex(4)}.args"
    write_private(path, scram_args_text(password).encode())
    try:
        yield [f"@{path}"]
    finally:
        path.unlink(missing_ok=True)
