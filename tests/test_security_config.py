"""Secure-mode building blocks without a broker: CA, listeners, properties, roles, profiles."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
from cryptography import x509

from emostream.cluster.config import ClusterSettings, local_nodes, server_properties, voters_of
from emostream.cluster.state import ClusterState
from emostream.errors import ConfigError, UsageError
from emostream.cluster.tls import CertificateAuthority, describe
from emostream.security.files import (
    SecurityFiles,
    ensure_cluster_material,
    init_ca,
    issue_broker_cert,
    issue_device_cert,
    scram_format_args,
)
from emostream.cluster.config import broker_principal_rule, secure_node, secure_properties
from emostream.kafka.configuration import ClientConfig, librdkafka_security, read_security_profile
from emostream.kafka.security import AclSpec
from emostream.security.profile import client_profile, java_client_properties, read_profile
from emostream.security.roles import check_user_id, role_acls
from emostream.security.users import quota_command
from emostream.signing import generate_key
from emostream.topics import DEDUPE_RETENTION_MS, plan_dedupe, plan_device_events, plan_key_registry


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _sans(pem: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(pem.read_bytes().split(b"-----END PRIVATE KEY-----\n")[-1])
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in ext.get_values_for_type(x509.DNSName)} | {str(v) for v in ext.get_values_for_type(x509.IPAddress)}


def test_cluster_material_is_private_and_complete(tmp_path: Path) -> None:
    files = ensure_cluster_material(tmp_path, "127.0.0.1:9092", "203.0.113.7")
    assert _mode(files.root) == 0o700
    for secret in (files.ca.key_path, files.broker_pem, files.admin_profile):
        assert _mode(secret) == 0o600, secret
    assert {"localhost", "127.0.0.1", "203.0.113.7"} <= _sans(files.broker_pem)
    pem = files.broker_pem.read_bytes()
    assert pem.index(b"PRIVATE KEY") < pem.index(b"CERTIFICATE")  # key first, then chain: Kafka's PEM keystore layout
    leaf = x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN CERTIFICATE-----"):])
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(files.ca.cert_path.read_bytes()))
    assert describe(files.broker_pem).subject == "CN=emostream-broker,OU=brokers,O=emostream"
    profile = read_profile(files.admin_profile)
    assert profile["username"] == "admin" and len(profile["password"]) >= 24
    assert profile["security_protocol"] == "SASL_SSL" and profile["sasl_mechanism"] == "SCRAM-SHA-512"


def test_rotation_keeps_the_ca_and_the_names(tmp_path: Path) -> None:
    files = ensure_cluster_material(tmp_path, "127.0.0.1:9092", None)
    ca_before = files.ca.cert_path.read_bytes()
    issue_broker_cert(files, None, ["kafka.example.org"])
    first = describe(files.broker_pem)
    issue_broker_cert(files, None)
    second = describe(files.broker_pem)
    assert files.ca.cert_path.read_bytes() == ca_before
    assert first.sha256 != second.sha256
    assert "kafka.example.org" in second.sans
    assert not init_ca(files)  # an existing CA is never replaced


def test_device_certificate_is_client_only_and_not_a_broker(tmp_path: Path) -> None:
    files = SecurityFiles.of_cluster(tmp_path)
    init_ca(files)
    cert_path, key_path = issue_device_cert(files, "pi-kitchen", tmp_path / "out")
    assert _mode(key_path) == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.subject.rfc4514_string() == "CN=pi-kitchen,OU=devices,O=emostream"
    # The broker mapping rule (User:broker, a super user) must never match a device certificate.
    pattern = broker_principal_rule().removeprefix("RULE:").split("/")[0]
    assert re.match(pattern, "CN=emostream-broker,OU=brokers,O=emostream")
    assert not re.match(pattern, cert.subject.rfc4514_string())


def test_ca_refuses_to_issue_without_a_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="certs init"):
        CertificateAuthority(tmp_path / "ca.crt", tmp_path / "ca.key").issue("x", "devices", [], server=False)


def test_secure_nodes_swap_listeners_not_templates(tmp_path: Path) -> None:
    state = ClusterState("id", "4.2.0", 2, 30000, 384, None, secure=True)
    nodes = state.nodes(tmp_path)
    assert [(n.client.protocol, n.internal.protocol, n.controller.protocol) for n in nodes] == [("SASL_SSL", "SSL", "SSL")] * 2
    assert all(n.internal.bind_host == "127.0.0.1" and n.controller.bind_host == "127.0.0.1" for n in nodes)
    plain = local_nodes(2, tmp_path, 30000)
    assert [secure_node(n).client.port for n in plain] == [n.client.port for n in plain]
    overrides = secure_properties(nodes[0], tmp_path / "broker.pem", tmp_path / "ca.crt")
    props = server_properties(nodes[0], ClusterSettings("id", voters_of(nodes), 2, overrides))
    assert props["listener.security.protocol.map"] == "CLIENT:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL"
    assert props["ssl.enabled.protocols"] == "TLSv1.3,TLSv1.2"
    assert props["ssl.keystore.type"] == props["ssl.truststore.type"] == "PEM"
    assert props["ssl.client.auth"] == "required"
    assert props["listener.name.client.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin;User:broker"
    assert not any("password" in k for k in props)


def test_plain_state_stays_plain(tmp_path: Path) -> None:
    nodes = ClusterState("id", "4.2.0", 1, 30000, 384).nodes(tmp_path)
    assert nodes[0].client.protocol == "PLAINTEXT"


def test_device_acls_are_exactly_what_it_needs() -> None:
    acls = set(role_acls("device", "pi-1"))
    assert acls == {
        AclSpec("TOPIC", "stt.transcripts", "LITERAL", "WRITE"),
        AclSpec("TOPIC", "stt.transcripts", "LITERAL", "DESCRIBE"),
        AclSpec("BROKER", "kafka-cluster", "LITERAL", "IDEMPOTENT_WRITE"),
        AclSpec("TOPIC", "emotion.events.pi-1", "LITERAL", "READ"),  # its own results, not the shared topic
        AclSpec("GROUP", "emostream-edge-pi-1", "LITERAL", "READ"),  # literal: 'pi-10' is another device
    }
    assert not any(a.pattern == "PREFIXED" for a in acls)


def test_worker_may_write_every_results_topic_and_keep_its_state() -> None:
    worker = set(role_acls("worker", "w"))
    assert AclSpec("TRANSACTIONAL_ID", "emostream-worker", "PREFIXED", "WRITE") in worker
    assert AclSpec("TOPIC", "stt.transcripts.dlq", "LITERAL", "WRITE") in worker
    assert AclSpec("TOPIC", "emotion.events", "PREFIXED", "WRITE") in worker  # shared + emotion.events.<ID>
    assert {AclSpec("TOPIC", "emostream.device-keys", "LITERAL", op) for op in ("READ", "DESCRIBE")} <= worker
    assert {AclSpec("TOPIC", "stt.transcripts.dedupe", "LITERAL", op) for op in ("READ", "WRITE", "DESCRIBE")} <= worker
    assert not any(a.operation == "WRITE" and a.name == "emostream.device-keys" for a in worker)  # only the admin registers keys
    dashboard = role_acls("dashboard", "d")
    assert all(a.operation == "READ" for a in dashboard)
    assert AclSpec("TOPIC", "emotion.events", "LITERAL", "READ") in dashboard


def test_state_and_device_topics_are_planned_durable_and_compacted() -> None:
    keys = plan_key_registry(3)
    assert (keys.name, keys.partitions, keys.replication) == ("emostream.device-keys", 1, 3)
    assert keys.configs == {"min.insync.replicas": "2", "unclean.leader.election.enable": "false", "cleanup.policy": "compact"}
    dedupe = plan_dedupe("stt.transcripts", 4, 1)
    assert (dedupe.name, dedupe.partitions, dedupe.replication) == ("stt.transcripts.dedupe", 4, 1)
    assert dedupe.configs["cleanup.policy"] == "compact,delete" and dedupe.configs["retention.ms"] == str(DEDUPE_RETENTION_MS)
    events = plan_device_events("pi-1", 2)
    assert (events.name, events.partitions, events.replication, events.configs["min.insync.replicas"]) == ("emotion.events.pi-1", 1, 2, "1")


@pytest.mark.parametrize("bad", ["", "admin", "broker", "a b", "x;User:admin", ".hidden", "x" * 65, "pié", "٣"])
def test_bad_user_ids_are_refused(bad: str) -> None:
    with pytest.raises(UsageError):
        check_user_id(bad)


def test_unknown_role_is_refused() -> None:
    with pytest.raises(UsageError, match="device, worker, dashboard"):
        role_acls("root", "x")


def test_admin_credentials_stay_out_of_argv(tmp_path: Path) -> None:
    files = SecurityFiles.of_cluster(tmp_path)
    init_ca(files)
    with scram_format_args(files, "s3cret-pw") as args:
        (arg,) = args
        assert arg.startswith("@") and "s3cret-pw" not in arg
        argfile = Path(arg[1:])
        assert _mode(argfile) == 0o600
        assert argfile.read_text() == "--add-scram\nSCRAM-SHA-512=[name=admin,password=s3cret-pw]\n"
    assert not argfile.exists()
    cmd = quota_command("cp", "java", "b:1", tmp_path / "x.properties", "pi-1", 1000)
    assert "producer_byte_rate=1000" in cmd and not any("s3cret" in c for c in cmd)


def test_java_client_properties_quote_jaas() -> None:
    props = java_client_properties({"username": "admin", "password": 'a"b\\c', "ca_file": "/ca.crt"})
    assert props["sasl.jaas.config"].endswith('username="admin" password="a\\"b\\\\c";')
    assert props["ssl.truststore.type"] == "PEM"
    with pytest.raises(ConfigError):
        java_client_properties({"username": "admin"})
    with pytest.raises(ConfigError, match="line break"):
        java_client_properties({"username": "admin", "password": 'x";\nfoo="', "ca_file": "/ca.crt"})


def test_a_device_profile_round_trips_through_the_one_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    private, _public = generate_key()
    profile = client_profile("b:9093", "pi-1", "pw", "/ca.crt", signing_key=private)
    path = tmp_path / "pi-1.json"
    path.write_text(json.dumps(profile))
    assert read_security_profile(path) == read_profile(path) == profile
    monkeypatch.setenv("EMOSTREAM_SECURITY_PROFILE", str(path))
    client = ClientConfig.resolve()
    assert client.bootstrap == "b:9093" and client.signing_key == private
    assert client.security == librdkafka_security(profile) == {
        "security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "pi-1",
        "sasl.password": "pw", "ssl.ca.location": "/ca.crt"}
    assert ClientConfig.resolve("other:1").bootstrap == "other:1"  # the flag beats the profile


@pytest.mark.parametrize("content, message", [
    (None, "does not exist; clients get one from 'emostream users add"),
    ("{", "not readable JSON"),
    ("[1]", "must be a JSON object"),
    ('{"pasword": "x"}', "unknown key.*'pasword'.*known keys are bootstrap"),
    ('{"username": "a", "username": "b"}', "sets 'username' twice"),
    ('{"password": 5}', "'password' must be a non-empty string, got int"),
    ('{"password": ""}', "non-empty string"),
    ('{"password": "a\\nb"}', "NUL or line break"),
    ('{"security_protocol": "TLS"}', "security_protocol must be one of"),
    ('{"signing_key": "c2hvcnQ="}', "signing_key is not a base64 Ed25519 key"),
    ("x" * (64 * 1024 + 1), "over 64 KiB"),
    (b"\xff\xfe", "not readable JSON"),
])
def test_profile_reader_says_what_is_wrong(tmp_path: Path, content: str | bytes | None, message: str) -> None:
    path = tmp_path / "p.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        read_security_profile(path)
    with pytest.raises(ConfigError):
        read_security_profile(tmp_path)  # a folder


def test_client_profile_refuses_what_the_reader_would() -> None:
    with pytest.raises(ConfigError, match="line break"):
        client_profile("b:1", "pi-1", "pw", "/ca\n.crt")


def test_a_ca_made_first_is_kept_by_the_new_cluster(tmp_path: Path) -> None:
    from emostream.cluster import LocalCluster

    files = SecurityFiles.of_cluster(tmp_path)
    init_ca(files)  # 'emostream certs init' before 'kafka up --secure'
    state = LocalCluster(tmp_path)._create(1, 30000, None, 384, secure=True)
    assert state.secure and files.ca.exists()


def test_secure_is_fixed_at_creation(tmp_path: Path) -> None:
    from emostream.cluster import LocalCluster

    cluster = LocalCluster(tmp_path)
    state = cluster._create(1, 30000, None, 384)
    with pytest.raises(UsageError, match="secure=False"):
        cluster._check_same_shape(state, None, None, None, True)
    cluster._check_same_shape(state, None, None, None, None)  # 'kafka up' without --secure keeps what it was


def test_cli_exposes_secure_up_certs_and_users() -> None:
    from emostream.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["kafka", "up", "--secure"]).secure is True
    assert parser.parse_args(["kafka", "up"]).secure is False
    add = parser.parse_args(["users", "add", "pi-1", "--produce-rate", "5000", "--security-profile", "a.json"])
    assert (add.id, add.role, add.produce_rate, add.security_profile) == ("pi-1", "device", 5000, "a.json")
    assert parser.parse_args(["certs", "issue", "--device", "pi-1"]).device == "pi-1"
    assert parser.parse_args(["certs", "rotate"]).op == "rotate"
