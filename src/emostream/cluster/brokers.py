"""Start, stop and inspect the JVMs of a local KRaft cluster.

Each node lives in ``<dir>/node-<id>/``: ``server.properties``, ``server.log``, ``kafka.pid``
and ``data/``. Everything in the cluster folder is the owner's only (folders 0700, files 0600,
the JVMs run with umask 077): logs and data hold what devices said. JVMs run in their own session so they outlive the command that started them;
a pid only counts as ours when its command line names our config file, so a recycled pid is
never signalled.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emostream.cluster import fetch
from emostream.cluster.config import (
    DEFAULT_BASE_PORT,
    DEFAULT_HEAP_MB,
    DEFAULT_REAUTH_S,
    INTERNAL_OFFSET,
    LOG4J2_PROPERTIES,
    ClusterSettings,
    NodeSpec,
    LOCAL_HOST,
    jvm_options,
    local_nodes,
    new_cluster_id,
    render_properties,
    secure_properties,
    server_properties,
    voters_of,
)
from emostream.cluster.material import SecurityFiles, admin_password, ensure_cluster_material, scram_format_args
from emostream.cluster.private import private_dir, write_private
from emostream.cluster.state import ClusterState, load_state, publish_bootstrap, save_state
from emostream.config import cache_dir
from emostream.errors import ClusterError, KafkaClientError, PortInUseError, UsageError

if TYPE_CHECKING:
    from emostream.kafka.configuration import ClientConfig

MAX_BROKERS = 9
PRIVATE_UMASK = 0o077  # what the JVMs create (data, checkpoints) is the owner's only

# Children this process started; reaped so a killed broker does not linger as a zombie that
# still answers kill(pid, 0).
_children: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class BrokerStatus:
    """One node as seen from this host."""

    id: int
    port: int
    pid: int | None
    alive: bool
    log: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"id": self.id, "port": self.port, "pid": self.pid, "alive": self.alive, "log": self.log}


@dataclass(frozen=True)
class ClusterStatus:
    """The local cluster: processes, and what the brokers themselves report."""

    dir: str
    bootstrap: str | None
    kafka_version: str | None
    cluster_id: str | None
    brokers: list[BrokerStatus] = field(default_factory=list)
    live_brokers: list[int] = field(default_factory=list)
    controller: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def running(self) -> int:
        """Number of node processes alive."""
        return sum(b.alive for b in self.brokers)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``kafka status --json``)."""
        return {
            "dir": self.dir,
            "bootstrap": self.bootstrap,
            "kafka_version": self.kafka_version,
            "cluster_id": self.cluster_id,
            "brokers": [b.to_dict() for b in self.brokers],
            "live_brokers": self.live_brokers,
            "controller": self.controller,
            **self.extra,
        }


def _pid_alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        _children.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _wait_exit(pid: int, timeout_s: float) -> None:
    """Wait for ``pid`` to exit; SIGKILL it after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        while _pid_alive(pid):
            time.sleep(0.05)


def port_free(host: str, port: int) -> bool:
    """True when a listening socket could bind ``host:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def cluster_ports(base_port: int, brokers: int = 1) -> set[int]:
    """Every port a local cluster of ``brokers`` nodes at ``base_port`` listens on."""
    return {listener.port for node in local_nodes(brokers, Path("."), base_port) for listener in node.listeners}


def cluster_ports_free(base_port: int, brokers: int = 1) -> bool:
    """True when every port a local cluster of ``brokers`` nodes at ``base_port`` needs is free now."""
    return all(port_free(LOCAL_HOST, port) for port in cluster_ports(base_port, brokers))


def free_base_port(low: int, high: int, brokers: int = 1) -> int:
    """A base port in ``low..high`` whose ports for a local cluster of ``brokers`` nodes are all free now."""
    rng = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "big"))
    for _ in range(200):
        base = rng.randrange(low, high)
        if cluster_ports_free(base, brokers):
            return base
    raise ClusterError(f"no free ports for a {brokers}-node Kafka in {low}..{high}")


class LocalCluster:
    """A KRaft cluster of N combined broker+controller nodes on this host, kept in one folder."""

    def __init__(self, directory: Path, cache: Path | None = None, progress: Callable[[str], None] | None = None) -> None:
        self.dir = Path(directory).absolute()
        self.cache = cache or cache_dir()
        self._say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
        # The brokers' JVM flags for the class-data archive: mapping it (the default), or, for
        # build_class_archive, writing it at exit, in an environment of its own.
        self._class_archive: list[str] | None = None
        self._env: dict[str, str] | None = None

    # ---- layout -------------------------------------------------------------------------
    @property
    def state(self) -> ClusterState | None:
        """The saved state, or None when no cluster was made in this folder."""
        return load_state(self.dir)

    def _node_dir(self, node_id: int) -> Path:
        return self.dir / f"node-{node_id}"

    def _pid_file(self, node_id: int) -> Path:
        return self._node_dir(node_id) / "kafka.pid"

    def _config_file(self, node_id: int) -> Path:
        return self._node_dir(node_id) / "server.properties"

    def log_file(self, node_id: int) -> Path:
        """The node's server log."""
        return self._node_dir(node_id) / "server.log"

    def pid(self, node_id: int) -> int | None:
        """Pid of the node's JVM when it is alive and really ours, else None."""
        try:
            pid = int(self._pid_file(node_id).read_text().strip())
        except (OSError, ValueError):
            return None
        if not _pid_alive(pid):
            return None
        # A JVM we spawned in this process is ours even while its command line cannot be read
        # (the java launcher re-execs itself at start-up; /proc/<pid>/cmdline is briefly empty).
        if pid in _children or str(self._config_file(node_id)) in _cmdline(pid):
            return pid
        return None

    @property
    def bootstrap(self) -> str:
        """Client bootstrap servers; ClusterError when no cluster was made here."""
        state = self._require_state()
        return state.bootstrap(self.dir)

    def _require_state(self) -> ClusterState:
        state = self.state
        if state is None:
            raise ClusterError(f"no cluster in {self.dir}; start one with 'emostream kafka up --dir {self.dir}'")
        return state

    # ---- up -----------------------------------------------------------------------------
    def up(
        self,
        brokers: int | None = None,
        base_port: int | None = None,
        advertise: str | None = None,
        heap_mb: int | None = None,
        timeout_s: float = 120.0,
        secure: bool = False,
        reauth_s: int | None = None,
    ) -> ClusterStatus:
        """Start the cluster (creating it on first use) and wait until all brokers are live.

        On a folder that already holds a cluster, the same cluster restarts: same ids, ports and
        data. Asking for a different shape there is an error rather than a silent change.
        ``secure`` (SASL_SSL clients, mTLS between nodes, ACLs) is chosen at creation and kept;
        ``reauth_s`` (how long a client session outlives a password change, default 60) may change
        at any start of a secure cluster.
        """
        fetch.require_java()
        fetch.ensure_kafka(self.cache, progress=self._say)
        state = self.state
        created = state is None
        if state is None:
            # None means "the default"; 0 is a value, refused by _create like any other bad one.
            state = self._create(1 if brokers is None else brokers, DEFAULT_BASE_PORT if base_port is None else base_port,
                                 advertise, DEFAULT_HEAP_MB if heap_mb is None else heap_mb, secure,
                                 DEFAULT_REAUTH_S if reauth_s is None else reauth_s)
        else:
            self._check_same_shape(state, brokers, base_port, advertise, secure or None)
            changed = {k: v for k, v in (("heap_mb", heap_mb), ("reauth_s", reauth_s)) if v and v != getattr(state, k)}
            if changed:
                state = ClusterState(**{**state.__dict__, **changed})
                save_state(self.dir, state)
            publish_bootstrap(self.dir, state)  # a cluster made before the file existed
        nodes = state.nodes(self.dir)
        to_start = [n for n in nodes if self.pid(n.node_id) is None]
        try:
            if reauth_s is not None and not state.secure:
                raise UsageError(f"--reauth-s is for secure clusters; the cluster in {self.dir} is not secure")
            if state.secure:
                ensure_cluster_material(self.dir, state.bootstrap(self.dir), state.advertise)
            if not to_start:
                self._say(f"cluster in {self.dir} already running ({len(nodes)} broker(s))")
            self._check_ports(to_start)
            self._write_configs(state, nodes)
            self._format(state, [n for n in to_start if not (Path(n.log_dir) / "meta.properties").exists()])
            for node in to_start:
                self._spawn(state, node)
            self.wait_ready(len(nodes), timeout_s)
        except BaseException:
            # Never leave a half-started cluster behind: stop what this call started, and forget a
            # cluster this call created (a later 'kafka up' starts afresh; no phantom in 'status').
            for node in to_start:
                self.stop_node(node.node_id, timeout_s=10)
            if created:
                self._forget_new_cluster()
            raise
        return self.status()

    def _forget_new_cluster(self) -> None:
        """Remove what creating a cluster wrote (a CA made beforehand in ``security/`` stays)."""
        for entry in self.dir.iterdir():
            if entry.name == "security":
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    def _create(self, brokers: int, base_port: int, advertise: str | None, heap_mb: int, secure: bool = False,
                reauth_s: int = DEFAULT_REAUTH_S) -> ClusterState:
        if not 1 <= brokers <= MAX_BROKERS:
            raise UsageError(f"--brokers must be between 1 and {MAX_BROKERS}, got {brokers}")
        if not 1024 <= base_port <= 65535 - 300:
            raise UsageError(f"--base-port must be between 1024 and {65535 - 300}, got {base_port}")
        if heap_mb < 128:
            raise UsageError(f"--heap-mb must be at least 128, got {heap_mb}")
        if reauth_s < 1:
            raise UsageError(f"--reauth-s must be at least 1 second, got {reauth_s}")
        # A CA made beforehand with 'emostream certs init' may already be there.
        if self.dir.exists() and any(p.name != "security" for p in self.dir.iterdir()):
            raise ClusterError(f"{self.dir} is not empty and holds no emostream cluster; pick another --dir")
        state = ClusterState(new_cluster_id(), fetch.KAFKA_VERSION, brokers, base_port, heap_mb, advertise, secure, reauth_s)
        save_state(self.dir, state)
        return state

    def _check_same_shape(self, state: ClusterState, brokers: int | None, base_port: int | None, advertise: str | None,
                          secure: bool | None = None) -> None:
        wanted = {"brokers": brokers, "base_port": base_port, "advertise": advertise, "secure": secure}
        for key, value in wanted.items():
            if value is not None and value != getattr(state, key):
                raise UsageError(
                    f"the cluster in {self.dir} was created with {key}={getattr(state, key)}, not {value}; "
                    f"run 'emostream kafka down --dir {self.dir}' and use a new --dir for a different cluster"
                )

    def _check_ports(self, nodes: list[NodeSpec]) -> None:
        for node in nodes:
            for listener in node.listeners:
                if not port_free(listener.bind_host, listener.port):
                    raise PortInUseError(
                        f"port {listener.port} ({listener.name.lower()} listener of node {node.node_id}) is already in use "
                        f"by another process; stop it (e.g. 'ss -ltnp | grep :{listener.port}'), or create the cluster "
                        "in another --dir with another --base-port"
                    )

    def _settings(self, state: ClusterState, nodes: list[NodeSpec]) -> ClusterSettings:
        overrides: dict[str, str] = {}
        if state.secure:
            files = SecurityFiles.of_cluster(self.dir)
            overrides = secure_properties(nodes[0], files.broker_pem, files.ca.cert_path, state.reauth_s)
        return ClusterSettings(state.cluster_id, voters_of(nodes), state.brokers, overrides)

    def _write_configs(self, state: ClusterState, nodes: list[NodeSpec]) -> None:
        settings = self._settings(state, nodes)
        write_private(self.dir / "log4j2.properties", LOG4J2_PROPERTIES.encode())
        for node in nodes:
            private_dir(self._node_dir(node.node_id))
            text = render_properties(server_properties(node, settings), header="written by 'emostream kafka up'; regenerated on every start")
            write_private(self._config_file(node.node_id), text.encode())

    def _java(self, state: ClusterState, main: str, args: list[str], heap_mb: int) -> list[str]:
        archive = self._class_archive if main == "kafka.Kafka" else None
        return [
            fetch.require_java(),
            *jvm_options(heap_mb),
            *(fetch.class_archive_options(self.cache, state.kafka_version) if archive is None else archive),
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            "-cp",
            fetch.classpath(self.cache, state.kafka_version),
            main,
            *args,
        ]

    def _format(self, state: ClusterState, nodes: list[NodeSpec]) -> None:
        with contextlib.ExitStack() as stack:
            extra: list[str] = []
            if state.secure and nodes:
                # The admin's SCRAM credential is part of the initial metadata, as the quorum is.
                files = SecurityFiles.of_cluster(self.dir)
                extra = stack.enter_context(scram_format_args(files, admin_password(files)))
            self._format_nodes(state, nodes, extra)

    def _format_nodes(self, state: ClusterState, nodes: list[NodeSpec], extra: list[str]) -> None:
        procs = []
        for node in nodes:
            cmd = self._java(state, "kafka.tools.StorageTool",
                             ["format", f"--cluster-id={state.cluster_id}", "-c", str(self._config_file(node.node_id)), "--ignore-formatted", *extra], 256)
            procs.append((node, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, umask=PRIVATE_UMASK,
                                                 env=self._env)))
        for node, proc in procs:
            out, _ = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise ClusterError(f"formatting storage of node {node.node_id} failed:\n{out.strip()[-2000:]}")

    def _spawn(self, state: ClusterState, node: NodeSpec) -> None:
        cmd = self._java(state, "kafka.Kafka", [str(self._config_file(node.node_id))], state.heap_mb)
        log = os.open(self.log_file(node.node_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                    umask=PRIVATE_UMASK, env=self._env)
        finally:
            os.close(log)
        _children[proc.pid] = proc
        write_private(self._pid_file(node.node_id), f"{proc.pid}\n".encode())

    def start_node(self, node_id: int, timeout_s: float = 120.0) -> None:
        """(Re)start one node of an existing cluster and wait until all nodes are live again."""
        state = self._require_state()
        nodes = {n.node_id: n for n in state.nodes(self.dir)}
        if node_id not in nodes:
            raise UsageError(f"no node {node_id} in {self.dir} (nodes: {sorted(nodes)})")
        if self.pid(node_id) is None:
            self._check_ports([nodes[node_id]])
            self._spawn(state, nodes[node_id])
        self.wait_ready(len(nodes), timeout_s)

    def wait_ready(self, brokers: int, timeout_s: float = 120.0) -> None:
        """Block until the cluster reports ``brokers`` live brokers and a controller."""
        from emostream.kafka.admin import Admin

        state = self._require_state()
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        admin: Admin | None = None
        while time.monotonic() < deadline:
            for node in state.nodes(self.dir):
                if self.pid(node.node_id) is None:
                    raise ClusterError(
                        f"node {node.node_id} exited during start-up; last lines of {self.log_file(node.node_id)}:\n"
                        + self._log_tail(node.node_id)
                    )
            try:
                admin = admin or Admin(self.client_config(), timeout_s=3)
                info = admin.cluster_info()
                if len(info.broker_ids) >= brokers and info.controller_id is not None:
                    return
                last = f"{len(info.broker_ids)}/{brokers} brokers live"
            except KafkaClientError as exc:
                last = str(exc)
            time.sleep(0.5)
        raise ClusterError(f"cluster in {self.dir} not ready after {timeout_s:.0f}s ({last}); see the node logs in {self.dir}/node-*/server.log")

    def _log_tail(self, node_id: int, lines: int = 15) -> str:
        try:
            text = self.log_file(node_id).read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        errors = [line for line in text if " ERROR " in line or "Exception" in line]
        return "\n".join((errors[-5:] if errors else []) + text[-lines:])

    # ---- down / kill --------------------------------------------------------------------
    def stop_node(self, node_id: int, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> bool:
        """Signal one node and wait for it to exit (SIGKILL after ``timeout_s``); False if not running."""
        pid = self.pid(node_id)
        if pid is None:
            self._pid_file(node_id).unlink(missing_ok=True)
            return False
        os.kill(pid, sig)
        _wait_exit(pid, timeout_s)
        self._pid_file(node_id).unlink(missing_ok=True)
        return True

    def down(self, timeout_s: float = 30.0) -> list[int]:
        """Stop every node cleanly (SIGTERM to all at once, SIGKILL stragglers); returns the ids stopped."""
        state = self.state
        if state is None:
            return []
        running = {n.node_id: self.pid(n.node_id) for n in state.nodes(self.dir)}
        running = {i: p for i, p in running.items() if p is not None}
        for pid in running.values():
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for pid in running.values():
            _wait_exit(pid, max(0.0, deadline - time.monotonic()))
        for node in state.nodes(self.dir):
            self._pid_file(node.node_id).unlink(missing_ok=True)
        return sorted(running)

    # ---- status -------------------------------------------------------------------------
    def status(self, probe: bool = True) -> ClusterStatus:
        """Processes from the pid files and, when any is alive and ``probe``, the brokers' own view."""
        state = self.state
        if state is None:
            return ClusterStatus(str(self.dir), None, None, None)
        brokers = []
        for node in state.nodes(self.dir):
            pid = self.pid(node.node_id)
            brokers.append(BrokerStatus(node.node_id, node.client.port, pid, pid is not None, str(self.log_file(node.node_id))))
        live: list[int] = []
        controller = None
        if probe and any(b.alive for b in brokers):
            from emostream.kafka.admin import Admin

            try:
                info = Admin(self.client_config(), timeout_s=5).cluster_info()
                live, controller = list(info.broker_ids), info.controller_id
            except KafkaClientError:
                pass
        extra: dict[str, Any] = {"secure": state.secure}
        if state.secure:
            extra["admin_profile"] = str(SecurityFiles.of_cluster(self.dir).admin_profile)
        return ClusterStatus(str(self.dir), state.bootstrap(self.dir), state.kafka_version, state.cluster_id, brokers, live,
                             controller, extra)

    def client_config(self) -> "ClientConfig":
        """How to reach this cluster as its administrator: plain bootstrap, or the admin profile when secure."""
        from emostream.kafka.configuration import ClientConfig

        state = self._require_state()
        if state.secure:
            return ClientConfig.resolve(None, str(SecurityFiles.of_cluster(self.dir).admin_profile),
                                        local=lambda: state.bootstrap(self.dir))
        return ClientConfig(state.bootstrap(self.dir))


# Ports of the throwaway broker build_class_archive starts: below Linux's ephemeral range
# (32768-60999), where a port free when checked may be taken by an outgoing connection before the
# broker binds it.
ARCHIVE_PORTS = (10000, 20000 - INTERNAL_OFFSET - 1)
_ARCHIVE_FLAGS = ("-XX:SharedArchiveFile=", "-XX:ArchiveClassesAtExit=", "-Xshare:")


def build_class_archive(cache: Path | None = None, progress: Callable[[str], None] | None = None) -> Path:
    """Write the brokers' class-data archive (see :func:`fetch.class_archive_options`) unless this
    ``java`` can already use the one there: one throwaway broker is started with
    ``-XX:ArchiveClassesAtExit`` and stopped cleanly, and its JVM writes the classes it loaded on
    the way out (~10 s, once per Kafka version and Java build). The dump is checked with this
    ``java`` before it replaces the archive (atomically: a cluster starting meanwhile maps the old
    archive or the new one, never half of one), and stamped once it has."""
    cache = cache or cache_dir()
    target = fetch.class_archive(cache)
    usable = fetch.class_archive_usable(cache)
    if usable is None:
        # A check that timed out says nothing of the archive: a good one stays (and its stamp).
        raise ClusterError(f"could not check the class-data archive {target} (java did not finish in time, or could not be run); left as it is")
    if usable:
        if not fetch.class_archive_options(cache):
            fetch.stamp_class_archive(cache)  # checked now (an archive of an older emostream has no stamp)
        return target
    # Not this Java's, or cut short: gone before any JVM (this build's too) is given it.
    fetch.forget_class_archive(cache)
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    say("building the brokers' class-data archive (one broker started and stopped, once) ...")
    work = Path(tempfile.mkdtemp(prefix="emostream-cds-"))
    # Written next to the target, so that the rename below stays on one file system (atomic).
    dump = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    cluster = LocalCluster(work / "kafka", cache, progress=lambda _line: None)
    cluster._class_archive = [f"-XX:ArchiveClassesAtExit={dump}", "-Xlog:cds*=off"]
    # A JVM writing a dynamic archive must start from the JDK's base archive alone: an archive
    # named in JDK_JAVA_OPTIONS (as the tests name this one) would stop it at start-up.
    cluster._env = {**os.environ, "JDK_JAVA_OPTIONS": _without_archive_flags(os.environ.get("JDK_JAVA_OPTIONS", ""))}
    try:
        try:
            cluster.up(brokers=1, base_port=free_base_port(*ARCHIVE_PORTS), heap_mb=384)
        finally:
            cluster.down(timeout_s=60)
        if not dump.is_file():
            raise ClusterError("the broker exited without writing its class-data archive")
        if fetch.class_archive_usable(cache, archive=dump) is not True:
            raise ClusterError("java cannot map the class-data archive it just wrote (or did not finish checking it)")
        os.replace(dump, target)
        fetch.stamp_class_archive(cache)
    finally:
        dump.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    say(f"class-data archive ready: {target}")
    return target


def java_option_words(java_options: str) -> list[str]:
    """``JDK_JAVA_OPTIONS`` split as the java launcher splits it: at white space, where single or
    double quotes keep white space in a word and are removed; no escape character (a backslash, as
    in a Windows-style path, is kept). ValueError for an unclosed quote."""
    lexer = shlex.shlex(java_options, posix=True)
    lexer.whitespace = " \t\r\n\v\f"  # C's isspace(), as the launcher uses
    lexer.whitespace_split = True
    lexer.escape = ""
    lexer.commenters = ""
    return list(lexer)


def _without_archive_flags(java_options: str) -> str:
    """``JDK_JAVA_OPTIONS`` without class-data archive flags (quoted words, as the launcher reads them, kept whole)."""
    try:
        words = java_option_words(java_options)
    except ValueError:  # unbalanced quotes: the launcher would refuse them too
        return ""
    return shlex.join(w for w in words if not w.startswith(_ARCHIVE_FLAGS))

