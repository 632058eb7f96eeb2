"""Shared fixtures. ``kafka_cluster`` is a real 3-broker KRaft cluster started by our own code.

It boots in the background from the session's first test, and the modules that need brokers run
after those that do not, so the brokers start while the quick tests run. Under pytest-xdist all
workers share one such cluster (see ``_SharedBoot``), so a test must never stop, kill or
reconfigure its brokers (it starts its own with ``start_cluster``) and names its topics and
groups with ``unique_name``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emostream.cluster import LocalCluster, fetch
from emostream.cluster.brokers import _pid_alive, cluster_ports
from emostream.cluster.brokers import free_base_port as brokers_free_base_port
from emostream.cluster.config import INTERNAL_OFFSET
from emostream.config import cache_dir

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "goemotions"

# Every JVM the tests start (brokers, StorageTool, the console producer, the quota tool; directly
# or through the CLI, which inherits this) compiles with C1 only. The tests' brokers are short-
# lived and lightly loaded, and C2 compiling behind them was most of their CPU: on the idle 2-core
# VM a 3-broker boot plus 20 s idle took 32.5 s of CPU (ready in 27.5 s) with C2, 17 s (10.5 s)
# with C1 only. The java launcher reads JDK_JAVA_OPTIONS (and says so on stderr).
# They also map the brokers' class-data archive that 'make test' builds ('emostream kafka fetch'):
# LocalCluster passes it to its own JVMs, this passes it to the rest (the netns lab's brokers, the
# console tools), which run from the same cached jars. ~13 brokers boot at once at the start of a
# run; with the archive each takes about half the CPU.
_JVM_FLAGS = ["-XX:TieredStopAtLevel=1", *fetch.class_archive_options(cache_dir())]
for _flag in map(shlex.quote, _JVM_FLAGS):  # quoted as the launcher reads them: a cache path may hold a space
    if _flag not in os.environ.get("JDK_JAVA_OPTIONS", ""):
        os.environ["JDK_JAVA_OPTIONS"] = f"{os.environ.get('JDK_JAVA_OPTIONS', '')} {_flag}".strip()


# Clusters of the tests take their ports from 20000-32767: below Linux's ephemeral range
# (32768-60999), so no client socket's local port can take a broker's port between the check and
# the bind. Under pytest-xdist each worker draws from its own slice, so two workers can never pick
# overlapping ranges in that window either.
PORTS_LOW, PORTS_HIGH = 20000, 32768
PORT_SLICES = 8


def _worker_index() -> int | None:
    """0 for xdist's gw0, 1 for gw1, …; None outside xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else None


def _port_slice(brokers: int) -> tuple[int, int]:
    """The range of base ports this process may use (a cluster spans base .. base+INTERNAL_OFFSET+brokers)."""
    top = PORTS_HIGH - INTERNAL_OFFSET - brokers
    index = _worker_index()
    if index is None:
        return PORTS_LOW, top
    width = (PORTS_HIGH - PORTS_LOW) // PORT_SLICES
    low = PORTS_LOW + (index % PORT_SLICES) * width
    return low, min(low + width - INTERNAL_OFFSET - brokers, top)


# Ports of the clusters this process has picked. Two clusters may start at the same time in one
# process (the session cluster boots in a thread while the first test starts its own): both drew
# from the same slice and checked their ports free before either JVM had bound them, and a CI run
# failed with "Address already in use" (stop 26). A pick now skips every port picked before here.
_PICKED: set[int] = set()
_PICK_LOCK = threading.Lock()


def free_base_port(brokers: int) -> int:
    """A base port in this worker's slice whose client, controller and internal ports are all free
    right now and none picked before by this process (whose cluster may not have bound them yet)."""
    with _PICK_LOCK:
        for _ in range(100):
            base = brokers_free_base_port(*_port_slice(brokers), brokers)
            ports = cluster_ports(base, brokers)
            if not ports & _PICKED:
                _PICKED.update(ports)
                return base
    raise RuntimeError(f"no base port for {brokers} broker(s) in {_port_slice(brokers)} apart from the {len(_PICKED)} ports picked before")


def discard(cluster: LocalCluster) -> None:
    """Stop a test's cluster at once (SIGKILL), when nothing will use it again: a controlled
    shutdown only hands leadership to nodes about to stop too. It took 5.5 s for an idle 3-node
    cluster, and up to 30 s for the survivors of a broker kill (the clean stop is checked through
    the CLI, in test_cluster_kafka)."""
    cluster.down(timeout_s=0)


def start_cluster(directory: Path, brokers: int) -> LocalCluster:
    """Start a fresh cluster in ``directory`` on free ports (heap kept small for the 2-core CI)."""
    cluster = LocalCluster(directory)
    try:
        cluster.up(brokers=brokers, base_port=free_base_port(brokers), heap_mb=384)
    except BaseException:
        discard(cluster)  # a half-started cluster must not outlive the test
        raise
    return cluster


# The longest units of work first (seconds of one CI run in brackets), so that under
# ``-n N --dist loadgroup --no-loadscope-reorder`` (make test) xdist hands them out first and the
# short tests fill the gaps at the end: a long group started last would keep one worker busy while
# the others sit idle. A key is a module (its tests share one cluster or lab: one unit of work) or a
# test's name. xdist's own reordering (by number of tests per unit) put the 3-test, 230 s
# multihost group behind the 33-test, 8 s model group.
KILL_GROUP = "kill-cluster"  # the xdist group of every test that uses ``private_cluster``
STOP_GROUP = "stop-broker"  # ... and of every test that uses ``private_broker``

LONGEST_FIRST = (
    "tests/test_multihost.py",  # its 3-host lab [~200]
    KILL_GROUP,  # the broker-kill tests of test_cluster_kafka and test_worker_kafka on one cluster [~150]
    STOP_GROUP,  # the broker-outage tests of test_edge_faults and test_mic on one broker [~110]
    "tests/test_security_kafka.py",  # its secure cluster [~110]
    "test_exactly_once_through_worker_kills",  # [~80-100]
    "tests/test_mic.py",  # [~60]
    "test_bench_pipeline_json_shape_against_a_real_broker",  # [~68]
    "test_cli_up_twice_down_twice_and_port_in_use",  # its own 1-broker cluster, by the CLI [~60]
    "test_exactly_once_while_workers_join_and_leave",  # [~45-55]
    "test_demo_prints_live_emotions_and_cleans_up",  # [~45]
    "tests/test_stt.py",  # [~38]
    "tests/test_cluster_security.py",  # its secure cluster [~28]
    "test_worker_survives_every_hostile_record_among_thousands_of_valid_ones",  # [~23]
    "tests/test_dashboard_browser.py",  # [~21]
)


def _rank(item: pytest.Item) -> int:
    group = item.get_closest_marker("xdist_group")
    names = {getattr(item, "originalname", None), group.args[0] if group and group.args else None}
    for i, key in enumerate(LONGEST_FIRST):
        if item.nodeid.startswith(key) or key in names:
            return i
    return len(LONGEST_FIRST)


def _uses_session_cluster(item: pytest.Item) -> bool:
    return "kafka_cluster" in getattr(item, "fixturenames", ())


def _module_fixtures(item: pytest.Item) -> list[str]:
    """Names of the module- (or class-/package-) scoped fixtures ``item`` uses."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    return [name for name, defs in info.name2fixturedefs.items()
            if defs and defs[-1].scope in ("module", "class", "package")]


@pytest.hookimpl(tryfirst=True)  # before -m deselects and before xdist reads xdist_group: the marks added here must count
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the session cluster ``kafka`` (even when its module forgot), so
    ``make test-quick`` (``-m "not kafka and not slow"``) never starts brokers; put the tests of a
    module that share a module-scoped fixture (a secure cluster, the netns lab, an own cluster) in
    one ``xdist_group``, so under ``-n N --dist loadgroup`` one worker builds it once and runs
    them all (the other tests are spread one by one); then order the items longest unit first
    (``LONGEST_FIRST``), the other broker tests next, the quick ones last, each module keeping its
    own order. ``make test`` turns xdist's own reordering off, so units go out in this order.
    The session cluster boots in the background from each worker's first test either way."""
    for item in items:
        if _uses_session_cluster(item):
            item.add_marker(pytest.mark.kafka)
        for name, (_brokers, group) in _FAULT_CLUSTERS.items():
            if name in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.kafka)
                item.add_marker(pytest.mark.xdist_group(group))
        if _module_fixtures(item) and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__ if item.module else item.nodeid))
    kafka_modules = {item.module for item in items if item.get_closest_marker("kafka") is not None}
    # Stable: the order within a module (and so within a group) is kept.
    items[:] = sorted(items, key=lambda item: (_rank(item), item.module not in kafka_modules))


class _Boot:
    """The session cluster, starting in a thread; :meth:`wait` hands it over or raises why it failed."""

    def __init__(self, directory: Path) -> None:
        self.cluster: LocalCluster | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(directory,), name="kafka-session-boot", daemon=True)
        self._thread.start()

    def _run(self, directory: Path) -> None:
        try:
            self.cluster = start_cluster(directory, 3)
        except BaseException as exc:  # noqa: BLE001 - re-raised in wait(), in the test that needs it
            self.error = exc
        self._booted()

    def _booted(self) -> None:
        """Called in the boot thread once the start succeeded or failed."""

    def wait(self) -> LocalCluster:
        self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"the session's Kafka cluster did not start: {self.error}") from self.error
        assert self.cluster is not None
        return self.cluster

    def close(self) -> None:
        self._thread.join()
        if self.cluster is not None:
            discard(self.cluster)


# Under pytest-xdist every worker uses ONE session cluster (one set of 3 JVMs for the run, not one
# per worker on a 2-core box). The controller names a folder for it under the run's basetemp
# (``pytest_configure_node``); the first worker to need it claims it (an O_EXCL file) and boots
# it, the others wait for its ``ready`` (or ``failed``) marker; the controller stops it when the
# run ends (``pytest_unconfigure``), and kills any of the run's brokers still alive then, so no JVM
# outlives the run even when a worker crashed. Tests that stop or kill brokers use their own cluster.
_SHARED_KAFKA = "emostream_shared_kafka"  # workerinput key: the shared cluster's folder
_RUN_BASETEMP = pytest.StashKey[Path]()  # this process owns the clean-up of JVMs under this folder
_SHARED_DIR = pytest.StashKey[Path]()  # controller: the shared cluster's folder it handed out


class _SharedBoot(_Boot):
    """The run's shared session cluster, seen from one xdist worker: booted here when this worker
    claims it first, else waited for. Never stopped here: other workers may still use it."""

    WAIT_S = 900.0

    def __init__(self, shared: Path) -> None:
        self.shared = shared
        self.directory = shared / "kafka3"
        try:
            fd = os.open(shared / "owner", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            self.owner = False
            self.cluster, self.error = None, None
            return
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()}\n")
        self.owner = True
        super().__init__(self.directory)

    def _booted(self) -> None:
        marker, text = ("failed", f"{type(self.error).__name__}: {self.error}") if self.error else ("ready", self.directory.as_posix())
        tmp = self.shared / f".{marker}.tmp"
        tmp.write_text(text + "\n")
        tmp.replace(self.shared / marker)

    def wait(self) -> LocalCluster:
        if self.owner:
            return super().wait()
        deadline = time.monotonic() + self.WAIT_S
        while not (self.shared / "ready").exists():
            if (self.shared / "failed").exists():
                raise RuntimeError("the run's shared Kafka cluster did not start (in another xdist worker): "
                                   + (self.shared / "failed").read_text().strip())
            if not _pid_alive(self._owner_pid()) and not (self.shared / "ready").exists():
                raise RuntimeError(f"the xdist worker that was starting the shared Kafka cluster in {self.directory} died")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the shared Kafka cluster in {self.directory} was not ready after {self.WAIT_S:.0f}s")
            time.sleep(0.2)
        return LocalCluster(self.directory)

    def _owner_pid(self) -> int:
        try:
            return int((self.shared / "owner").read_text())
        except (OSError, ValueError):
            return os.getpid()  # being written right now: the owner is alive

    def close(self) -> None:
        if self.owner:
            self._thread.join()  # finish (or fail) the boot; stopping is the controller's job


# EMOSTREAM_TEST_TIMELINE=FILE appends one JSON line per test phase (worker, test, phase, start,
# stop, outcome): the schedule of a run, to see which unit of work is on the critical path.
_TIMELINE = os.environ.get("EMOSTREAM_TEST_TIMELINE")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not _TIMELINE or os.environ.get("PYTEST_XDIST_WORKER"):
        return  # written once, by the controller (or the only process)
    node = getattr(report, "node", None)
    worker = getattr(getattr(node, "gateway", None), "id", "main")
    line = {"worker": worker, "test": report.nodeid, "phase": report.when, "start": report.start,
            "stop": report.stop, "outcome": report.outcome}
    with open(_TIMELINE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # noqa: ANN001 - xdist's WorkerController
    """Controller: hand every worker the folder of the run's one shared session cluster."""
    config = node.config
    if _SHARED_DIR not in config.stash:
        factory = getattr(config, "_tmp_path_factory", None)  # what xdist itself derives workers' basetemp from
        if factory is None:
            return  # the workers then start a cluster each, as without xdist
        basetemp = factory.getbasetemp()
        shared = basetemp / "kafka-shared"
        shared.mkdir(mode=0o700, exist_ok=True)
        config.stash[_SHARED_DIR] = shared
        config.stash[_RUN_BASETEMP] = basetemp
    node.workerinput[_SHARED_KAFKA] = str(config.stash[_SHARED_DIR])


def _jvms_under(path: Path) -> list[int]:
    """Pids of Kafka broker JVMs whose command line names a file under ``path``."""
    mine = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in cmdline]
        if "kafka.Kafka" in args and any(a.startswith(f"{path}/") or f"={path}/" in a for a in args):
            mine.append(int(proc.name))
    return mine


def pytest_unconfigure(config: pytest.Config) -> None:
    """Controller (or a run without xdist): stop the shared cluster, then SIGKILL every broker JVM
    of this run still alive (a crashed worker's cluster, a half-started one), so none outlives it."""
    if hasattr(config, "workerinput"):
        return
    if _SHARED_DIR in config.stash and (config.stash[_SHARED_DIR] / "kafka3").exists():
        try:
            discard(LocalCluster(config.stash[_SHARED_DIR] / "kafka3"))
        except Exception as exc:  # noqa: BLE001 - the sweep below still kills them
            print(f"\nstopping the shared Kafka cluster failed: {exc}", file=sys.stderr)
    basetemp = config.stash.get(_RUN_BASETEMP, None)
    if basetemp is None:
        return
    leftovers = _jvms_under(basetemp)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if leftovers:
        print(f"\nkilled {len(leftovers)} Kafka JVM(s) of this run still alive at its end: {leftovers}", file=sys.stderr)


@pytest.fixture(scope="session", autouse=True)
def _kafka_boot(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Boot | None]:
    """Start the session cluster at the first test when any selected test will use it: under
    xdist the run's shared one (booted by the first worker here), else one for this process."""
    config = request.config
    if not hasattr(config, "workerinput"):
        config.stash[_RUN_BASETEMP] = tmp_path_factory.getbasetemp()
    if not any(_uses_session_cluster(item) for item in request.session.items):
        yield None
        return
    shared = getattr(config, "workerinput", {}).get(_SHARED_KAFKA)
    boot = _SharedBoot(Path(shared)) if shared else _Boot(tmp_path_factory.mktemp("kafka3"))
    try:
        yield boot
    finally:
        boot.close()


class _KillCluster:
    """One cluster of ``brokers`` for every test of this process that stops or kills its brokers
    (they share one xdist group, so one worker runs them all): started by the first, healed after
    each (every stopped broker started again, all live), stopped after the last user, not at the
    session's end."""

    def __init__(self, brokers: int, users: int) -> None:
        self.brokers = brokers
        self.users_left = users
        self.cluster: LocalCluster | None = None

    def take(self, factory: pytest.TempPathFactory, name: str) -> LocalCluster:
        if self.cluster is None:
            self.cluster = start_cluster(factory.mktemp(name), self.brokers)
        return self.cluster

    def give_back(self) -> None:
        self.users_left -= 1
        cluster, self.cluster = self.cluster, None
        if cluster is None:
            return
        if self.users_left <= 0:
            discard(cluster)
            return
        try:
            for broker in cluster.status(probe=False).brokers:
                if not broker.alive:
                    cluster.start_node(broker.id)  # waits until every broker is live again
            self.cluster = cluster
        except BaseException:
            discard(cluster)  # the next user starts a fresh one
            raise


# fixture name -> (brokers, xdist group): clusters apart from the session's, for tests that stop
# or kill brokers (doing that to the session cluster would disturb the tests other workers run on
# it at the same time).
_FAULT_CLUSTERS = {"private_cluster": (3, KILL_GROUP), "private_broker": (1, STOP_GROUP)}


@pytest.fixture(scope="session")
def _kill_clusters(request: pytest.FixtureRequest) -> Iterator[dict[str, _KillCluster]]:
    shared = {name: _KillCluster(brokers, sum(1 for item in request.session.items if name in getattr(item, "fixturenames", ())))
              for name, (brokers, _group) in _FAULT_CLUSTERS.items()}
    try:
        yield shared
    finally:
        for each in shared.values():
            if each.cluster is not None:
                discard(each.cluster)


@contextlib.contextmanager
def _fault_cluster(shared: _KillCluster, factory: pytest.TempPathFactory, name: str) -> Iterator[LocalCluster]:
    cluster = shared.take(factory, name)
    try:
        yield cluster
    finally:
        shared.give_back()


@pytest.fixture
def private_cluster(_kill_clusters: dict[str, _KillCluster], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 3-broker cluster apart from the session's, for tests that kill brokers. The tests that
    use it run one after another on one worker and share it; each gets it with every broker live
    and may stop any (they are started again after the test)."""
    with _fault_cluster(_kill_clusters["private_cluster"], tmp_path_factory, "kafka3-kill") as cluster:
        yield cluster


@pytest.fixture
def private_broker(_kill_clusters: dict[str, _KillCluster], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 1-broker cluster apart from the session's, for tests that stop it (a device's outage);
    shared like ``private_cluster``."""
    with _fault_cluster(_kill_clusters["private_broker"], tmp_path_factory, "kafka1-stop") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def kafka_cluster(_kafka_boot: _Boot | None) -> LocalCluster:
    """A real 3-broker cluster shared by the whole session (under xdist: by every worker of the
    run), so tests must not stop, kill or reconfigure its brokers (use ``start_cluster``), and
    must name their topics and groups with ``unique_name``."""
    assert _kafka_boot is not None, "kafka_cluster requested by a test the collection did not see"
    return _kafka_boot.wait()


@pytest.fixture(scope="session")
def bootstrap(kafka_cluster: LocalCluster) -> str:
    """Bootstrap servers of the session cluster."""
    return kafka_cluster.bootstrap


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A topic/group name unique to this test."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]
    return f"t-{base}-{os.urandom(3).hex()}"
