"""Certificate files for the security commands: the cluster's material, and device certificates.

The cluster's own material (CA, node certificates, admin profile) is made by
:mod:`emostream.cluster.material`, because a secure cluster needs it to start; device
certificates are a security feature on top of the same CA.
"""

from __future__ import annotations

from pathlib import Path

from emostream.cluster.material import (
    SCRAM_MECHANISM,
    SECURITY_DIR,
    SecurityFiles,
    broker_hosts,
    ensure_cluster_material,
    init_ca,
    issue_broker_cert,
    issue_host_cert,
    scram_format_args,
)
from emostream.cluster.private import private_dir, write_private
from emostream.cluster.tls import DEVICE_OU

__all__ = ["SCRAM_MECHANISM", "SECURITY_DIR", "SecurityFiles", "broker_hosts", "ensure_cluster_material", "init_ca",
           "issue_broker_cert", "issue_device_cert", "issue_host_cert", "scram_format_args"]


def issue_device_cert(files: SecurityFiles, device: str, out_dir: Path) -> tuple[Path, Path]:
    """A client certificate for ``device`` (optional mTLS on the client listener): (cert, key) paths.

    ``out_dir`` is created 0700 when missing; an existing folder keeps its mode (the key is 0600).
    """
    key, cert = files.ca.issue(device, DEVICE_OU, [], server=False)
    private_dir(out_dir)
    key_path, cert_path = out_dir / f"{device}.key", out_dir / f"{device}.crt"
    write_private(key_path, key)
    cert_path.write_bytes(cert + files.ca.cert_pem())
    return cert_path, key_path
