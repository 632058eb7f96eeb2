"""The suite's own machinery: what makes ``make test`` fast must keep working."""

from __future__ import annotations

import pytest


@pytest.mark.xdist_group("suite-setup-probe")
def test_xdist_loadgroup_keeps_grouped_tests_together(request: pytest.FixtureRequest) -> None:
    """Under ``--dist loadgroup`` xdist sends a group's tests to one worker by the ``@group``
    suffix it adds to their ids. pytest 9.2 stopped that suffix from reaching ``nodeid`` (xdist
    3.8 sets ``item._nodeid``), and the groups silently stopped working: every worker started its
    own copy of a module's cluster (three secure clusters instead of one, both 3-host labs at
    once) and ``make test`` took 460 s of pytest instead of ~300. pyproject.toml pins pytest
    below 9.2; this fails if a pytest/xdist pair breaks the grouping again."""
    config = request.config
    if not (hasattr(config, "workerinput") and config.getvalue("loadgroup")):
        pytest.skip("only meaningful under pytest-xdist with --dist loadgroup (make test)")
    assert request.node.nodeid.endswith("@suite-setup-probe"), (
        f"{request.node.nodeid}: this pytest/xdist pair does not group tests; use the versions pyproject.toml pins"
    )


def test_clusters_picked_at_the_same_time_in_one_process_never_share_a_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """The session cluster boots in a thread while the first test may start a cluster of its own:
    both picked ports from this worker's slice before either had bound them, and one CI run failed
    with "Address already in use". 60 picks from 6 threads give disjoint ports (nothing binds
    them here, so without the record of picked ports they overlap: ~60 clusters in one slice)."""
    import threading

    from emostream.cluster.brokers import cluster_ports
    from tests import conftest

    monkeypatch.setattr(conftest, "_PICKED", set())  # this test's picks must not narrow the real ones
    picked: list[set[int]] = []

    def pick(brokers: int) -> None:
        for _ in range(10):
            base = conftest.free_base_port(brokers)
            picked.append(cluster_ports(base, brokers))

    threads = [threading.Thread(target=pick, args=(1 + i % 3,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(picked) == 60
    assert sum(len(p) for p in picked) == len(set().union(*picked))
