"""What emostream ships for the tools around it: the Grafana dashboard and Prometheus rules name
only metrics and labels the code really exports; packaging metadata and the LICENSE agree; secure
clients refuse a librdkafka that cannot log in."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from emostream.errors import ConfigError
from emostream.kafka import configuration
from emostream.kafka.configuration import ClientConfig, check_librdkafka
from emostream.metrics import PipelineMetrics

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = json.loads((REPO / "deploy" / "grafana" / "emostream.json").read_text())
RULES = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yml").read_text())
# PromQL words that look like label names inside by (...)/without (...).
_METRIC = re.compile(r"\bemostream_[a-z_]+\b")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"([a-z_]+)\s*(?:=~|!~|!=|=)\s*\"([^\"]*)\"")


def _exported() -> tuple[set[str], set[str], dict[str, set[str]]]:
    """Sample names, label names and label values of a worker's /metrics with every series present."""
    m = PipelineMetrics("worker")
    m.records_in.inc()
    m.records_out.inc()
    m.duplicates.inc()
    m.dead_lettered("model_error")
    m.transaction("committed")
    m.transaction("aborted")
    m.batch_size.observe(3)
    m.latency.observe(0.2)
    m.model_time.observe(0.01)
    m.set_lag("stt.transcripts", 0, 5)
    m.stalled.set(0)
    names, labels, values = set(), set(), {}
    for family in text_string_to_metric_families(m.render().decode()):
        for sample in family.samples:
            names.add(sample.name)
            for k, v in sample.labels.items():
                labels.add(k)
                values.setdefault(k, set()).add(v)
    return names, labels, values


def _dashboard_exprs() -> list[str]:
    exprs = [t["expr"] for p in DASHBOARD["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in DASHBOARD["templating"]["list"] if "definition" in v]
    return exprs


def _rule_exprs() -> list[str]:
    return [rule["expr"] for group in RULES["groups"] for rule in group["rules"]]


@pytest.mark.parametrize("where, exprs", [("dashboard", _dashboard_exprs()), ("alert rules", _rule_exprs())])
def test_queries_name_only_exported_metrics_and_labels(where, exprs):
    names, labels, values = _exported()
    used = {n for e in exprs for n in _METRIC.findall(e)}
    assert used, where
    assert used <= names, f"{where} uses metrics the code does not export: {sorted(used - names)}"
    grouped = {lbl.strip() for e in exprs for g in _GROUPING.findall(e) for lbl in g.split(",") if lbl.strip()}
    assert grouped <= labels | {"le"}, f"{where} groups by unknown labels: {sorted(grouped - labels)}"
    for e in exprs:
        for label, pattern in _MATCHER.findall(e):
            assert label in labels, f"{where}: unknown label {label} in {e}"
            if label == "outcome":
                assert re.fullmatch(pattern, "aborted") or re.fullmatch(pattern, "committed"), e


def test_every_worker_metric_has_a_dashboard_panel():
    names, _, _ = _exported()
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in names if not n.endswith("_created")}
    shown = {re.sub(r"_(bucket|sum|count)$", "", n) for e in _dashboard_exprs() for n in _METRIC.findall(e)}
    assert families <= shown, sorted(families - shown)


def test_alert_rules_are_well_formed():
    rules = [rule for group in RULES["groups"] for rule in group["rules"]]
    alerts = {r["alert"] for r in rules}
    assert {"EmostreamPartitionStalled", "EmostreamConsumerLagGrowing", "EmostreamTransactionsAborting",
            "EmostreamDeadLetterRateHigh"} <= alerts
    for r in rules:
        assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
        assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]
        assert r["expr"].count("(") == r["expr"].count(")"), r["alert"]


def test_dashboard_is_importable_json():
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    assert DASHBOARD["uid"] and DASHBOARD["title"]
    for p in DASHBOARD["panels"]:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert set(p["gridPos"]) == {"x", "y", "w", "h"} and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24


def test_license_and_packaging_metadata():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "Apache-2.0"
    assert meta["project"]["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    # An SPDX license string needs setuptools >= 77 ('project.license must be valid exactly by one definition').
    assert "setuptools>=77" in meta["build-system"]["requires"]
    assert any(d.startswith("confluent-kafka>=2.6.1") for d in meta["project"]["dependencies"])
    extras = re.search(r"^EXTRAS := (.*)$", (REPO / "Makefile").read_text(), re.MULTILINE).group(1).split(",")
    assert set(extras) <= set(meta["project"]["optional-dependencies"]), extras


SASL = {"security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512"}


@pytest.mark.parametrize("linked", ["2.0.2", "2.6.0", "1.9.2"])
def test_sasl_needs_librdkafka_2_6_1(linked):
    with pytest.raises(ConfigError) as exc:
        check_librdkafka(SASL, linked)
    assert f"librdkafka {linked}" in str(exc.value) and "confluent-kafka>=2.6.1" in str(exc.value)


@pytest.mark.parametrize("security, linked", [
    (SASL, "2.6.1"), (SASL, "2.16.0"), (SASL, "2.10.0-RC1"),
    ({"security.protocol": "SSL"}, "2.0.2"), ({}, "2.0.2"),
])
def test_no_error_when_the_client_can_log_in(security, linked):
    check_librdkafka(security, linked)


def test_the_linked_librdkafka_passes():
    check_librdkafka(SASL)


def test_resolving_a_sasl_profile_checks_the_linked_librdkafka(tmp_path, monkeypatch):
    import confluent_kafka

    profile = tmp_path / "p.json"
    profile.write_text(json.dumps({"bootstrap": "h:9093", "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                                   "username": "u", "password": "p"}))
    assert ClientConfig.resolve(None, str(profile)).bootstrap == "h:9093"
    monkeypatch.setattr(confluent_kafka, "libversion", lambda: ("2.0.2", 0x020002FF))
    with pytest.raises(ConfigError, match="librdkafka 2.0.2"):
        ClientConfig.resolve(None, str(profile))
    assert configuration.check_librdkafka is check_librdkafka
