"""The command line's shape: --version, errors that show the typed command's usage, and Kafka
options only on the commands that connect to Kafka. No broker, no model: parsing only."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

import emostream
from emostream.cli import main

REPO = Path(__file__).resolve().parents[1]


def _exit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_version_names_emostream_and_the_kafka_client(capsys):
    code, out, _ = _exit(["--version"], capsys)
    assert code == 0
    assert re.fullmatch(r"emostream \S+ \(confluent-kafka \S+, Python \S+\)\n", out), out
    assert out.startswith(f"emostream {emostream.__version__} ")


def test_package_version_is_the_declared_one():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert emostream.__version__ == declared


@pytest.mark.parametrize("argv, usage", [
    (["classify", "--bogus", "hi"], "usage: emostream classify"),
    (["eval", "f.tsv", "--bogus"], "usage: emostream eval"),
    (["bench", "model", "--bogus"], "usage: emostream bench model"),
    (["worker", "--bogus"], "usage: emostream worker"),
    (["edge", "send", "--device", "pi", "--text", "x", "--bogus"], "usage: emostream edge send"),
])
def test_unknown_option_shows_the_typed_commands_usage(argv, usage, capsys):
    code, _, err = _exit(argv, capsys)
    assert code == 2
    assert err.startswith(usage), err
    assert "unrecognized arguments: --bogus" in err


@pytest.mark.parametrize("argv", [["classify"], ["eval"], ["model", "train"], ["model", "export"], ["bench", "model"]])
def test_offline_commands_do_not_offer_kafka_options(argv, capsys):
    code, out, _ = _exit([*argv, "--help"], capsys)
    assert code == 0
    assert "--bootstrap" not in out and "--security-profile" not in out, out


@pytest.mark.parametrize("argv", [["worker"], ["dashboard"], ["bench", "pipeline"], ["edge", "send"], ["topics", "ensure"]])
def test_kafka_commands_keep_kafka_options(argv, capsys):
    code, out, _ = _exit([*argv, "--help"], capsys)
    assert code == 0
    assert "--bootstrap" in out and "--security-profile" in out


def test_offline_commands_refuse_kafka_options(capsys):
    code, _, err = _exit(["classify", "hi", "--bootstrap", "localhost:9092"], capsys)
    assert code == 2 and "unrecognized arguments: --bootstrap" in err


def test_model_train_number_options_take_finite_numbers_in_range_or_refuse():
    # --distill-weight / --xed-weight are parsed from the command line: any string either gives a
    # finite number in range or an argparse error (exit 2), never an exception or NaN.
    import argparse

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from emostream.cli.model import _nonnegative, _unit

    @settings(max_examples=200, deadline=None)
    @given(text=st.one_of(st.text(max_size=12), st.floats(allow_nan=True, allow_infinity=True).map(str)))
    def check(text):
        for parse, ok in ((_unit, lambda v: 0.0 <= v <= 1.0), (_nonnegative, lambda v: v >= 0.0)):
            try:
                value = parse(text)
            except argparse.ArgumentTypeError:
                continue
            assert isinstance(value, float) and value == value and ok(value) and value != float("inf")

    check()
    for bad in ("nan", "inf", "-0.1", "1.5", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            _unit(bad)


def test_kafka_fetch_warns_and_succeeds_when_the_class_archive_cannot_be_built(monkeypatch, capsys, tmp_path):
    """The archive only speeds brokers up: a failed build is a warning naming why, not a failed
    fetch (make test and make demo run 'kafka fetch'); --no-class-archive starts no broker."""
    from emostream.cluster import brokers, fetch
    from emostream.errors import ClusterError

    built: list[Path] = []
    failures = [ClusterError("the broker exited without writing its class-data archive"),
                subprocess.TimeoutExpired(["java", "kafka.tools.StorageTool"], 120),
                PermissionError(13, "Permission denied", "/cache/kafka-4.2.0")]

    def failing_build(cache: Path) -> Path:
        built.append(cache)
        raise failures[len(built) - 1]

    monkeypatch.setattr(fetch, "require_java", lambda: "java")
    monkeypatch.setattr(fetch, "ensure_kafka", lambda cache: tmp_path / "lib")
    monkeypatch.setattr(brokers, "build_class_archive", failing_build)
    for why in ("the broker exited", "timed out after 120 seconds", "Permission denied"):
        assert main(["kafka", "fetch"]) == 0
        out, err = capsys.readouterr()
        assert "warning: no class-data archive, brokers will start without it: " in err and why in err, err
    assert main(["kafka", "fetch", "--no-class-archive"]) == 0
    assert len(built) == 3 and "class-data archive" not in capsys.readouterr().err
