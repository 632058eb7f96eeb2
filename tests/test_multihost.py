"""A 3-host cluster in network namespaces, built from 'emostream kafka config' output alone.

Each broker runs in its own namespace ("host") with its own IP, joined by a bridge; the worker
runs in a fourth. The tests cut a host off the network and kill the leader's host while the
pipeline runs, then check that nothing was lost, nothing duplicated and per-device order held.
The cluster is built with ``kafka config --secure`` and per-host certificates from
``certs issue --host``: clients reach it only over SASL_SSL, its nodes talk over mTLS.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from emostream.cluster import fetch
from emostream.cluster.config import new_cluster_id
from emostream.config import cache_dir
from emostream.events import Transcript, new_utterance_id
from emostream.kafka.admin import Admin
from emostream.kafka.configuration import ClientConfig
from emostream.kafka.consumer import committed_consumer
from emostream.kafka.producer import idempotent_producer
from emostream.topics import create_topic, plan_dedupe, plan_topic
from tests.cli_inprocess import run_cli
from tests.netns_lab import NetnsLab, netns_unavailable

# One xdist worker runs the whole module in order, on one lab: the first test checks the secure
# set-up while every copy is in sync, then the faults. (A second, plaintext lab used to run the
# faults: ~70 s more of the 2-core CI box. Run side by side as two groups, the two labs were no
# faster, and the one CI run of that had a worker hang in the leader-kill test.)
pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.xdist_group("multihost")]

_why = netns_unavailable()
if _why:
    pytestmark.append(pytest.mark.skip(reason=_why))

BROKERS = 3
WORKER_HOST = 3


@dataclass
class LabCluster:
    """Three brokers on three hosts, plus the processes started on them."""

    lab: NetnsLab
    root: Path
    procs: dict[int, subprocess.Popen] = field(default_factory=dict)

    @property
    def admin_profile(self) -> Path:
        """How the tests get in: the admin profile 'certs init' wrote on the operator's machine."""
        return self.root / "ops" / "security" / "admin.json"

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{self.lab.ip(i)}:9092" for i in range(BROKERS))

    @property
    def client(self) -> ClientConfig:
        """The admin's way in (SASL_SSL)."""
        return ClientConfig.resolve(self.bootstrap, str(self.admin_profile))

    def exec_start(self, i: int) -> list[str]:
        """The broker command exactly as the generated systemd unit runs it."""
        unit = (self.root / f"h{i}" / "emostream-kafka.service").read_text()
        line = next(l for l in unit.splitlines() if l.startswith("ExecStart="))
        return shlex.split(line[len("ExecStart="):])

    def start_broker(self, i: int) -> None:
        log = open(self.root / f"h{i}" / "server.log", "ab")
        self.procs[i] = subprocess.Popen(self.lab.cmd(i, self.exec_start(i)), stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def kill_broker(self, i: int) -> None:
        proc = self.procs.pop(i)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    def wait_brokers(self, n: int, timeout_s: float = 300) -> None:
        # Only how long to wait for the hosts to join: three JVMs starting while the other xdist
        # workers start their own clusters took 190 s on the loaded 2-core CI box (36 s alone).
        admin = Admin(self.client, timeout_s=3)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if len(admin.cluster_info().broker_ids) >= n:
                    return
            except Exception:
                pass
            time.sleep(0.5)
        raise AssertionError(f"{n} brokers not live after {timeout_s}s")

    def stop(self) -> None:
        # A throwaway lab: no controlled shutdown to wait for (with the whole quorum going down at
        # once, the last nodes' shutdown can wait out its timeouts).
        for proc in self.procs.values():
            proc.kill()
        for proc in self.procs.values():
            proc.wait(30)


_emostream = run_cli


@contextlib.contextmanager
def _lab(root: Path) -> Iterator[LabCluster]:
    """Three secure hosts configured by 'certs init', 'certs issue --host' and 'kafka config --secure' alone."""
    fetch.ensure_kafka(cache_dir())
    lab = NetnsLab(BROKERS + 1).open()
    cluster = LabCluster(lab, root)
    try:
        cluster_id = new_cluster_id()
        controllers = ",".join(f"{i}@{lab.ip(i)}:9192" for i in range(BROKERS))
        java = shutil.which("java") or "java"
        lib = fetch.classpath(cache_dir())[:-2]
        ops = root / "ops"  # the operator's machine: the CA and the admin profile
        _emostream("certs", "init", "--dir", str(ops))
        for i in range(BROKERS):
            host = root / f"h{i}"
            # Each host's own certificate, for the address the others and the clients use.
            _emostream("certs", "issue", "--host", lab.host_name(i), "--ip", lab.ip(i), "--dir", str(ops), "--out", str(host))
            _emostream("kafka", "config", "--node-id", str(i), "--controllers", controllers,
                       "--advertise", lab.ip(i), "--listen", lab.ip(i), f"--cluster-id={cluster_id}", "--out", str(host),
                       "--data-dir", str(host / "data"), "--install-dir", str(host), "--kafka-lib", lib, "--java", java,
                       "--heap-mb", "384", "--user", "root", "--secure", "--dir", str(ops))

        def format_storage(i: int) -> None:
            host = root / f"h{i}"
            fmt = subprocess.run(["sh", str(host / "format-storage.sh")], capture_output=True, text=True, timeout=120)
            assert fmt.returncode == 0, fmt.stdout + fmt.stderr
            assert not (host / "format-scram.args").exists()  # the admin credential file goes after use

        # Each host formats its own storage (a StorageTool JVM) at once, as three operators would;
        # one after another took ~20 s of the lab's start on the loaded CI box.
        with ThreadPoolExecutor(BROKERS) as pool:
            for done in [pool.submit(format_storage, i) for i in range(BROKERS)]:
                done.result()
        for i in range(BROKERS):
            cluster.start_broker(i)
        cluster.wait_brokers(BROKERS)
        yield cluster
    finally:
        cluster.stop()
        lab.close()


@pytest.fixture(scope="module")
def lab_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    """One secure 3-host lab for the module: SASL_SSL for clients, mTLS between the hosts, as a
    real deployment runs. The fault tests run on it too (a second, plaintext lab cost ~70 s of
    the suite's time on the 2-core CI box for nothing the secure one does not also check)."""
    with _lab(tmp_path_factory.mktemp("hosts")) as cluster:
        yield cluster


def test_secure_hosts_serve_clients_over_sasl_ssl_only(lab_cluster: LabCluster, tmp_path: Path) -> None:
    """Runs first, while every host's copy is in sync."""
    from confluent_kafka import KafkaException, Producer

    from emostream.security.users import add_user

    started = time.monotonic()
    cluster = lab_cluster
    admin = Admin(cluster.client)
    topic = "stt.transcripts"
    create_topic(admin, plan_topic(topic, BROKERS, partitions=3))
    worker_profile = tmp_path / "worker.json"
    add_user(cluster.admin_profile, "worker-1", "worker", password="worker-password-0123456789")
    worker_profile.write_text(json.dumps({**json.loads(cluster.admin_profile.read_text()), "username": "worker-1",
                                          "password": "worker-password-0123456789"}))
    items = _transcripts(2000, devices=20)
    producer = idempotent_producer(cluster.client)
    for t in items:
        producer.produce(topic, key=t.device_id.encode(), value=t.encode())
        producer.poll(0)
    assert producer.flush(60) == 0
    # The worker role reads transcripts through SASL_SSL, from every host's partitions.
    consumer = committed_consumer(ClientConfig.resolve(None, str(worker_profile)), "emostream-worker-lab")
    consumer.subscribe([topic])
    got: list[dict] = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < len(items) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got.append(json.loads(msg.value()))
    finally:
        consumer.close()
    lost, dup = _check_exactly_once(items, got)
    assert (lost, dup) == (0, 0), (lost, dup)
    # Every copy is in sync: the hosts replicate to each other over mTLS with their own certificates.
    assert all(len(isr) == BROKERS for _, _, isr in admin.partitions_of(topic).values())
    # Plain TCP to the hosts' client ports gets nothing.
    with pytest.raises(KafkaException):
        Producer({"bootstrap.servers": cluster.bootstrap}).list_topics(timeout=4)
    print(json.dumps({"secure_multihost_records": len(items), "seconds": round(time.monotonic() - started, 1)}))


def _transcripts(n: int, devices: int) -> list[Transcript]:
    seq: dict[str, int] = {}
    out = []
    moods = ["I am so happy today", "this makes me furious", "I'm scared of the dark", "what a surprise that was",
             "I feel so sad and alone", "that is disgusting", "the meeting is at noon"]
    for i in range(n):
        dev = f"pi-{i % devices:02d}"
        seq[dev] = seq.get(dev, 0) + 1
        out.append(Transcript(device_id=dev, utterance_id=new_utterance_id(), text=f"{moods[i % len(moods)]} #{seq[dev]}"))
    return out


class Reader(threading.Thread):
    """Reads committed emotion events as they appear and records when each arrived."""

    def __init__(self, client: ClientConfig, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = committed_consumer(client, f"check-{os.urandom(3).hex()}")
        self.consumer.subscribe([topic])
        self.events: list[dict] = []
        self.arrivals: list[float] = []
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            msg = self.consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            self.events.append(json.loads(msg.value()))
            self.arrivals.append(time.monotonic())
        self.consumer.close()

    def longest_gap(self) -> float:
        gaps = [b - a for a, b in zip(self.arrivals, self.arrivals[1:])]
        return max(gaps, default=0.0)


def _produce_paced(client: ClientConfig, topic: str, items: list[Transcript], seconds: float, on_tick=None) -> float:
    """Send ``items`` spread over ``seconds``; returns the longest single delivery wait."""
    producer = idempotent_producer(client, **{"message.timeout.ms": 300000, "delivery.timeout.ms": 300000})
    errors: list[str] = []
    sent_at: dict[str, float] = {}
    worst = [0.0]

    def done(err, msg) -> None:
        if err:
            errors.append(str(err))
            return
        uid = json.loads(msg.value())["utterance_id"]
        worst[0] = max(worst[0], time.monotonic() - sent_at[uid])

    start = time.monotonic()
    for n, t in enumerate(items):
        target = start + seconds * n / len(items)
        while time.monotonic() < target:
            producer.poll(0.01)
        if on_tick:
            on_tick(time.monotonic() - start)
        sent_at[t.utterance_id] = time.monotonic()
        producer.produce(topic, key=t.device_id.encode(), value=t.encode(), on_delivery=done)
    assert producer.flush(300) == 0
    assert not errors, errors[:3]
    return worst[0]


def _start_worker(cluster: LabCluster, source: str, target: str, group: str, log: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "emostream", "worker", "--bootstrap", cluster.bootstrap, "--source-topic", source,
            "--target-topic", target, "--group", group,
            # The admin produces the transcripts here, unsigned: the record key names the device.
            # (Signed device identity has its own tests in test_security_kafka; these check the faults.)
            "--security-profile", str(cluster.admin_profile), "--identity", "key"]
    out = open(log, "ab")
    proc = subprocess.Popen(cluster.lab.cmd(WORKER_HOST, argv), stdout=out, stderr=subprocess.STDOUT)
    out.close()
    return proc


def _check_exactly_once(items: list[Transcript], events: list[dict]) -> tuple[int, int]:
    """(lost, duplicated); asserts per-device order of what arrived."""
    want = {t.utterance_id for t in items}
    seen: dict[str, int] = {}
    for e in events:
        seen[e["utterance_id"]] = seen.get(e["utterance_id"], 0) + 1
    lost = len(want - set(seen))
    dup = sum(c - 1 for c in seen.values())
    last: dict[str, int] = {}
    for e in events:
        n = int(e["text"].rsplit("#", 1)[1])
        assert n > last.get(e["device_id"], 0), f"order broken for {e['device_id']}: {n} after {last[e['device_id']]}"
        last[e["device_id"]] = n
    return lost, dup


def _pipeline_topics(cluster: LabCluster, tag: str) -> tuple[str, str]:
    admin = Admin(cluster.client)
    source, target = f"stt.transcripts.{tag}", f"emotion.events.{tag}"
    for name in (source, target, f"{source}.dlq"):
        create_topic(admin, plan_topic(name, BROKERS, partitions=6))
    create_topic(admin, plan_dedupe(source, 6, BROKERS))
    return source, target


def _run_with_fault(cluster: LabCluster, tmp_path: Path, fault, heal, n: int = 7_500) -> dict:
    source, target = _pipeline_topics(cluster, os.urandom(3).hex())
    items = _transcripts(n, devices=50)
    worker = _start_worker(cluster, source, target, f"g-{os.urandom(3).hex()}", tmp_path / "worker.log")
    reader = Reader(cluster.client, target)
    reader.start()
    state = {"faulted": None, "healed": None}

    def tick(elapsed: float) -> None:
        # Cut for 12 s: longer than the controller's broker session timeout (9 s), so the cut
        # host is fenced and its partitions' leadership moves while the pipeline runs.
        if state["faulted"] is None and elapsed > 5:
            state["faulted"] = fault(source)
        elif state["faulted"] is not None and state["healed"] is None and elapsed > 17:
            heal(state["faulted"])
            state["healed"] = True

    try:
        worst_delivery = _produce_paced(cluster.client, source, items, seconds=30, on_tick=tick)
        if state["healed"] is None and state["faulted"] is not None:
            heal(state["faulted"])
        deadline = time.monotonic() + 180
        while len({e["utterance_id"] for e in reader.events}) < n and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.5)
        time.sleep(3)  # anything extra (a duplicate) would show up now
    finally:
        reader.stop_flag.set()
        reader.join(10)
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
    lost, dup = _check_exactly_once(items, reader.events)
    figures = {"records": n, "events": len(reader.events), "lost": lost, "duplicates": dup,
               "longest_output_gap_s": round(reader.longest_gap(), 2), "longest_produce_wait_s": round(worst_delivery, 2)}
    print(json.dumps(figures))
    (tmp_path / "figures.json").write_text(json.dumps(figures))
    assert (lost, dup) == (0, 0), (figures, (tmp_path / "worker.log").read_text()[-3000:])
    return figures


def test_cut_one_broker_host_off_the_network(lab_cluster: LabCluster, tmp_path: Path) -> None:
    victim = 1

    def fault(source: str) -> int:
        lab_cluster.lab.cut(victim)
        return victim

    def heal(i: int) -> None:
        lab_cluster.lab.heal(i)

    _run_with_fault(lab_cluster, tmp_path, fault, heal)
    lab_cluster.wait_brokers(BROKERS)


def test_kill_the_host_of_the_transcripts_leader(lab_cluster: LabCluster, tmp_path: Path) -> None:
    admin = Admin(lab_cluster.client)
    holder: dict[str, str] = {}

    def fault(source: str) -> int:
        leader = admin.partitions_of(source)[0][0]
        holder["topic"] = source
        lab_cluster.kill_broker(leader)  # the host dies: its broker process with it
        lab_cluster.lab.cut(leader)
        return leader

    def heal(i: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and admin.partitions_of(holder["topic"])[0][0] in (i, -1):
            time.sleep(0.5)
        holder["new_leader"] = str(admin.partitions_of(holder["topic"])[0][0])
        lab_cluster.lab.heal(i)
        lab_cluster.start_broker(i)

    _run_with_fault(lab_cluster, tmp_path, fault, heal)
    assert holder["new_leader"] not in ("-1",), "leadership did not move"
    lab_cluster.wait_brokers(BROKERS)
