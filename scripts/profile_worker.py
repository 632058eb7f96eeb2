"""Where the worker's CPU goes at a steady offered rate (issue #16's profile table).

    .venv/bin/python scripts/profile_worker.py --rates 10,50 --seconds 30

Starts a 1-broker Kafka of its own and, per rate, one worker process (``python -m emostream
worker``, as deployed) wrapped in cProfile with a *CPU-time* clock (``time.thread_time``), so the
main loop's functions are charged only for the CPU they burn, not for waiting in ``consume()``.
The worker is warmed up, its profile reset (SIGUSR1), then transcripts are offered for
``--seconds``. Printed per rate, as Markdown: the worker's CPU ms per event by thread group (from
/proc/<pid>/task: the Python main loop, librdkafka's threads, and the rest: the commit thread and
ONNX Runtime's pool) and the main loop's top functions by own CPU time. (py-spy would sample
every thread, but cannot attach in every sandbox; this needs nothing but the standard library.)
"""

from __future__ import annotations

import argparse
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emostream.bench.pipeline import BENCH_PORTS, _offer, _paced_texts, _Reader, _stop, _texts, _topics
from emostream.cluster import LocalCluster
from emostream.cluster.brokers import free_base_port
from emostream.kafka.admin import Admin
from emostream.kafka.configuration import ClientConfig

WRAPPER = r"""
import cProfile, runpy, signal, sys, time
out = sys.argv.pop(1)
state = {"p": cProfile.Profile(time.thread_time)}
def reset(*_):
    state["p"].disable()
    state["p"] = cProfile.Profile(time.thread_time)
    state["p"].enable()
signal.signal(signal.SIGUSR1, reset)
state["p"].enable()
try:
    runpy.run_module("emostream", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
finally:
    state["p"].disable()
    state["p"].dump_stats(out)
"""

_TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread group of ``pid``: main (the loop), librdkafka, other."""
    out = {"main loop (Python)": 0.0, "librdkafka threads": 0.0, "other threads (commit, ONNX Runtime pool, …)": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            comm = (task / "comm").read_text().strip()
        except OSError:
            continue
        cpu = (int(fields[11]) + int(fields[12])) / _TICK
        if int(task.name) == pid:
            out["main loop (Python)"] += cpu
        elif comm.startswith("rdk:"):
            out["librdkafka threads"] += cpu
        else:
            out["other threads (commit, ONNX Runtime pool, …)"] += cpu
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rates", default="10,50")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--worker-args", default="", help="extra worker flags, e.g. '--no-pipeline'")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="emostream-profile-"))
    wrapper = tmp / "wrapper.py"
    wrapper.write_text(WRAPPER)
    cluster = LocalCluster(tmp / "kafka")
    cluster.up(brokers=1, base_port=free_base_port(*BENCH_PORTS), heap_mb=512)
    try:
        client = ClientConfig(cluster.bootstrap)
        admin = Admin(client)
        texts = _texts(4000)
        for i, rate in enumerate(float(r) for r in args.rates.split(",")):
            src, out, _ = _topics(admin, f"profile{i}")
            prof = tmp / f"worker-{rate:g}.prof"
            cmd = [sys.executable, str(wrapper), str(prof), "worker", "--bootstrap", client.bootstrap, "--source-topic", src,
                   "--target-topic", out, "--group", f"profile{i}", "--instance-id", f"profile{i}", *args.worker_args.split()]
            worker = subprocess.Popen(cmd, stdout=(tmp / f"worker-{rate:g}.log").open("ab"), stderr=subprocess.STDOUT,
                                      env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
            reader = _Reader(client, out, worker)
            try:
                _offer(client, src, reader, texts[:64], None, "warm", timeout_s=180)
                time.sleep(1.0)
                worker.send_signal(signal.SIGUSR1)
                before = thread_cpu(worker.pid)
                n = int(rate * args.seconds)
                _, _, arrivals = _offer(client, src, reader, _paced_texts(texts, n), rate, f"p{i}", timeout_s=args.seconds + 60)
                after = thread_cpu(worker.pid)
            finally:
                reader.close()
                _stop(worker)
            events = max(1, len(arrivals))
            total = sum(after.values()) - sum(before.values())
            print(f"\n### {rate:g} transcripts/s for {args.seconds:g} s: {len(arrivals)} events, "
                  f"worker CPU {total * 1000 / events:.2f} ms per event\n")
            print("| thread group | CPU ms per event |\n| --- | --- |")
            for name in after:
                print(f"| {name} | {(after[name] - before.get(name, 0.0)) * 1000 / events:.2f} |")
            stats = pstats.Stats(str(prof))
            rows = sorted(((v[2], f"{Path(k[0]).name}:{k[1]} {k[2]}") for k, v in stats.stats.items()), reverse=True)
            main_cpu = sum(r[0] for r in rows) or 1.0
            print(f"\nMain loop, own CPU by function (top {args.top} of {main_cpu * 1000 / events:.2f} ms per event):\n")
            print("| function | own CPU ms per event | share of the main loop |\n| --- | --- | --- |")
            for own, name in rows[: args.top]:
                print(f"| `{name[:80]}` | {own * 1000 / events:.3f} | {100 * own / main_cpu:.1f} % |")
            time.sleep(1.0)
        print(f"\nprofiles and worker logs: {tmp}", file=sys.stderr)
    finally:
        cluster.down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
