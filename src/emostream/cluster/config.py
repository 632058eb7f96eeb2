"""KRaft broker configuration, generated as data. Pure: no files, no processes.

One generator serves every deployment: ``kafka up`` (all nodes on one host) and
``kafka config`` (one host of a multi-host cluster) both build :class:`NodeSpec` values and
render them with :func:`server_properties`. Listeners are data too, so a secured listener is
one more :class:`Listener`, not a second template.

Port layout of a local cluster with base port B (default 9092): node i serves clients on
B+i, its controller on B+100+i and broker-to-broker traffic on B+200+i.

A secure node (``kafka up --secure``, ``kafka config --secure``) is the plaintext node with a
SASL_SSL client listener (SCRAM-SHA-512 over TLS 1.2/1.3) and SSL internal and controller
listeners that require client certificates (mTLS): every node presents a certificate whose
subject maps to ``User:broker``, so no password is involved between nodes.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from emostream.errors import UsageError
from emostream.kafka.configuration import SCRAM_MECHANISM

CONTROLLER_OFFSET = 100
INTERNAL_OFFSET = 200
DEFAULT_BASE_PORT = 9092
DEFAULT_HEAP_MB = 512
LOCAL_HOST = "127.0.0.1"

# Secure clusters. The names are the broker's side of the contract with client profiles.
ADMIN_USER = "admin"
BROKER_PRINCIPAL = "broker"
ORG = "emostream"
BROKER_CN = "emostream-broker"  # every node's certificate subject: CN=emostream-broker,OU=brokers,O=emostream
BROKER_OU = "brokers"
SASL_MECHANISM = SCRAM_MECHANISM  # defined once, with the client profiles
SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
TLS_PROTOCOLS = "TLSv1.3,TLSv1.2"
# A client must log in again this often, so a rotated or removed password is cut off within it.
DEFAULT_REAUTH_S = 60

# Logs go to stdout; the launcher (kafka up, systemd) decides where stdout is kept.
LOG4J2_PROPERTIES = """status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
"""


@dataclass(frozen=True)
class Listener:
    """One Kafka listener: name, security protocol, where it binds, what it advertises."""

    name: str
    protocol: str
    bind_host: str
    port: int
    advertised_host: str | None = None  # None: not advertised (controller listeners)

    def bind(self) -> str:
        """``NAME://host:port`` for ``listeners``."""
        return f"{self.name}://{self.bind_host}:{self.port}"

    def advertised(self) -> str | None:
        """``NAME://host:port`` for ``advertised.listeners``, or None."""
        if self.advertised_host is None:
            return None
        return f"{self.name}://{self.advertised_host}:{self.port}"


@dataclass(frozen=True)
class Voter:
    """A member of the controller quorum."""

    node_id: int
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.node_id}@{self.host}:{self.port}"


@dataclass(frozen=True)
class NodeSpec:
    """Everything that differs between nodes: id, listeners, log dir."""

    node_id: int
    client: Listener
    internal: Listener
    controller: Listener
    log_dir: str
    extra_listeners: tuple[Listener, ...] = ()

    @property
    def listeners(self) -> tuple[Listener, ...]:
        """All listeners, client first."""
        return (self.client, *self.extra_listeners, self.internal, self.controller)


@dataclass(frozen=True)
class ClusterSettings:
    """Settings shared by every node of one cluster."""

    cluster_id: str
    voters: tuple[Voter, ...]
    brokers: int
    overrides: dict[str, str] = field(default_factory=dict)

    @property
    def replication(self) -> int:
        """Replication for internal topics and the default for new topics: min(3, brokers)."""
        return default_replication(self.brokers)


def default_replication(live_brokers: int) -> int:
    """min(3, brokers): three copies where possible, never more than there are brokers."""
    return max(1, min(3, live_brokers))


def default_min_insync(replication: int) -> int:
    """max(1, R-1): one replica may be down and ``acks=all`` writes still succeed."""
    return max(1, replication - 1)


def new_cluster_id() -> str:
    """A random KRaft cluster id (22-char URL-safe base64 of a UUID, as kafka-storage makes).

    Like Kafka's own ``Uuid.randomUuid()`` it never starts with '-': one in 64 would, and a
    command line such as ``kafka-storage format -t -X...`` or ``--cluster-id -X...`` then reads
    the id as an option ("expected one argument").
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def local_nodes(
    brokers: int,
    data_dir: Path,
    base_port: int = DEFAULT_BASE_PORT,
    advertise: str | None = None,
) -> list[NodeSpec]:
    """Node specs for ``brokers`` nodes on this host.

    Without ``advertise`` the client listener binds loopback only. With it, the client listener
    binds all interfaces and advertises ``advertise`` so devices elsewhere can connect; the
    controller and inter-broker listeners stay on loopback either way.
    """
    client_bind = "0.0.0.0" if advertise else LOCAL_HOST
    client_host = advertise or LOCAL_HOST
    nodes = []
    for i in range(brokers):
        nodes.append(
            NodeSpec(
                node_id=i,
                client=Listener("CLIENT", "PLAINTEXT", client_bind, base_port + i, client_host),
                internal=Listener("INTERNAL", "PLAINTEXT", LOCAL_HOST, base_port + INTERNAL_OFFSET + i, LOCAL_HOST),
                controller=Listener("CONTROLLER", "PLAINTEXT", LOCAL_HOST, base_port + CONTROLLER_OFFSET + i),
                log_dir=str(data_dir / f"node-{i}" / "data"),
            )
        )
    return nodes


def voters_of(nodes: list[NodeSpec]) -> tuple[Voter, ...]:
    """The controller quorum when every node is also a controller."""
    return tuple(Voter(n.node_id, n.controller.advertised_host or n.controller.bind_host, n.controller.port) for n in nodes)


def server_properties(node: NodeSpec, cluster: ClusterSettings) -> dict[str, str]:
    """The ``server.properties`` of one combined broker+controller node, as an ordered dict."""
    r = cluster.replication
    props: dict[str, str] = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": ",".join(str(v) for v in cluster.voters),
        "listeners": ",".join(listener.bind() for listener in node.listeners),
        "advertised.listeners": ",".join(a for a in (listener.advertised() for listener in node.listeners) if a),
        "listener.security.protocol.map": ",".join(f"{listener.name}:{listener.protocol}" for listener in node.listeners),
        "inter.broker.listener.name": node.internal.name,
        "controller.listener.names": node.controller.name,
        "log.dirs": node.log_dir,
        # Durability: what the original 2-broker setup lacked.
        "default.replication.factor": str(r),
        "min.insync.replicas": str(default_min_insync(r)),
        "unclean.leader.election.enable": "false",
        "offsets.topic.replication.factor": str(r),
        "transaction.state.log.replication.factor": str(r),
        "transaction.state.log.min.isr": str(default_min_insync(r)),
        "share.coordinator.state.topic.replication.factor": str(r),
        "share.coordinator.state.topic.min.isr": str(default_min_insync(r)),
        # Topics are created on purpose (emostream topics ...), never by a typo in a client.
        "auto.create.topics.enable": "false",
        # Small-machine settings: three nodes must fit on two cores.
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.replica.fetchers": "1",
        "background.threads": "4",
        "log.cleaner.threads": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.num.partitions": "10",
        "group.initial.rebalance.delay.ms": "0",
        "log.segment.bytes": str(128 * 1024 * 1024),
    }
    props.update(cluster.overrides)
    return props


def render_properties(props: dict[str, str], header: str = "") -> str:
    """Java properties text (keys in insertion order)."""
    lines = [f"# {line}" for line in header.splitlines()] if header else []
    lines += [f"{k}={_escape(v)}" for k, v in props.items()]
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def jvm_options(heap_mb: int = DEFAULT_HEAP_MB) -> list[str]:
    """JVM flags for one node: a capped heap and a collector suited to a small machine."""
    return [
        f"-Xmx{heap_mb}m",
        f"-Xms{min(heap_mb, 128)}m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
    ]


def with_client_listener(node: NodeSpec, listener: Listener) -> NodeSpec:
    """The same node with its client listener replaced (e.g. by a SASL_SSL one)."""
    return replace(node, client=listener)


# ---- secure nodes -------------------------------------------------------------------------


def secure_node(node: NodeSpec) -> NodeSpec:
    """The same node with a SASL_SSL client listener and SSL internal and controller listeners."""
    node = with_client_listener(node, replace(node.client, protocol="SASL_SSL"))
    return replace(node, internal=replace(node.internal, protocol="SSL"), controller=replace(node.controller, protocol="SSL"))


def broker_principal_rule() -> str:
    """``ssl.principal.mapping.rules``: the node certificate's subject → ``broker``; others keep their DN."""
    return f"RULE:^CN={BROKER_CN},OU={BROKER_OU},O={ORG}$/{BROKER_PRINCIPAL}/,DEFAULT"


def secure_properties(node: NodeSpec, keystore: Path | str, truststore: Path | str, reauth_s: int = DEFAULT_REAUTH_S) -> dict[str, str]:
    """Properties to add to ``server_properties`` for a secured node (``ClusterSettings.overrides``).

    ``keystore`` is the node's PEM key + chain, ``truststore`` the CA certificate (PEM).
    ``reauth_s`` bounds how long a client session outlives a password change or removal.
    """
    if reauth_s < 1:
        raise UsageError(f"--reauth-s must be at least 1 second, got {reauth_s}")
    client = f"listener.name.{node.client.name.lower()}"
    mechanism = f"{client}.{SASL_MECHANISM.lower()}"
    return {
        # One PEM key+chain and one PEM trust store for every SSL listener, in and out.
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(truststore),
        "ssl.enabled.protocols": TLS_PROTOCOLS,
        "ssl.protocol": "TLSv1.3",
        "ssl.endpoint.identification.algorithm": "https",
        # Internal and controller listeners: mTLS, the certificate names the principal.
        "ssl.client.auth": "required",
        "ssl.principal.mapping.rules": broker_principal_rule(),
        # Client listener: SCRAM names the principal; a device may add a client certificate.
        f"{client}.ssl.client.auth": "requested",
        "sasl.enabled.mechanisms": SASL_MECHANISM,
        f"{client}.sasl.enabled.mechanisms": SASL_MECHANISM,
        f"{mechanism}.sasl.jaas.config": f"{SCRAM_LOGIN_MODULE} required;",
        # Without a session lifetime a logged-in client keeps its connection for ever, whatever
        # happens to its password. With one, it must log in again (and fail) within reauth_s.
        f"{mechanism}.connections.max.reauth.ms": str(reauth_s * 1000),
        # Deny by default; only the admin and the nodes themselves bypass ACLs.
        "authorizer.class.name": AUTHORIZER,
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{ADMIN_USER};User:{BROKER_PRINCIPAL}",
    }


# ---- one host of a multi-host cluster (``emostream kafka config``) ------------------------


def parse_voters(spec: str) -> tuple[Voter, ...]:
    """``0@10.0.0.1:9192,1@10.0.0.2:9192`` → voters; UsageError naming the bad entry."""
    voters = []
    for entry in (e.strip() for e in spec.split(",") if e.strip()):
        try:
            node, address = entry.split("@", 1)
            host, port = address.rsplit(":", 1)
            voters.append(Voter(int(node), host.strip("[]"), int(port)))
        except ValueError:
            raise UsageError(f"--controllers entry '{entry}' is not ID@HOST:PORT (e.g. 0@10.0.0.1:9192)") from None
    if not voters:
        raise UsageError("--controllers needs at least one ID@HOST:PORT")
    ids = [v.node_id for v in voters]
    if len(set(ids)) != len(ids):
        raise UsageError(f"--controllers lists a node id twice: {ids}")
    return tuple(voters)


def host_node(
    node_id: int,
    voters: tuple[Voter, ...],
    advertise: str,
    listen: str = "0.0.0.0",
    base_port: int = DEFAULT_BASE_PORT,
    data_dir: str = "/var/lib/emostream-kafka/data",
) -> NodeSpec:
    """The node that runs on one host of a multi-host cluster.

    Every host uses the same ports as node 0 of a local cluster (clients B, controller B+100,
    brokers B+200), and its controller port must match its entry in ``voters``.
    """
    mine = [v for v in voters if v.node_id == node_id]
    if not mine:
        raise UsageError(f"--node-id {node_id} is not in --controllers ({', '.join(str(v) for v in voters)})")
    controller_port = mine[0].port
    return NodeSpec(
        node_id=node_id,
        client=Listener("CLIENT", "PLAINTEXT", listen, base_port, advertise),
        internal=Listener("INTERNAL", "PLAINTEXT", listen, base_port + INTERNAL_OFFSET, advertise),
        controller=Listener("CONTROLLER", "PLAINTEXT", listen, controller_port),
        log_dir=data_dir,
    )


def systemd_unit(
    java: str, classpath: str, config_path: str, heap_mb: int = DEFAULT_HEAP_MB, log4j: str | None = None, user: str = "kafka"
) -> str:
    """A systemd unit that runs one Kafka node with our JVM options and a restart policy."""
    opts = " ".join(jvm_options(heap_mb))
    log_opt = f" -Dlog4j2.configurationFile={log4j}" if log4j else ""
    return f"""[Unit]
Description=Apache Kafka (KRaft) node, configured by emostream
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User={user}
ExecStart={java} {opts}{log_opt} -cp "{classpath}" kafka.Kafka {config_path}
Restart=on-failure
RestartSec=5
TimeoutStopSec=120
LimitNOFILE=100000
KillSignal=SIGTERM
SuccessExitStatus=143

[Install]
WantedBy=multi-user.target
"""


def container_env(props: dict[str, str]) -> dict[str, str]:
    """Properties as the official ``apache/kafka`` image's environment (``log.dirs`` → ``KAFKA_LOG_DIRS``)."""
    return {"KAFKA_" + k.replace("-", "___").replace("_", "__").replace(".", "_").upper(): v for k, v in props.items()}


def compose_nodes(brokers: int = 3, base_port: int = DEFAULT_BASE_PORT) -> tuple[list[NodeSpec], tuple[Voter, ...]]:
    """Nodes of the compose/Kubernetes-style cluster: host ``kafka-<i>`` runs node i."""
    voters = tuple(Voter(i, f"kafka-{i}", base_port + CONTROLLER_OFFSET) for i in range(brokers))
    nodes = [host_node(i, voters, f"kafka-{i}", "0.0.0.0", base_port, "/var/lib/kafka/data") for i in range(brokers)]
    return nodes, voters
