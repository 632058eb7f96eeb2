"""The cluster side of security: session lifetime after a password change, private files, host certificates."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException, Producer
from cryptography import x509

from emostream.cluster import LocalCluster
from emostream.cluster.material import SecurityFiles
from emostream.kafka.admin import Admin
from emostream.kafka.configuration import ClientConfig
from emostream.security.users import add_user
from emostream.topics import create_topic, plan_topic
from tests.cli_inprocess import run_cli
from tests.conftest import discard, free_base_port

REAUTH_S = 5
CUT_OFF_MARGIN_S = 10  # a produce request in flight, librdkafka's reconnect backoff, a loaded 2-core box


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _cli(*args: str) -> str:
    done = run_cli(*args)
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def secure_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    # A folder the cluster makes itself, so its own mode is ours to check too.
    cluster = LocalCluster(tmp_path_factory.mktemp("reauth") / "cluster")
    try:
        cluster.up(brokers=1, base_port=free_base_port(1), heap_mb=384, secure=True, reauth_s=REAUTH_S)
        yield cluster
    finally:
        discard(cluster)


def _device_client(cluster: LocalCluster, user: str, password: str) -> ClientConfig:
    files = SecurityFiles.of_cluster(cluster.dir)
    return ClientConfig(cluster.bootstrap, {"security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512",
                                            "sasl.username": user, "sasl.password": password,
                                            "ssl.ca.location": str(files.ca.cert_path)})


class _Talker(threading.Thread):
    """A device that keeps producing every 100 ms and records when each delivery succeeded or failed."""

    def __init__(self, client: ClientConfig) -> None:
        super().__init__(daemon=True)
        self.delivered: list[float] = []
        self.failed: list[float] = []
        self.errors: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.producer = Producer(client.librdkafka(error_cb=lambda e: self.errors.append((time.monotonic(), str(e))),
                                                   **{"linger.ms": 0, "message.timeout.ms": 4000}))

    def _done(self, err, msg) -> None:
        (self.failed if err else self.delivered).append(time.monotonic())

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.producer.produce("stt.transcripts", b"still talking", b"pi-rot", on_delivery=self._done)
            except KafkaException as exc:  # add_user re-grants the role: a moment without ACLs
                self.errors.append((time.monotonic(), str(exc)))
            self.producer.poll(0.1)
        self.producer.flush(6)


@pytest.mark.kafka
def test_a_rotated_password_cuts_off_a_live_producer_within_the_reauth_time(secure_cluster: LocalCluster) -> None:
    admin_profile = SecurityFiles.of_cluster(secure_cluster.dir).admin_profile
    create_topic(Admin(secure_cluster.client_config()), plan_topic("stt.transcripts", 1, partitions=1))
    add_user(admin_profile, "pi-rot", "device", password="first-password-0123456789")
    talker = _Talker(_device_client(secure_cluster, "pi-rot", "first-password-0123456789"))
    talker.start()
    try:
        time.sleep(3)
        assert talker.delivered and not talker.failed, talker.errors  # the control: the device's session works
        rotating = time.monotonic()  # the password changes during add_user: measuring from its start overstates the cut-off
        add_user(admin_profile, "pi-rot", "device", password="second-password-0123456789")
        rotated = time.monotonic()
        deadline = rotating + REAUTH_S + CUT_OFF_MARGIN_S + 10
        while time.monotonic() < deadline and not (talker.failed and time.monotonic() - max([rotating, *talker.delivered]) > 5):
            time.sleep(0.2)
    finally:
        talker.stop.set()
        talker.join(30)
    cut_off = max([rotating, *talker.delivered]) - rotating
    auth_errors = [t - rotating for t, e in talker.errors if t > rotating and "uthentication" in e]
    print(f"reauth {REAUTH_S}s: last delivery with the old password {cut_off:.1f}s after the rotation started "
          f"(add_user took {rotated - rotating:.1f}s); first authentication error after "
          f"{auth_errors[0] if auth_errors else float('nan'):.1f}s; {sum(t > rotating for t in talker.delivered)} deliveries "
          f"after the rotation started, {len(talker.failed)} failed")
    assert sum(t > rotated for t in talker.delivered) == 0 or cut_off <= REAUTH_S + CUT_OFF_MARGIN_S, cut_off
    assert cut_off <= REAUTH_S + CUT_OFF_MARGIN_S, (cut_off, talker.errors[-5:])
    assert auth_errors and talker.failed, talker.errors[-5:]


@pytest.mark.kafka
def test_cluster_folders_and_files_are_private_after_up(secure_cluster: LocalCluster) -> None:
    root = secure_cluster.dir
    assert _mode(root) == 0o700
    assert secure_cluster.log_file(0).stat().st_size > 0  # the broker wrote its log: the JVM's files are in the walk
    leaks = []
    for path in [root, *root.rglob("*")]:
        if path.suffix == ".crt":  # a CA certificate is public by design (its folder is 0700 anyway)
            continue
        want = 0o700 if path.is_dir() else 0o600
        if _mode(path) & 0o077 or (path.is_dir() and _mode(path) != want):
            leaks.append(f"{oct(_mode(path))} {path.relative_to(root)}")
    assert not leaks, leaks
    data = Path(root / "node-0" / "data")
    assert any(p.is_dir() for p in data.iterdir())  # partition folders made by the broker itself


def test_certs_issue_out_keeps_an_existing_folders_mode(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    cluster_dir = str(tmp_path / "cluster")
    _cli("certs", "issue", "--device", "pi-1", "--dir", cluster_dir, "--out", str(shared))
    assert _mode(shared) == 0o1777
    assert _mode(shared / "pi-1.key") == 0o600
    fresh = tmp_path / "new" / "certs"
    _cli("certs", "issue", "--device", "pi-2", "--dir", cluster_dir, "--out", str(fresh))
    assert _mode(fresh) == 0o700 and _mode(fresh / "pi-2.key") == 0o600
    _cli("certs", "issue", "--host", "kafka-0", "--ip", "10.0.0.1", "--dir", cluster_dir, "--out", str(shared))
    assert _mode(shared) == 0o1777
    assert _mode(shared / "broker.pem") == 0o600


def test_host_certificate_names_the_host_and_maps_to_the_broker_principal(tmp_path: Path) -> None:
    cluster_dir = str(tmp_path / "ops")
    _cli("certs", "init", "--dir", cluster_dir)
    out = tmp_path / "h0"
    shown = _cli("certs", "issue", "--host", "kafka-0.example.org", "--ip", "10.0.0.1", "--dir", cluster_dir, "--out", str(out))
    assert "PRIVATE KEY" not in shown
    pem = (out / "broker.pem").read_bytes()
    assert pem.index(b"PRIVATE KEY") < pem.index(b"CERTIFICATE")
    leaf = x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN CERTIFICATE-----"):])
    ca = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    leaf.verify_directly_issued_by(ca)
    assert (out / "ca.crt").read_bytes() == SecurityFiles.of_cluster(Path(cluster_dir)).ca.cert_pem()
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(v) for v in sans.get_values_for_type(x509.DNSName)] == ["kafka-0.example.org"]
    assert [str(v) for v in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.1"]
    assert leaf.subject.rfc4514_string() == "CN=emostream-broker,OU=brokers,O=emostream"
