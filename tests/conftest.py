"""Shared fixtures. ``kafka_cluster`` is a real 3-broker KRaft cluster started by our own code.

It boots in the background from the session's first test, and the modules that need brokers run
after those that do not, so the brokers start while the quick tests run.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from emostream.cluster import LocalCluster
from emostream.cluster.brokers import cluster_ports_free
from emostream.cluster.config import INTERNAL_OFFSET

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "goemotions"


def free_base_port(brokers: int) -> int:
    """A base port whose client, controller and internal ports are all free right now."""
    rng = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "big"))
    for _ in range(200):
        base = rng.randrange(20000, 60000 - INTERNAL_OFFSET - brokers)
        if cluster_ports_free(base, brokers):
            return base
    raise RuntimeError("no free port range found")


def start_cluster(directory: Path, brokers: int) -> LocalCluster:
    """Start a fresh cluster in ``directory`` on free ports (heap kept small for the 2-core CI)."""
    cluster = LocalCluster(directory)
    try:
        cluster.up(brokers=brokers, base_port=free_base_port(brokers), heap_mb=384)
    except BaseException:
        cluster.down()  # a half-started cluster must not outlive the test
        raise
    return cluster


def _uses_session_cluster(item: pytest.Item) -> bool:
    return "kafka_cluster" in getattr(item, "fixturenames", ())


@pytest.hookimpl(tryfirst=True)  # before -m deselects: the marks added here must count
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the session cluster ``kafka`` (even when its module forgot), so
    ``make test-quick`` (``-m "not kafka and not slow"``) never starts brokers; then move the
    modules with ``kafka`` tests after the others, keeping each module's own order."""
    for item in items:
        if _uses_session_cluster(item):
            item.add_marker(pytest.mark.kafka)
    kafka_modules = {item.module for item in items if item.get_closest_marker("kafka") is not None}
    items[:] = sorted(items, key=lambda item: item.module in kafka_modules)  # stable: order within kept


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

    def wait(self) -> LocalCluster:
        self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"the session's Kafka cluster did not start: {self.error}") from self.error
        assert self.cluster is not None
        return self.cluster

    def close(self) -> None:
        self._thread.join()
        if self.cluster is not None:
            self.cluster.down()


@pytest.fixture(scope="session", autouse=True)
def _kafka_boot(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Boot | None]:
    """Start the session cluster at the first test when any selected test will use it."""
    if not any(_uses_session_cluster(item) for item in request.session.items):
        yield None
        return
    boot = _Boot(tmp_path_factory.mktemp("kafka3"))
    try:
        yield boot
    finally:
        boot.close()


@pytest.fixture(scope="session")
def kafka_cluster(_kafka_boot: _Boot | None) -> LocalCluster:
    """A real 3-broker cluster shared by the whole session; stopped at the end."""
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
