"""``emostream demo`` end to end: its own Kafka, worker and devices; live lines; a clean exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from emostream.demo import format_event
from tests.worker_helpers import REPO, model_spec


def test_event_line_is_readable_and_coloured_only_when_asked() -> None:
    event = {"device_id": "pi-kitchen", "label": "joy", "scores": {"joy": 0.91}, "text": "it worked!", "latency_ms": 14.2}
    plain = format_event(event, colour=False)
    assert "pi-kitchen" in plain and "joy" in plain and "0.91" in plain and "it worked!" in plain
    assert "\033[" not in plain
    assert "\033[1;33m" in format_event(event, colour=True)


def _jvms_under(path: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-af", "kafka.Kafka"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(path) in line]


@pytest.mark.kafka
def test_demo_prints_live_emotions_and_cleans_up(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "EMOSTREAM_HOME": str(home), "PYTHONPATH": str(REPO)}
    env.pop("EMOSTREAM_BOOTSTRAP", None)
    cmd = [sys.executable, "-m", "emostream", "demo", "--duration", "15", "--devices", "3", "--rate", "1"]
    spec = model_spec()
    if spec:
        cmd += ["--model", spec]
    try:
        proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    finally:
        leftovers = _jvms_under(home)
        for line in leftovers:
            os.kill(int(line.split()[0]), 9)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("pi-")]
    assert lines, f"no emotion lines; stderr: {proc.stderr[-2000:]}"
    assert any(label in lines[0] for label in ("anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral"))
    assert "\033[" not in proc.stdout  # not a TTY: no colour codes
    assert not leftovers, f"JVMs left running: {leftovers}"
