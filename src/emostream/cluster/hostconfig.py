"""Write everything one host of a multi-host cluster needs (``emostream kafka config``).

The properties come from the same generator as ``kafka up`` (:mod:`emostream.cluster.config`);
this module only decides file names and writes them.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from emostream.cluster.config import (
    DEFAULT_BASE_PORT,
    DEFAULT_HEAP_MB,
    LOG4J2_PROPERTIES,
    ClusterSettings,
    host_node,
    parse_voters,
    render_properties,
    server_properties,
    systemd_unit,
)
from emostream.errors import UsageError


@dataclass(frozen=True)
class HostBundle:
    """Paths of the files written for one host."""

    properties: Path
    unit: Path
    format_script: Path
    log4j: Path


def write_host_config(
    out: Path,
    node_id: int,
    controllers: str,
    advertise: str,
    cluster_id: str,
    listen: str = "0.0.0.0",
    base_port: int = DEFAULT_BASE_PORT,
    heap_mb: int = DEFAULT_HEAP_MB,
    data_dir: str = "/var/lib/emostream-kafka/data",
    install_dir: str = "/etc/emostream-kafka",
    java: str = "/usr/bin/java",
    classpath: str = "/opt/emostream/kafka/lib/*",
    user: str = "kafka",
) -> HostBundle:
    """Write server.properties, a systemd unit, a format script and a log4j2 config into ``out``.

    ``install_dir`` is where the operator copies the files on the host; the unit and the format
    script refer to the properties there.
    """
    if len(cluster_id) != 22:
        raise UsageError(f"--cluster-id must be the 22-character id every node shares (e.g. from 'emostream kafka config --new-cluster-id'), got '{cluster_id}'")
    voters = parse_voters(controllers)
    node = host_node(node_id, voters, advertise, listen, base_port, data_dir)
    props = server_properties(node, ClusterSettings(cluster_id, voters, len(voters)))
    out.mkdir(parents=True, exist_ok=True)
    installed_props = f"{install_dir}/server.properties"
    installed_log4j = f"{install_dir}/log4j2.properties"
    bundle = HostBundle(out / "server.properties", out / "emostream-kafka.service", out / "format-storage.sh", out / "log4j2.properties")
    bundle.properties.write_text(render_properties(props, header=f"node {node_id} of cluster {cluster_id}; written by 'emostream kafka config'"))
    bundle.log4j.write_text(LOG4J2_PROPERTIES)
    bundle.unit.write_text(systemd_unit(java, classpath, installed_props, heap_mb, installed_log4j, user))
    bundle.format_script.write_text(
        "#!/bin/sh\n"
        "# Run once on this host before the first start; safe to re-run (already formatted storage is kept).\n"
        "set -e\n"
        f"mkdir -p {shlex.quote(data_dir)}\n"
        f"exec {shlex.quote(java)} -cp {shlex.quote(classpath)} kafka.tools.StorageTool format "
        f"-t {shlex.quote(cluster_id)} -c {shlex.quote(installed_props)} --ignore-formatted\n"
    )
    os.chmod(bundle.format_script, 0o755)
    return bundle
