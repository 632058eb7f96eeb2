"""Where clients connect when no --bootstrap is given: flag, profile, environment, local cluster, localhost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emostream.cluster.state import ClusterState, save_state
from emostream.config import FALLBACK_BOOTSTRAP, resolve_bootstrap
from emostream.kafka.configuration import ClientConfig


@pytest.fixture
def local_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A cluster.json in EMOSTREAM_CLUSTER_DIR (no brokers needed); returns its bootstrap."""
    for var in ("EMOSTREAM_BOOTSTRAP", "EMOSTREAM_SECURITY_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    directory = tmp_path / "cluster"
    state = ClusterState("id", "4.2.0", brokers=2, base_port=31000, heap_mb=256)
    save_state(directory, state)
    monkeypatch.setenv("EMOSTREAM_CLUSTER_DIR", str(directory))
    return state.bootstrap(directory)


def test_config_alone_reads_no_file(local_cluster: str) -> None:
    assert resolve_bootstrap() == FALLBACK_BOOTSTRAP
    assert resolve_bootstrap(local=lambda: "l:1") == "l:1"


def test_the_local_cluster_comes_after_flag_profile_and_environment(
        local_cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert local_cluster == "127.0.0.1:31000,127.0.0.1:31001"
    assert ClientConfig.resolve().bootstrap == local_cluster
    assert ClientConfig.resolve("flag:1").bootstrap == "flag:1"
    profile = tmp_path / "p.json"
    profile.write_text(json.dumps({"bootstrap": "profile:1"}))
    assert ClientConfig.resolve(None, str(profile)).bootstrap == "profile:1"
    monkeypatch.setenv("EMOSTREAM_BOOTSTRAP", "env:1")
    assert ClientConfig.resolve().bootstrap == "env:1"


def test_no_local_cluster_means_localhost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMOSTREAM_BOOTSTRAP", raising=False)
    monkeypatch.delenv("EMOSTREAM_SECURITY_PROFILE", raising=False)
    monkeypatch.setenv("EMOSTREAM_CLUSTER_DIR", str(tmp_path / "none"))
    assert ClientConfig.resolve().bootstrap == FALLBACK_BOOTSTRAP
