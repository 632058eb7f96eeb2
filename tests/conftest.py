"""Shared fixtures. ``kafka_cluster`` is a real 3-broker KRaft cluster started by our own code."""

from __future__ import annotations

import os
import random
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


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A real 3-broker cluster shared by the whole session; stopped at the end."""
    cluster = start_cluster(tmp_path_factory.mktemp("kafka3"), 3)
    try:
        yield cluster
    finally:
        cluster.down()


@pytest.fixture(scope="session")
def bootstrap(kafka_cluster: LocalCluster) -> str:
    """Bootstrap servers of the session cluster."""
    return kafka_cluster.bootstrap


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A topic/group name unique to this test."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]
    return f"t-{base}-{os.urandom(3).hex()}"
