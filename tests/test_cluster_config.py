"""Pure tests of config generation, topic planning and version parsing (no broker)."""

from __future__ import annotations

import argparse
import base64
import json
import shlex
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from emostream.cluster.config import (
    ClusterSettings,
    local_nodes,
    render_properties,
    server_properties,
    voters_of,
)
from emostream.cluster.fetch import parse_java_version
from emostream.errors import UsageError
from emostream.topics import plan_topic


def _props(brokers: int, advertise: str | None = None) -> list[dict[str, str]]:
    nodes = local_nodes(brokers, Path("/data"), 9092, advertise)
    settings = ClusterSettings("abc", voters_of(nodes), brokers)
    return [server_properties(n, settings) for n in nodes]


def test_two_brokers_reproduce_primary_and_backup() -> None:
    primary, backup = _props(2)
    assert (primary["node.id"], backup["node.id"]) == ("0", "1")
    assert "CLIENT://127.0.0.1:9092" in primary["advertised.listeners"]
    assert "CLIENT://127.0.0.1:9093" in backup["advertised.listeners"]
    assert primary["log.dirs"] != backup["log.dirs"]
    assert primary["controller.quorum.voters"] == backup["controller.quorum.voters"] == "0@127.0.0.1:9192,1@127.0.0.1:9193"
    assert primary["process.roles"] == "broker,controller"
    assert "zookeeper.connect" not in primary


def test_replication_defaults_follow_broker_count() -> None:
    one = _props(1)[0]
    three = _props(3)[0]
    assert (one["default.replication.factor"], one["min.insync.replicas"]) == ("1", "1")
    assert (three["default.replication.factor"], three["min.insync.replicas"]) == ("3", "2")
    assert three["transaction.state.log.replication.factor"] == "3"
    assert three["transaction.state.log.min.isr"] == "2"
    assert three["unclean.leader.election.enable"] == "false"


def test_advertise_binds_all_interfaces_and_advertises_the_host() -> None:
    node = _props(1, advertise="203.0.113.7")[0]
    assert "CLIENT://0.0.0.0:9092" in node["listeners"]
    assert "CLIENT://203.0.113.7:9092" in node["advertised.listeners"]
    # Controller and broker-to-broker traffic never leave loopback on a single host.
    assert "CONTROLLER://127.0.0.1:9192" in node["listeners"]
    assert "INTERNAL://127.0.0.1:9292" in node["listeners"]
    assert "CONTROLLER" not in node["advertised.listeners"]


def test_render_properties_is_key_value_lines() -> None:
    text = render_properties({"a": "1", "b.c": "x,y"}, header="hello")
    assert text == "# hello\na=1\nb.c=x,y\n"


@pytest.mark.parametrize(
    ("live", "partitions", "replication", "want_r", "want_isr"),
    [(1, None, None, 1, "1"), (2, None, None, 2, "1"), (3, None, None, 3, "2"), (5, 12, None, 3, "2"), (3, 1, 2, 2, "1")],
)
def test_plan_topic_defaults(live: int, partitions: int | None, replication: int | None, want_r: int, want_isr: str) -> None:
    plan = plan_topic("stt.transcripts", live, partitions, replication)
    assert plan.replication == want_r
    assert plan.configs["min.insync.replicas"] == want_isr
    assert plan.configs["unclean.leader.election.enable"] == "false"
    assert plan.partitions == (partitions or 6)


def test_plan_topic_rejects_replication_above_live_brokers_with_a_fix() -> None:
    with pytest.raises(UsageError) as err:
        plan_topic("x", 2, replication=3)
    msg = str(err.value)
    assert "needs replication 3 but only 2 broker(s) are up" in msg
    assert "--replication 2" in msg and "kafka up --brokers 3" in msg


@pytest.mark.parametrize("name", ["", "bad name", "a/b", "..", "x" * 250])
def test_plan_topic_rejects_bad_names(name: str) -> None:
    with pytest.raises(UsageError):
        plan_topic(name, 1)


@pytest.mark.parametrize(
    ("text", "major"),
    [('openjdk version "17.0.15" 2025-04-15', 17), ('java version "1.8.0_381"', 8), ('openjdk version "21" 2023-09-19', 21), ("garbage", None)],
)
def test_parse_java_version(text: str, major: int | None) -> None:
    assert parse_java_version(text) == major


def _host(tmp_path: Path, secure: bool) -> tuple[dict[str, str], str]:
    from emostream.cluster.hostconfig import HostOptions, write_host_config

    options = HostOptions(1, "0@10.0.0.1:9192,1@10.0.0.2:9192,2@10.0.0.3:9192", "10.0.0.2", "A" * 22, listen="10.0.0.2",
                          install_dir="/etc/ek", secure=secure, reauth_s=30, admin_password="pw-xyz" if secure else None)
    bundle = write_host_config(tmp_path / ("s" if secure else "p"), options)
    props = dict(line.split("=", 1) for line in bundle.properties.read_text().splitlines() if not line.startswith("#"))
    return props, bundle.format_script.read_text()


def test_secure_host_config_is_the_single_host_secure_config_with_host_files(tmp_path: Path) -> None:
    from emostream.cluster.config import secure_node, secure_properties

    props, script = _host(tmp_path, secure=True)
    assert props["listener.security.protocol.map"] == "CLIENT:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL"
    assert props["listeners"] == "CLIENT://10.0.0.2:9092,INTERNAL://10.0.0.2:9292,CONTROLLER://10.0.0.2:9192"
    assert props["ssl.keystore.location"] == "/etc/ek/broker.pem" and props["ssl.truststore.location"] == "/etc/ek/ca.crt"
    assert props["listener.name.client.scram-sha-512.connections.max.reauth.ms"] == "30000"
    # Every secure key is the one 'kafka up --secure' writes: one generator, not a second template.
    local = secure_node(local_nodes(1, Path("/d"), 9092)[0])
    assert set(secure_properties(local, "/k", "/t")) <= set(props)
    assert not any("pw-xyz" in v for v in props.values()) and "pw-xyz" not in script
    assert "@/etc/ek/format-scram.args" in script and "rm -f /etc/ek/format-scram.args" in script
    args = tmp_path / "s" / "format-scram.args"
    assert args.read_text() == "--add-scram\nSCRAM-SHA-512=[name=admin,password=pw-xyz]\n"
    assert args.stat().st_mode & 0o777 == 0o600
    plain, plain_script = _host(tmp_path, secure=False)
    assert plain["listener.security.protocol.map"] == "CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert not any(k.startswith("ssl.") for k in plain) and "scram" not in plain_script
    assert not (tmp_path / "p" / "format-scram.args").exists()


def test_secure_host_config_needs_the_ca_and_makes_one_admin_profile(tmp_path: Path) -> None:
    from emostream.cluster.hostconfig import HostOptions, with_admin_credential
    from emostream.cluster.material import SecurityFiles, init_ca

    files = SecurityFiles.of_cluster(tmp_path / "ops")
    options = HostOptions(0, "0@10.0.0.1:9192,1@10.0.0.2:9192", "10.0.0.1", "A" * 22)
    with pytest.raises(UsageError, match="certs init"):
        with_admin_credential(options, files)
    init_ca(files)
    first = with_admin_credential(options, files)
    again = with_admin_credential(replace(options, node_id=1, advertise="10.0.0.2"), files)
    assert first.secure and first.admin_password and first.admin_password == again.admin_password
    assert "pw" not in repr(first) and first.admin_password not in repr(first)
    assert json.loads(files.admin_profile.read_text())["bootstrap"] == "10.0.0.1:9092,10.0.0.2:9092"


@pytest.mark.parametrize("bad", [0, -5])
def test_reauth_must_be_positive(bad: int) -> None:
    from emostream.cluster.config import secure_node, secure_properties

    with pytest.raises(UsageError, match="--reauth-s"):
        secure_properties(secure_node(local_nodes(1, Path("/d"), 9092)[0]), "/k", "/t", bad)


def test_new_cluster_ids_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xF8.. encodes to '-' first: one id in 64 would be read as an option by kafka-storage
    # ("argument --cluster-id/-t: expected one argument"), which is how a CI run failed.
    from emostream.cluster import config

    draws = iter([uuid.UUID(bytes=b"\xf8" + b"\x01" * 15), uuid.UUID(bytes=b"\xfb" + b"\x00" * 15), uuid.UUID(bytes=b"\x10" * 16)])
    monkeypatch.setattr(config.uuid, "uuid4", lambda: next(draws))
    cid = config.new_cluster_id()
    assert cid == base64.urlsafe_b64encode(b"\x10" * 16).decode().rstrip("=")
    assert len(cid) == 22


def _storage_tool_args(argv: list[str]) -> argparse.Namespace:
    """The format command's own parser shape (Kafka's StorageTool, argparse4j: -t/--cluster-id, -c/--config)."""
    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("-t", "--cluster-id", required=True)
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--ignore-formatted", action="store_true")
    return parser.parse_args(argv)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=16, max_size=16))
@example(b"\xf8" + b"\x00" * 15)
def test_format_script_passes_any_cluster_id_as_one_value(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    from emostream.cluster.hostconfig import HostOptions, format_script

    cid = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    options = HostOptions(0, "0@10.0.0.1:9192", "10.0.0.1", cid, install_dir="/etc/ek")
    script = format_script(options, "/etc/ek/server.properties")
    line = next(ln for ln in script.splitlines() if "StorageTool format" in ln)
    argv = shlex.split(line)
    parsed = _storage_tool_args(argv[argv.index("format") + 1:])
    assert parsed.cluster_id == cid and parsed.config == "/etc/ek/server.properties"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
@example("-" * 21 + "w")
@example("A" * 22)
@example("A" * 21 + "B")
def test_host_config_refuses_anything_but_a_uuid_cluster_id(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    from emostream.cluster.hostconfig import HostOptions, write_host_config

    try:
        valid = len(text) == 22 and len(base64.urlsafe_b64decode(text + "==")) == 16 and \
            base64.urlsafe_b64encode(base64.urlsafe_b64decode(text + "==")).decode().rstrip("=") == text
    except (ValueError, UnicodeEncodeError):
        valid = False
    options = HostOptions(0, "0@10.0.0.1:9192", "10.0.0.1", text, install_dir="/etc/ek")
    out = tmp_path_factory.mktemp("host")
    if valid:
        assert write_host_config(out, options).properties.exists()
    else:
        with pytest.raises(UsageError, match="--cluster-id"):
            write_host_config(out, options)
