"""A secure cluster against a real broker: who gets in, what each role may do, quotas, no leaks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from emostream.cluster import LocalCluster
from emostream.errors import TopicError, UsageError
from emostream.events import InvalidEvent, Transcript, format_ts
from emostream.kafka.admin import Admin
from emostream.kafka.configuration import ClientConfig
from emostream.kafka.consumer import committed_consumer
from emostream.kafka.producer import idempotent_producer
from emostream.kafka.types import OFFSET_BEGINNING, TopicPartition
from emostream.cluster.tls import CertificateAuthority
from emostream.security.files import SecurityFiles
from emostream.security.users import remove_user
from emostream.signing import DeviceKeys, DeviceSigner, decode_key_record
from tests.cli_inprocess import run_cli
from tests.conftest import discard, free_base_port
from tests.worker_helpers import model_spec, stop

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[1]
SLOW_DEVICE_RATE = 20_000  # bytes/s


@dataclass
class Secure:
    """The module's secure cluster, its users' profiles and every CLI output we may show."""

    dir: Path
    cluster: LocalCluster
    admin: Path
    profiles: dict[str, Path]
    outputs: list[str] = field(default_factory=list)  # stderr/stdout of CLI runs that must hold no secret

    def client(self, user: str) -> ClientConfig:
        return ClientConfig.resolve(None, str(self.profiles[user] if user != "admin" else self.admin))

    def secrets(self) -> list[str]:
        found = [json.loads(self.admin.read_text())["password"]]
        for path in self.profiles.values():
            profile = json.loads(path.read_text())
            found += [profile["password"], *([profile["signing_key"]] if "signing_key" in profile else [])]
        return found


_emostream = run_cli


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    directory = tmp_path_factory.mktemp("secure")
    cluster = LocalCluster(directory)
    try:
        cluster.up(brokers=1, base_port=free_base_port(1), heap_mb=384, secure=True)
        status = _emostream("kafka", "status", "--json", "--dir", str(directory))
        admin = Path(json.loads(status.stdout)["admin_profile"])
        env = Secure(directory, cluster, admin, {}, [status.stdout, status.stderr])
        ensure = _emostream("topics", "ensure", "--security-profile", str(admin), "--partitions", "3")
        env.outputs += [ensure.stdout, ensure.stderr]
        for user, role, extra in (("pi-1", "device", ["--produce-rate", str(SLOW_DEVICE_RATE)]), ("pi-2", "device", []),
                                  ("worker1", "worker", []), ("dash1", "dashboard", [])):
            out = directory / f"{user}.json"
            added = _emostream("users", "add", user, "--role", role, "--dir", str(directory), "--out", str(out), *extra)
            assert f"wrote the profile of {user} ({role}) to {out}" in added.stdout  # the secrets went to the file only
            env.outputs += [added.stdout, added.stderr]
            env.profiles[user] = out
        yield env
    finally:
        discard(cluster)


def _refused(client: ClientConfig) -> list[str]:
    """Assert the cluster cannot be used with ``client``; the errors librdkafka reported meanwhile."""
    errors: list[str] = []
    producer = Producer(client.librdkafka(error_cb=lambda e: errors.append(str(e))))
    with pytest.raises(KafkaException):
        producer.list_topics(timeout=4)
    producer.poll(1)  # serves error_cb
    return errors


def test_only_sasl_ssl_with_the_right_password_and_ca_gets_in(secure: Secure, tmp_path: Path) -> None:
    admin = secure.client("admin")
    Admin(admin, timeout_s=10).cluster_info()  # the control: the admin gets in
    ca = admin.security["ssl.ca.location"]
    _refused(ClientConfig(admin.bootstrap))  # plain TCP
    _refused(ClientConfig(admin.bootstrap, {"security.protocol": "SSL", "ssl.ca.location": ca}))  # TLS, no SASL
    wrong = {**secure.client("pi-1").security, "sasl.password": "not-the-password"}
    errors = _refused(ClientConfig(admin.bootstrap, wrong))
    assert any("Authentication failed" in e for e in errors), errors
    other = CertificateAuthority.create(tmp_path / "other-ca.crt", tmp_path / "other-ca.key")
    untrusting = {**secure.client("pi-1").security, "ssl.ca.location": str(other.cert_path)}
    errors = _refused(ClientConfig(admin.bootstrap, untrusting))
    assert any("certificate verify failed" in e for e in errors), errors


def _produce(client: ClientConfig, topic: str, values: list[bytes], key: bytes = b"pi-1") -> list[KafkaError]:
    errors: list[KafkaError] = []
    producer = idempotent_producer(client, **{"message.timeout.ms": 15000})
    for value in values:
        producer.produce(topic, value, key, on_delivery=lambda err, msg: err and errors.append(err))
    producer.flush(30)
    return errors


def _poll_error(client: ClientConfig, group: str, topic: str) -> KafkaError | None:
    consumer = committed_consumer(client, group)
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() and msg.error().code() != KafkaError._PARTITION_EOF:
                return msg.error()
    finally:
        consumer.close()
    return None


def _read(client: ClientConfig, group: str, topic: str, want: int, timeout_s: float = 30, until=None) -> list:
    """Up to ``want`` records of ``topic`` within ``timeout_s``; stops early at the first one ``until`` accepts."""
    consumer = committed_consumer(client, group)
    consumer.subscribe([topic])
    got = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(got) < want and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert not msg.error(), msg.error()
            got.append(msg)
            if until is not None and until(msg):
                break
    finally:
        consumer.close()
    return got


def test_device_sends_transcripts_and_reads_only_its_own_results_with_its_own_group(secure: Secure) -> None:
    device, admin = secure.client("pi-1"), secure.client("admin")
    assert _produce(device, "stt.transcripts", [b"hello from pi-1"]) == []
    assert _produce(admin, "emotion.events.pi-1", [b'{"marker": "for-pi-1"}']) == []
    assert _produce(admin, "emotion.events", [b'{"marker": "shared"}']) == []
    got = _read(device, "emostream-edge-pi-1", "emotion.events.pi-1", 1)
    assert [m.value() for m in got] == [b'{"marker": "for-pi-1"}']

    # Not the shared topic, not another device's results, not transcripts; not even with its own group.
    for topic in ("emotion.events", "emotion.events.pi-2", "stt.transcripts"):
        err = _poll_error(device, "emostream-edge-pi-1", topic)
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, topic
    # Its group is exact: the ids that merely start with 'pi-1' are other devices' groups.
    for group in ("emostream-edge-pi-10", "emostream-edge-pi-1-x", "emostream-edge-pi-2"):
        err = _poll_error(device, group, "emotion.events.pi-1")
        assert err is not None and err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, group
    for topic in ("emotion.events", "emotion.events.pi-1"):  # results come from the worker only
        (err,) = _produce(device, topic, [b"forged event"])
        assert err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, topic
    (err,) = _produce(device, "emostream.device-keys", [b'{"v": 1, "ed25519": "forged"}'])
    assert err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    admin_api = Admin(device, timeout_s=10)
    with pytest.raises(TopicError, match="(?i)authoriz"):
        admin_api.create_topic("pi-1-own-topic", 1, 1, {})
    with pytest.raises(TopicError, match="(?i)authoriz"):
        admin_api.delete_topics(["emotion.events.pi-1"])


def _registry(client: ClientConfig) -> list[tuple[bytes, bytes | None]]:
    """Every record of the key registry, in order (admin: no group ACL needed for an assignment)."""
    consumer = committed_consumer(client, f"emostream-test-{os.urandom(3).hex()}")
    try:
        _low, high = consumer.get_watermark_offsets(TopicPartition("emostream.device-keys", 0), timeout=10)
        consumer.assign([TopicPartition("emostream.device-keys", 0, OFFSET_BEGINNING)])
        records: list[tuple[bytes, bytes | None]] = []
        last, deadline = -1, time.monotonic() + 30
        while last < high - 1 and time.monotonic() < deadline:  # offsets, not counts: compaction leaves gaps
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            records.append((msg.key(), msg.value()))
            last = msg.offset()
        return records
    finally:
        consumer.close()


def _keys(secure: Secure) -> DeviceKeys:
    keys = DeviceKeys()
    for key, value in _registry(secure.client("admin")):
        keys.apply(decode_key_record(key, value))
    return keys


def test_users_add_registers_the_public_key_of_the_profiles_signing_key(secure: Secure) -> None:
    keys = _keys(secure)
    for device in ("pi-1", "pi-2"):
        signer = DeviceSigner(json.loads(secure.profiles[device].read_text())["signing_key"])
        value = Transcript(device_id=device, utterance_id="u-1", text="hi", ended_at=format_ts(time.time())).encode()
        keys.verify(device, device.encode(), value, signer.headers(device.encode(), value))  # no error: it verifies
        with pytest.raises(InvalidEvent, match="does not match"):  # and only for its own device id
            keys.verify("pi-1" if device == "pi-2" else "pi-2", device.encode(), value, signer.headers(device.encode(), value))
    assert "worker1" not in keys and "dash1" not in keys  # only devices sign
    admin = Admin(secure.client("admin"), timeout_s=10)
    registry = admin.describe_topic("emostream.device-keys")
    assert registry.partitions == 1 and registry.configs["cleanup.policy"] == "compact"
    results = admin.describe_topic("emotion.events.pi-1")
    assert results.partitions == 1 and results.configs["unclean.leader.election.enable"] == "false"
    dedupe = admin.describe_topic("stt.transcripts.dedupe")  # made by 'topics ensure', like the transcripts topic
    assert dedupe.partitions == admin.describe_topic("stt.transcripts").partitions == 3
    assert dedupe.configs["cleanup.policy"] == "compact,delete" and dedupe.configs["retention.ms"] == "86400000"


def test_device_with_a_client_certificate_from_our_ca(secure: Secure) -> None:
    shown = _emostream("certs", "issue", "--device", "pi-2", "--dir", str(secure.dir), "--out", str(secure.dir / "certs"))
    secure.outputs += [shown.stdout, shown.stderr]
    mtls = {**secure.client("pi-2").security, "ssl.certificate.location": str(secure.dir / "certs" / "pi-2.crt"),
            "ssl.key.location": str(secure.dir / "certs" / "pi-2.key")}
    assert _produce(ClientConfig(secure.client("pi-2").bootstrap, mtls), "stt.transcripts", [b"hello over mTLS"], b"pi-2") == []


def _throttle_ms(client: ClientConfig, key: bytes, n: int, size: int) -> int:
    throttled: list[int] = []

    def on_throttle(event) -> None:  # librdkafka's report of the broker's throttle_time_ms
        throttled.append(int(event.throttle_time * 1000))

    producer = Producer(client.librdkafka(**{"throttle_cb": on_throttle, "acks": "all", "linger.ms": 0,
                                             "batch.size": size + 1024, "compression.type": "none"}))
    for i in range(n):
        producer.produce("stt.transcripts", os.urandom(size // 2).hex().encode(), key)
        producer.poll(0)
    assert producer.flush(120) == 0
    producer.poll(1)
    return max(throttled, default=0)


def test_device_over_its_produce_quota_is_throttled_and_the_other_is_not(secure: Secure) -> None:
    # 300 kB in a burst: ~30 kB/s over Kafka's 10 s quota window, above pi-1's 20 kB/s, far below pi-2's 1 MB/s.
    assert _throttle_ms(secure.client("pi-1"), b"pi-1", 75, 4000) > 0
    assert _throttle_ms(secure.client("pi-2"), b"pi-2", 75, 4000) == 0


def test_worker_runs_exactly_once_over_sasl_ssl(secure: Secure, tmp_path: Path) -> None:
    run = f"eos-{os.urandom(3).hex()}"
    sent = []
    producer = idempotent_producer(secure.client("pi-2"))
    signer = DeviceSigner(json.loads(secure.profiles["pi-2"].read_text())["signing_key"])
    for i in range(40):
        t = Transcript(device_id="pi-2", utterance_id=f"{run}-{i:03d}", text=f"utterance {i}: I am so happy", ended_at=format_ts(time.time()))
        producer.produce("stt.transcripts", t.encode(), b"pi-2", headers=signer.headers(b"pi-2", t.encode()))
        sent.append(t.utterance_id)
    assert producer.flush(30) == 0

    log = tmp_path / "worker.log"
    cmd = [sys.executable, "-m", "emostream", "worker", "--security-profile", str(secure.profiles["worker1"]),
           "--instance-id", "sec-test", "--threads", "1"]
    model = model_spec()
    if model:
        cmd += ["--model", model]
    worker = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
    try:
        dashboard = committed_consumer(secure.client("dash1"), f"emostream-dashboard-{run}")
        dashboard.subscribe(["emotion.events"])
        seen: dict[str, int] = {}
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline and len(seen) < len(sent):
                assert worker.poll() is None, log.read_text()[-3000:]
                msg = dashboard.poll(0.5)
                if msg is None or msg.error():
                    continue
                uid = json.loads(msg.value()).get("utterance_id", "")
                if uid.startswith(run):
                    seen[uid] = seen.get(uid, 0) + 1
            time.sleep(3)  # a duplicate would arrive now: the worker keeps polling until terminated
            while (msg := dashboard.poll(1.0)) is not None:
                if not msg.error() and (uid := json.loads(msg.value()).get("utterance_id", "")).startswith(run):
                    seen[uid] = seen.get(uid, 0) + 1
        finally:
            dashboard.close()
    finally:
        stop(worker, timeout=30)
    assert set(seen) == set(sent), log.read_text()[-3000:]
    assert all(n == 1 for n in seen.values()), {k: v for k, v in seen.items() if v != 1}
    secure.outputs.append(log.read_text())


def test_up_again_keeps_the_cluster_secure(secure: Secure) -> None:
    status = secure.cluster.up()  # already running: only waits with the admin profile
    assert status.extra["secure"] is True and status.extra["admin_profile"] == str(secure.admin)


def test_users_list_rotate_and_remove(secure: Secure, tmp_path: Path) -> None:
    listed = _emostream("users", "list", "--json", "--dir", str(secure.dir))
    users = {u["name"]: u for u in json.loads(listed.stdout)}
    assert {"admin", "pi-1", "pi-2", "worker1", "dash1"} <= set(users)
    assert "READ on group 'emostream-edge-pi-1'" in users["pi-1"]["acls"]
    assert "READ on topic 'emotion.events.pi-1'" in users["pi-1"]["acls"]
    temp = _emostream("users", "add", "tmp1", "--role", "device", "--password", "-", "--dir", str(secure.dir),
                      stdin="chosen-password-123\n")
    first = json.loads(temp.stdout)  # no --out: the profile goes to stdout
    assert first["password"] == "chosen-password-123"
    out = tmp_path / "tmp1.json"
    again = _emostream("users", "add", "tmp1", "--role", "device", "--dir", str(secure.dir), "--out", str(out))
    second = json.loads(out.read_text())
    assert second["signing_key"] != first["signing_key"] and second["password"] != first["password"]
    for secret in (second["password"], second["signing_key"]):
        assert secret not in again.stdout + again.stderr  # with --out, stdout is a confirmation only
    assert f"registered public key ed25519:{DeviceSigner(second['signing_key']).public_b64()}" in again.stdout
    value = b"rotated"
    keys = _keys(secure)
    keys.verify("tmp1", b"tmp1", value, DeviceSigner(second["signing_key"]).headers(b"tmp1", value))
    with pytest.raises(InvalidEvent, match="does not match"):  # the rotated-out key stops verifying
        keys.verify("tmp1", b"tmp1", value, DeviceSigner(first["signing_key"]).headers(b"tmp1", value))

    removed = _emostream("users", "remove", "tmp1", "--dir", str(secure.dir))
    assert "password deleted, 5 ACL(s) deleted" in removed.stdout
    assert "results topic emotion.events.tmp1 deleted" in removed.stdout
    assert "tmp1" not in _keys(secure)  # tombstoned: its signatures no longer verify
    assert (b"tmp1", None) == _registry(secure.client("admin"))[-1]
    admin = Admin(secure.client("admin"), timeout_s=10)
    assert "emotion.events.tmp1" not in admin.topic_names()
    assert "tmp1" not in {u["name"] for u in json.loads(_emostream("users", "list", "--json", "--dir", str(secure.dir)).stdout)}
    twice = remove_user(secure.admin, "tmp1")
    assert (twice.had_password, twice.acls_deleted, twice.was_device) == (False, 0, False)
    with pytest.raises(UsageError, match="reserved"):
        remove_user(secure.admin, "admin")
    secure.outputs += [listed.stdout, listed.stderr, removed.stdout, removed.stderr, temp.stderr, again.stdout, again.stderr]
    shown = _emostream("certs", "show", "--dir", str(secure.dir))
    secure.outputs += [shown.stdout, shown.stderr]
    assert "CN=emostream-broker" in shown.stdout


def test_no_secret_in_logs_or_outputs_and_keys_are_private(secure: Secure) -> None:
    files = SecurityFiles.of_cluster(secure.dir)
    texts = [secure.cluster.log_file(0).read_text(errors="replace"), *secure.outputs]
    assert len(texts) > 5
    for secret in [*secure.secrets(), "PRIVATE KEY"]:
        for text in texts:
            assert secret not in text
    assert not list(files.root.glob(".*"))  # no argument or properties file with a password left behind
    for path in (files.ca.key_path, files.broker_pem, files.admin_profile, *secure.profiles.values()):
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_a_device_cannot_speak_for_another_nor_silence_it(secure: Secure, tmp_path: Path) -> None:
    """Findings 5-7 end to end: pi-1, with its own credentials, sends 'as pi-2' through the normal
    edge command; the worker dead-letters it (the signature is pi-1's), pi-2's listener never sees
    it, pi-2's real transcript is classified, and each device reads its own results only."""
    from emostream.edge.listen import listen

    run = os.urandom(3).hex()
    spool1, spool2 = tmp_path / "pi-1.db", tmp_path / "pi-2.db"
    _emostream("edge", "send", "--security-profile", str(secure.profiles["pi-1"]), "--spool", str(spool1),
               "--device", "pi-2", "--text", f"forged {run}: I am so angry at everyone")
    _emostream("edge", "send", "--security-profile", str(secure.profiles["pi-1"]), "--spool", str(spool1),
               "--device", "pi-1", "--text", f"own {run}: I am happy")
    _emostream("edge", "send", "--security-profile", str(secure.profiles["pi-2"]), "--spool", str(spool2),
               "--device", "pi-2", "--text", f"real {run}: my doctor called")
    log = tmp_path / "worker.log"
    cmd = [sys.executable, "-m", "emostream", "worker", "--security-profile", str(secure.profiles["worker1"]),
           "--instance-id", f"id-{run}", "--threads", "1"]
    if model_spec():
        cmd += ["--model", model_spec()]
    worker = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
    try:
        got: dict[str, list[dict]] = {"pi-1": [], "pi-2": []}
        for dev in got:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not any(run in e["text"] for e in got[dev]):
                assert worker.poll() is None, log.read_text()[-3000:]
                listen(secure.client(dev), dev, got[dev].append, from_beginning=True, idle_timeout_s=3,
                       group=f"emostream-edge-{dev}")
        # Other tests of this module dead-letter records too: read until ours is there.
        dlq = _read(secure.client("admin"), f"dlq-{run}", "stt.transcripts.dlq", want=1_000, timeout_s=20,
                    until=lambda m: run.encode() in (m.value() or b""))
    finally:
        stop(worker, timeout=30)
    texts = {dev: [e["text"] for e in evs if run in e["text"]] for dev, evs in got.items()}
    assert texts == {"pi-1": [f"own {run}: I am happy"], "pi-2": [f"real {run}: my doctor called"]}, log.read_text()[-2000:]
    forged = [m for m in dlq if run.encode() in (m.value() or b"")]
    assert [dict(m.headers())["error.type"] for m in forged] == [b"bad_signature"]
