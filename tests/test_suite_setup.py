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
