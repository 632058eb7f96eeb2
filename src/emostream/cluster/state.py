"""The local cluster's record on disk (``cluster.json``): what was started where."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from emostream.cluster.config import DEFAULT_REAUTH_S, NodeSpec, local_nodes, secure_node
from emostream.cluster.private import private_dir, write_private
from emostream.config import local_bootstrap_path
from emostream.errors import ClusterError

STATE_FILE = "cluster.json"
STATE_VERSION = 1


@dataclass(frozen=True)
class ClusterState:
    """Fixed at first ``kafka up``; a restart of the same folder reuses it (same ports, same data)."""

    cluster_id: str
    kafka_version: str
    brokers: int
    base_port: int
    heap_mb: int
    advertise: str | None = None
    secure: bool = False
    reauth_s: int = DEFAULT_REAUTH_S  # secure only: client session lifetime; may change at a restart
    version: int = STATE_VERSION

    def nodes(self, directory: Path) -> list[NodeSpec]:
        """The node specs this state describes."""
        nodes = local_nodes(self.brokers, directory, self.base_port, self.advertise)
        if self.secure:
            nodes = [secure_node(n) for n in nodes]
        return nodes

    def bootstrap(self, directory: Path) -> str:
        """Comma-separated client addresses of every node."""
        return ",".join(f"{n.client.advertised_host}:{n.client.port}" for n in self.nodes(directory))


def load_state(directory: Path) -> ClusterState | None:
    """The saved state of ``directory``, or None when no cluster was made there."""
    path = directory / STATE_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return ClusterState(**data)
    except (OSError, json.JSONDecodeError, TypeError) as exc:
        raise ClusterError(f"{path} is damaged ({exc}); remove the folder {directory} to start a new cluster") from exc


def save_state(directory: Path, state: ClusterState) -> None:
    """Write the state atomically (0600; a new folder is made 0700), and publish the bootstrap."""
    private_dir(directory)
    write_private(directory / STATE_FILE, (json.dumps(asdict(state), indent=2) + "\n").encode())
    publish_bootstrap(directory, state)


def publish_bootstrap(directory: Path, state: ClusterState) -> None:
    """Write the clients' address where :func:`emostream.kafka.configuration.read_local_bootstrap`
    finds it (it cannot read ``cluster.json``: the kafka layer knows nothing of clusters)."""
    path = local_bootstrap_path(directory)
    wanted = state.bootstrap(directory) + "\n"
    if not path.exists() or path.read_text() != wanted:
        write_private(path, wanted.encode())
