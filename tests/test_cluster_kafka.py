"""The local cluster against real brokers: round trip, topic defaults, a broker killed, the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emostream.cluster import LocalCluster, fetch
from emostream.cluster.brokers import _without_archive_flags, build_class_archive, java_option_words
from emostream.config import cache_dir
from emostream.errors import ClusterError
from emostream.kafka.admin import Admin
from emostream.kafka.configuration import ClientConfig
from emostream.kafka.consumer import committed_consumer
from emostream.kafka.producer import idempotent_producer
from emostream.topics import create_topic, plan_topic
from tests.conftest import free_base_port

pytestmark = pytest.mark.kafka


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> int:
    producer = idempotent_producer(ClientConfig(bootstrap), **{"message.timeout.ms": 30000})
    failures: list[str] = []
    for key, value in records:
        producer.produce(topic, value=value, key=key, on_delivery=lambda err, msg: err and failures.append(str(err)))
    assert producer.flush(60) == 0
    assert not failures, failures
    return len(records)


def _consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 60) -> list[tuple[bytes, bytes]]:
    consumer = committed_consumer(ClientConfig(bootstrap), f"reader-{os.urandom(3).hex()}")
    consumer.subscribe([topic])
    got: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            got.append((msg.key(), msg.value()))
    finally:
        consumer.close()
    return got


def _emostream(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "emostream", *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_round_trip_keeps_per_key_order(bootstrap: str, unique_name: str) -> None:
    admin = Admin(ClientConfig(bootstrap))
    create_topic(admin, plan_topic(unique_name, admin.live_brokers(), partitions=6))
    records = [(f"dev-{i % 5}".encode(), f"{i}".encode()) for i in range(500)]
    _produce(bootstrap, unique_name, records)
    got = _consume_all(bootstrap, unique_name, len(records))
    assert sorted(got) == sorted(records)
    for dev in {k for k, _ in records}:
        seq = [int(v) for k, v in got if k == dev]
        assert seq == sorted(seq), f"order broken for {dev!r}"


def test_topic_defaults_are_visible_through_the_admin_api(bootstrap: str, unique_name: str) -> None:
    result = _emostream("topics", "create", unique_name, "--bootstrap", bootstrap)
    assert result.returncode == 0, result.stderr
    info = Admin(ClientConfig(bootstrap)).describe_topic(unique_name)
    assert (info.partitions, info.replication) == (6, 3)
    assert info.configs["min.insync.replicas"] == "2"
    assert info.configs["unclean.leader.election.enable"] == "false"


def test_replication_above_live_brokers_is_a_clear_error(bootstrap: str, unique_name: str) -> None:
    result = _emostream("topics", "create", unique_name, "--replication", "4", "--bootstrap", bootstrap)
    assert result.returncode == 2
    assert "needs replication 4 but only 3 broker(s) are up" in result.stderr
    assert unique_name not in Admin(ClientConfig(bootstrap)).topic_names()


def test_killed_broker_does_not_stop_acks_all_writes_and_rejoins(private_cluster: LocalCluster, unique_name: str) -> None:
    bootstrap = private_cluster.bootstrap
    admin = Admin(ClientConfig(bootstrap))
    create_topic(admin, plan_topic(unique_name, 3, partitions=3, replication=3))
    _produce(bootstrap, unique_name, [(b"k", b"before")])
    victim = 1
    assert private_cluster.stop_node(victim, sig=signal.SIGKILL)
    try:
        # RF=3, min.insync=2: one broker down, acks=all writes still succeed and reads still work.
        written = _produce(bootstrap, unique_name, [(f"k{i}".encode(), b"during") for i in range(200)])
        got = _consume_all(bootstrap, unique_name, written + 1)
        assert len(got) == written + 1
    finally:
        private_cluster.start_node(victim)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and admin.live_brokers() < 3:
        time.sleep(0.5)
    assert admin.live_brokers() == 3
    status = private_cluster.status()
    assert all(b.alive for b in status.brokers)


def test_cli_up_twice_down_twice_and_port_in_use(tmp_path: Path) -> None:
    env = {**os.environ, "EMOSTREAM_HOME": str(tmp_path / "home")}
    cluster_dir = tmp_path / "c1"
    base = free_base_port(1)
    try:
        first = _emostream("kafka", "up", "--dir", str(cluster_dir), "--base-port", str(base), "--heap-mb", "256", env=env)
        assert first.returncode == 0, first.stderr
        assert f"bootstrap servers: 127.0.0.1:{base}" in first.stdout
        second = _emostream("kafka", "up", "--dir", str(cluster_dir), env=env)
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stderr
        status = _emostream("kafka", "status", "--json", "--dir", str(cluster_dir), env=env)
        assert status.returncode == 0
        assert '"alive": true' in status.stdout

        # Another cluster asking for the same ports is refused with a clear message.
        clash = _emostream("kafka", "up", "--dir", str(tmp_path / "c2"), "--base-port", str(base), env=env)
        assert clash.returncode == 1
        assert f"port {base}" in clash.stderr and "already in use" in clash.stderr
        # ... and leaves nothing behind: a later 'up' there starts afresh, 'status' shows no phantom.
        assert not (tmp_path / "c2" / "cluster.json").exists()
        zero = _emostream("kafka", "up", "--dir", str(tmp_path / "c3"), "--brokers", "0", env=env)
        assert zero.returncode == 2 and "--brokers must be between 1" in zero.stderr
        assert not (tmp_path / "c3" / "cluster.json").exists()
    finally:
        down = _emostream("kafka", "down", "--dir", str(cluster_dir), env=env)
    assert down.returncode == 0 and "stopped broker(s) [0]" in down.stdout
    again = _emostream("kafka", "down", "--dir", str(cluster_dir), env=env)
    assert again.returncode == 0 and "was not running" in again.stdout
    assert not LocalCluster(cluster_dir).status(probe=False).running


def test_cli_without_java_says_what_to_install(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "EMOSTREAM_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [str(bin_dir / "python"), "-m", "emostream", "kafka", "up", "--dir", str(tmp_path / "c")],
        capture_output=True, text=True, env={**env, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=60,
    )
    assert result.returncode == 1
    assert "Java not found on PATH" in result.stderr
    assert "openjdk-17" in result.stderr
    assert not (tmp_path / "c").exists()


def _maps_archive(pid: int | None, archive: Path) -> bool:
    """True when the JVM ``pid`` has ``archive`` mapped (it loaded its classes from it)."""
    assert pid is not None
    return any(line.endswith(f" {archive}") for line in Path(f"/proc/{pid}/maps").read_text().splitlines())


def test_the_session_brokers_load_their_classes_from_the_archive(kafka_cluster: LocalCluster) -> None:
    archive = fetch.class_archive(kafka_cluster.cache)
    if not fetch.class_archive_options(kafka_cluster.cache):
        # 'kafka fetch' (run by make test) printed why; brokers then boot on twice the CPU.
        pytest.skip("no checked class-data archive in the cache: 'emostream kafka fetch' could not build one here")
    assert all(_maps_archive(kafka_cluster.pid(n), archive) for n in range(3))


def test_a_cut_off_or_foreign_class_archive_is_never_given_to_a_jvm_then_rebuilt(tmp_path: Path) -> None:
    """An archive cut short (an interrupted copy, a partial cache restore) has a valid header and
    crashes every JVM that maps it; one of another Java build is ignored by the JVM. Neither is
    passed to a JVM: only an archive this java mapped, unchanged since (its stamp), is. 'kafka
    fetch' replaces both with one this java maps."""
    cache = tmp_path / "cache"
    home = fetch.kafka_home(cache)
    home.mkdir(parents=True)
    (home / "lib").symlink_to(fetch.kafka_home(cache_dir()) / "lib")  # the cached jars, without copying them
    (home / ".complete").write_text(fetch.KAFKA_VERSION + "\n")
    archive, stamp = fetch.class_archive(cache), fetch.class_archive_stamp_file(cache)
    whole = fetch.class_archive(cache_dir())
    if fetch.class_archive_options(cache_dir()):
        data = whole.read_bytes()
        archive.write_bytes(data[: len(data) // 2])
        stamp.write_text(fetch.class_archive_stamp_file(cache_dir()).read_text())  # the whole one's stamp, restored with it
        assert fetch.class_archive_options(cache) == []
        assert fetch.class_archive_usable(cache) is False  # its throwaway check JVM is the only one that maps it
    archive.write_bytes(os.urandom(64 * 1024))
    stamp.unlink(missing_ok=True)
    assert fetch.class_archive_options(cache) == [] and fetch.class_archive_usable(cache) is False
    said: list[str] = []
    assert build_class_archive(cache, progress=said.append) == archive
    assert fetch.class_archive_usable(cache) is True and any("building" in line for line in said)
    options = fetch.class_archive_options(cache)
    assert options and str(archive) in options[0]
    tool = subprocess.run(["java", *options, "-Xshare:on", "-cp", fetch.classpath(cache), "kafka.tools.StorageTool", "random-uuid"],
                          capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "JDK_JAVA_OPTIONS"})
    assert tool.returncode == 0 and len(tool.stdout.strip()) == 22, tool.stdout + tool.stderr
    said.clear()
    build_class_archive(cache, progress=said.append)
    assert said == []  # usable and stamped: nothing to do
    assert not list(home.glob(".*.tmp"))  # no dump or stamp left half-written
    assert not list(Path.cwd().glob("hs_err_pid*.log"))  # the crashed check JVM wrote its report elsewhere


def test_a_check_that_times_out_leaves_a_good_archive_and_its_stamp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a starved machine the check JVM may not finish in its 60 s: that says nothing of the
    archive, which stays (with its stamp, so brokers keep using it); 'kafka fetch' warns instead."""
    cache = tmp_path / "cache"
    archive = fetch.class_archive(cache)
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"an archive this java mapped")
    fetch.stamp_class_archive(cache)
    assert fetch.class_archive_options(cache)

    def slow(cmd, **kwargs):
        raise subprocess.TimeoutExpired(cmd, kwargs.get("timeout", 60))

    monkeypatch.setattr(fetch.subprocess, "run", slow)
    assert fetch.class_archive_usable(cache) is None
    with pytest.raises(ClusterError, match="could not check"):
        build_class_archive(cache, progress=lambda _line: None)
    assert archive.read_bytes() == b"an archive this java mapped" and fetch.class_archive_options(cache)


def test_java_options_are_split_as_the_launcher_splits_them() -> None:
    line = "-Dpath=C:\\tmp\\x \"-Dq=a b\" -Dr='c d' -Da#b"
    assert java_option_words(line) == ["-Dpath=C:\\tmp\\x", "-Dq=a b", "-Dr=c d", "-Da#b"]
    kept = _without_archive_flags(r"-XX:SharedArchiveFile=/a.jsa -Dpath=C:\tmp -Xshare:auto '-Dq=a b'")
    assert java_option_words(kept) == ["-Dpath=C:\\tmp", "-Dq=a b"]
    assert _without_archive_flags('-Dq="unclosed') == ""


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")), max_size=8),
       st.lists(st.sampled_from(["-XX:SharedArchiveFile=/c/a b.jsa", "-Xshare:on", "-XX:ArchiveClassesAtExit=x"]), max_size=3))
def test_only_archive_flags_are_taken_out_of_java_options(words: list[str], flags: list[str]) -> None:
    import shlex

    words = [w for w in words if not w.startswith(("-XX:SharedArchiveFile=", "-XX:ArchiveClassesAtExit=", "-Xshare:"))]
    assert java_option_words(shlex.join(words)) == words
    assert java_option_words(_without_archive_flags(shlex.join(flags + words + flags))) == words
