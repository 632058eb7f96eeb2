"""What registering many devices costs a broker: one results topic and one key record each.

Starts a throwaway 1-broker cluster (plaintext: SCRAM and ACLs do not change the topic cost),
then registers N devices the way ``users add`` does (``ensure_device_topic`` + ``write_key_record``,
one request each) and reports time, broker RSS, the metadata log and a full metadata request,
before and after. Run: ``.venv/bin/python scripts/device_topics_scale.py --devices 1000``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from emostream.cluster import LocalCluster
from emostream.cluster.brokers import cluster_ports_free
from emostream.kafka.admin import Admin
from emostream.kafka.configuration import ClientConfig
from emostream.security.users import write_key_record
from emostream.signing import KeyRecord, generate_key
from emostream.topics import ensure_device_topic, ensure_pipeline_topics


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _dir_kib(root: Path, name: str) -> int:
    return sum(f.stat().st_size for d in root.rglob(name) for f in d.rglob("*") if f.is_file()) // 1024


def _snapshot(cluster: LocalCluster, admin: Admin, settle_s: float) -> dict[str, float]:
    time.sleep(settle_s)  # let the JVM settle after the burst
    start = time.perf_counter()
    topics = admin.partition_counts()
    return {
        "topics": len(topics),
        "partitions": sum(topics.values()),
        "broker_rss_mib": round(_rss_mib(cluster.pid(0) or 0), 1),
        "metadata_log_kib": _dir_kib(cluster.dir, "__cluster_metadata-0"),
        "full_metadata_request_ms": round((time.perf_counter() - start) * 1000, 1),
    }


def main() -> None:
    """Run the measurement; print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--heap-mb", type=int, default=384, help="broker heap (the tests' 384 by default)")
    parser.add_argument("--settle-s", type=float, default=10.0)
    args = parser.parse_args()
    base = next(p for p in range(31000, 59000, 300) if cluster_ports_free(p, 1))
    with tempfile.TemporaryDirectory(prefix="emostream-scale-") as tmp:
        cluster = LocalCluster(Path(tmp))
        try:
            cluster.up(brokers=1, base_port=base, heap_mb=args.heap_mb)
            client = ClientConfig(cluster.bootstrap)
            admin = Admin(client, timeout_s=30)
            ensure_pipeline_topics(admin, partitions=6)
            before = _snapshot(cluster, admin, args.settle_s)
            live = admin.live_brokers()
            topic_s = key_s = 0.0
            slowest = 0.0
            for i in range(args.devices):
                device = f"dev-{i:04d}"
                t0 = time.perf_counter()
                ensure_device_topic(admin, device, live)
                t1 = time.perf_counter()
                write_key_record(client, KeyRecord(device, generate_key()[1]))
                t2 = time.perf_counter()
                topic_s, key_s, slowest = topic_s + t1 - t0, key_s + t2 - t1, max(slowest, t2 - t0)
            after = _snapshot(cluster, admin, args.settle_s)
            print(json.dumps({
                "devices": args.devices, "broker_heap_mb": args.heap_mb,
                "create_topics_s": round(topic_s, 1), "write_keys_s": round(key_s, 1),
                "per_device_ms": round((topic_s + key_s) / args.devices * 1000, 1),
                "slowest_device_ms": round(slowest * 1000, 1),
                "before": before, "after": after,
            }, indent=2))
        finally:
            cluster.down()


if __name__ == "__main__":
    main()
