"""The public Python API: what `emostream` exports, that importing it stays light, and that the
README's examples run as written (the classify one for real; the worker one up to run())."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import emostream
import emostream.api
from emostream.model.labels import CLASSES
from tests.worker_helpers import KeywordClassifier, real_model_available

REPO = Path(__file__).resolve().parents[1]


def _readme_examples() -> list[str]:
    section = (REPO / "README.md").read_text().split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_import_emostream_loads_no_heavy_module():
    code = ("import sys, emostream; heavy = ('numpy', 'onnxruntime', 'tokenizers', 'confluent_kafka', 'emostream.worker');"
            "print(','.join(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == ""


def test_every_public_name_resolves_with_a_docstring():
    for name in emostream.__all__:
        value = getattr(emostream, name)
        if inspect.isclass(value) or inspect.isfunction(value) or inspect.ismodule(value):
            assert (value.__doc__ or "").strip(), name
    assert set(emostream.__all__) <= set(dir(emostream))
    with pytest.raises(AttributeError):
        emostream.not_a_name  # noqa: B018


@pytest.mark.skipif(not real_model_available(), reason="the shipped model is not here")
def test_readme_classify_example_runs(capsys):
    exec(compile(_readme_examples()[0], "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert [line.split()[0] for line in lines] == ["surprise", "anger"]  # as the README says


def test_readme_worker_example_builds_a_worker(monkeypatch):
    started = []
    monkeypatch.setattr(emostream.Worker, "run", lambda self: started.append(self))
    monkeypatch.setattr(emostream.api, "load_classifier", lambda *a, **k: KeywordClassifier())
    monkeypatch.setattr("emostream.model.load_classifier", lambda *a, **k: KeywordClassifier())
    monkeypatch.delitem(emostream.__dict__, "load_classifier", raising=False)
    monkeypatch.delenv("EMOSTREAM_SECURITY_PROFILE", raising=False)
    exec(compile(_readme_examples()[1], "README.md", "exec"), {})
    (worker,) = started
    assert (worker.settings.source_topic, worker.settings.target_topic) == ("stt.transcripts", "emotion.events")
    assert worker.client.bootstrap


@pytest.fixture
def stub_model(monkeypatch):
    """classify() with the keyword stand-in, counting model loads."""
    loads = []

    def load(spec, threads=None):
        loads.append(spec)
        return KeywordClassifier()

    monkeypatch.setattr(emostream.api, "load_classifier", load)
    monkeypatch.setattr(emostream.api, "_loaded", {})
    return loads


def test_classify_returns_one_prediction_per_text_and_loads_once(stub_model):
    first = emostream.classify(["I am so happy", "  so angry  "], model="stub")
    second = emostream.classify(iter(["wow"]), model="stub")
    assert [p.label for p in first + second] == ["joy", "anger", "surprise"]
    assert set(first[0].scores) == set(CLASSES)
    assert stub_model == ["stub"]
    assert emostream.classify([], model="stub") == []


@pytest.mark.parametrize("texts, error", [("one text", TypeError), (["ok", 5], TypeError), (["ok", "  "], ValueError), ([""], ValueError)])
def test_classify_refuses_what_the_worker_would_not_classify(stub_model, texts, error):
    with pytest.raises(error):
        emostream.classify(texts, model="stub")
    assert stub_model == []
