"""Edge delivery under faults, on its own 1-broker cluster: broker outage mid-send, sender SIGKILLed and restarted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from emostream.edge.corpus import realistic_transcripts
from emostream.edge.sender import SpoolingSender
from emostream.edge.spool import Spool
from tests.test_edge_kafka import consume_all, make_topic

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_broker_outage_during_send_loses_nothing_and_keeps_order(private_broker, tmp_path: Path) -> None:
    topic = "edge-outage"
    client = make_topic(private_broker.bootstrap, topic, partitions=3)
    devices = ["pi-1", "pi-2", "pi-3", "pi-4"]
    sent = list(realistic_transcripts(devices, 2000, seed=11))
    spool = Spool(tmp_path / "s.db")
    sender = SpoolingSender(client, spool)
    waiting_during_outage = 0
    try:
        for i in range(0, len(sent), 20):
            sender.submit(sent[i:i + 20], topic)
            sender.service(0.01)
            if i == 600:
                sender.drain(30)
                private_broker.stop_node(0)
            if i == 1400:
                t_end = time.monotonic() + 3  # the broker stays away a while longer while the sender keeps trying
                while time.monotonic() < t_end:
                    sender.service(0.1)
                waiting_during_outage = sender.waiting()
                private_broker.start_node(0)
        remaining = sender.drain(120)
    finally:
        sender.close()
    try:
        assert remaining == 0 and spool.count() == 0, "the spool must be empty once the broker is back"
    finally:
        spool.close()
    got = [json.loads(v) for _k, v in consume_all(client, topic, len(sent), timeout_s=90)]
    ids = [g["utterance_id"] for g in got]
    dupes = len(ids) - len(set(ids))
    print(f"\noutage: {len(sent)} sent, {waiting_during_outage} waited in the spool while the broker was down, "
          f"{len(set(ids))} arrived, {dupes} duplicates, {len(set(t.utterance_id for t in sent) - set(ids))} lost")
    assert waiting_during_outage >= 700  # the outage really happened while sending
    assert set(ids) == {t.utterance_id for t in sent}
    assert dupes == 0  # idempotent producer: retries after the outage never duplicate
    per_device = defaultdict(list)
    for g in got:
        per_device[g["device_id"]].append(g["utterance_id"])
    for dev in devices:
        assert per_device[dev] == [t.utterance_id for t in sent if t.device_id == dev], f"order broken for {dev}"


def _feed(proc: subprocess.Popen, lines: list[str], pause_every: int = 25) -> None:
    for i, line in enumerate(lines):
        proc.stdin.write(line + "\n")
        if i % pause_every == 0:
            proc.stdin.flush()
            time.sleep(0.02)
    proc.stdin.flush()


def test_sender_killed_and_restarted_loses_nothing(private_broker, tmp_path: Path) -> None:
    topic = "edge-kill"
    client = make_topic(private_broker.bootstrap, topic, partitions=3)
    spool_path = tmp_path / "s.db"
    lines = [f"utterance {i:05d} from the kitchen" for i in range(3000)]
    cmd = [sys.executable, "-m", "emostream", "edge", "send", "--stdin", "--device", "pi-k", "--topic", topic,
           "--bootstrap", private_broker.bootstrap, "--spool", str(spool_path), "--wait", "60"]
    first = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lock = Path(f"{spool_path}.lock")
        deadline = time.monotonic() + 60
        while not (lock.exists() and lock.read_text().strip() == str(first.pid)):  # the sender is up and owns the spool
            assert time.monotonic() < deadline and first.poll() is None, "sender did not start"
            time.sleep(0.1)
        _feed(first, lines[:1500])
        os.kill(first.pid, signal.SIGKILL)  # while records are in flight
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    # What the killed sender had accepted: delivered records plus what its spool still holds.
    delivered = [json.loads(v)["text"] for _k, v in consume_all(client, topic, 1, timeout_s=10)]
    with Spool(spool_path) as s:
        leftover = [json.loads(r.value)["text"] for r in s.pending()]
    accepted = set(delivered) | set(leftover)
    last = max(int(t.split()[1]) for t in accepted)
    assert accepted == set(lines[: last + 1]), "a line the sender had accepted went missing"
    second = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _feed(second, lines[last + 1:])
        out, err = second.communicate(timeout=120)
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()
    assert second.returncode == 0, err
    got = [json.loads(v) for _k, v in consume_all(client, topic, len(lines), timeout_s=60)]
    texts = [g["text"] for g in got]
    ids = [g["utterance_id"] for g in got]
    dupes = len(ids) - len(set(ids))
    print(f"\nkill: {len(lines)} lines, killed after {last + 1} accepted ({len(delivered)} delivered, {len(leftover)} "
          f"spooled at the kill), {len(set(texts))} distinct arrived, {dupes} duplicate utterance ids, "
          f"{len(set(lines) - set(texts))} lost")
    assert set(texts) == set(lines)
    assert len(set(texts)) == len(set(ids))  # a duplicate is a re-send of the same utterance id, never a new id
    first_seen = list(dict.fromkeys(texts))
    assert first_seen == lines, "one device's utterances must arrive in order"
    with Spool(spool_path) as s:
        assert s.count() == 0
