"""Write everything one host of a multi-host cluster needs (``emostream kafka config``).

The properties come from the same generator as ``kafka up`` (:mod:`emostream.cluster.config`);
this module only decides file names and writes them.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path

from emostream.cluster.config import (
    DEFAULT_BASE_PORT,
    DEFAULT_HEAP_MB,
    DEFAULT_REAUTH_S,
    LOG4J2_PROPERTIES,
    ClusterSettings,
    host_node,
    parse_voters,
    render_properties,
    secure_node,
    secure_properties,
    server_properties,
    systemd_unit,
)
from emostream.cluster.material import CA_CERT, NODE_KEYSTORE, SecurityFiles, admin_password, ensure_admin_profile, scram_args_text
from emostream.cluster.private import private_dir, write_private
from emostream.errors import UsageError

# A KRaft cluster id: a UUID as 22 characters of URL-safe base64 without padding.
_CLUSTER_ID = re.compile(r"[A-Za-z0-9_-]{21}[AQgw]")

SCRAM_ARGS = "format-scram.args"


@dataclass(frozen=True)
class HostOptions:
    """Everything ``kafka config`` needs to know about one host of a multi-host cluster."""

    node_id: int
    controllers: str  # ID@HOST:PORT,... of every node
    advertise: str
    cluster_id: str
    listen: str = "0.0.0.0"
    base_port: int = DEFAULT_BASE_PORT
    heap_mb: int = DEFAULT_HEAP_MB
    data_dir: str = "/var/lib/emostream-kafka/data"
    install_dir: str = "/etc/emostream-kafka"  # where the operator copies the files on the host
    java: str = "/usr/bin/java"
    classpath: str = "/opt/emostream/kafka/lib/*"
    user: str = "kafka"
    # Secure: SASL_SSL clients, mTLS between nodes; needs the admin password for format time.
    secure: bool = False
    reauth_s: int = DEFAULT_REAUTH_S
    admin_password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class HostBundle:
    """Paths of the files written for one host."""

    properties: Path
    unit: Path
    format_script: Path
    log4j: Path
    scram_args: Path | None = None  # secure only: the admin credential for format time (0600)


def write_host_config(out: Path, options: HostOptions) -> HostBundle:
    """Write server.properties, a systemd unit, a format script and a log4j2 config into ``out``.

    The unit and the format script refer to the files in ``options.install_dir``. A secure host
    also reads ``broker.pem`` and ``ca.crt`` there ('emostream certs issue --host'), and its
    format script adds the admin's SCRAM credential from a 0600 argument file it deletes after use.
    """
    o = options
    if not _CLUSTER_ID.fullmatch(o.cluster_id):
        raise UsageError(f"--cluster-id must be the 22-character id (URL-safe base64 of a UUID) every node shares (e.g. from 'emostream kafka config --new-cluster-id'), got '{o.cluster_id}'")
    if o.secure and not o.admin_password:
        raise UsageError("a secure host config needs the admin password (from the admin profile) for its format script")
    voters = parse_voters(o.controllers)
    node = host_node(o.node_id, voters, o.advertise, o.listen, o.base_port, o.data_dir)
    overrides: dict[str, str] = {}
    if o.secure:
        node = secure_node(node)
        overrides = secure_properties(node, f"{o.install_dir}/{NODE_KEYSTORE}", f"{o.install_dir}/{CA_CERT}", o.reauth_s)
    props = server_properties(node, ClusterSettings(o.cluster_id, voters, len(voters), overrides))
    private_dir(out)
    installed_props = f"{o.install_dir}/server.properties"
    installed_log4j = f"{o.install_dir}/log4j2.properties"
    bundle = HostBundle(out / "server.properties", out / "emostream-kafka.service", out / "format-storage.sh", out / "log4j2.properties",
                        out / SCRAM_ARGS if o.secure else None)
    header = f"node {o.node_id} of cluster {o.cluster_id}; written by 'emostream kafka config'"
    # No secret in these three: they keep the usual modes, so the broker's user can read the copies.
    bundle.properties.write_text(render_properties(props, header=header))
    bundle.log4j.write_text(LOG4J2_PROPERTIES)
    bundle.unit.write_text(systemd_unit(o.java, o.classpath, installed_props, o.heap_mb, installed_log4j, o.user))
    if bundle.scram_args is not None and o.admin_password:
        write_private(bundle.scram_args, scram_args_text(o.admin_password).encode())
    bundle.format_script.write_text(format_script(o, installed_props))
    os.chmod(bundle.format_script, 0o755)
    return bundle


def with_admin_credential(options: HostOptions, files: SecurityFiles) -> HostOptions:
    """Secure ``options`` carrying the admin password of ``files``' admin profile (made now if missing).

    Every host's format script adds the same admin credential; the profile's bootstrap lists
    every controller host on the client port, which is where a host's clients connect.
    """
    if not files.ca.exists():
        raise UsageError(f"no CA in {files.root}; create it once with 'emostream certs init --dir {files.root.parent}', "
                         "then issue each host's certificate with 'emostream certs issue --host NAME --ip IP --out DIR'")
    bootstrap = ",".join(f"{v.host}:{options.base_port}" for v in parse_voters(options.controllers))
    ensure_admin_profile(files, bootstrap)
    return replace(options, secure=True, admin_password=admin_password(files))


def format_script(o: HostOptions, installed_props: str) -> str:
    """The shell script that formats the host's storage once (and, secure, adds the admin credential)."""
    fmt = (f"{shlex.quote(o.java)} -cp {shlex.quote(o.classpath)} kafka.tools.StorageTool format "
           f"{shlex.quote('--cluster-id=' + o.cluster_id)} -c {shlex.quote(installed_props)} --ignore-formatted")
    lines = [
        "#!/bin/sh",
        "# Run once on this host before the first start; safe to re-run (already formatted storage is kept).",
        "set -e",
        "umask 077",
        f"mkdir -p {shlex.quote(o.data_dir)}",
    ]
    if not o.secure:
        return "\n".join([*lines, f"exec {fmt}"]) + "\n"
    # The java launcher expands @FILE, so the password is never on a command line; the file
    # goes once the credential is in the metadata.
    args = shlex.quote(f"{o.install_dir}/{SCRAM_ARGS}")
    return "\n".join([
        *lines,
        f"if [ -f {args} ]; then",
        f"  {fmt} @{args}",
        f"  rm -f {args}",
        "else",
        f"  {fmt}",
        "fi",
    ]) + "\n"
