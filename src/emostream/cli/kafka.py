"""``emostream kafka up|status|down`` and ``emostream topics create|ensure``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emostream.config import default_cluster_dir


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the ``kafka`` and ``topics`` commands."""
    kafka = sub.add_parser("kafka", help="run a local Kafka (KRaft) cluster")
    ops = kafka.add_subparsers(dest="op", metavar="OP")
    ops.required = True
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--dir", type=Path, default=None,
                       help="cluster folder (default: EMOSTREAM_CLUSTER_DIR or ~/.emostream/cluster)")

    up = ops.add_parser("up", parents=[where], help="fetch Kafka if needed, start N brokers, wait until ready")
    up.add_argument("--brokers", type=int, default=None, help="number of brokers (default 1; 2 = primary+backup; 3 for HA)")
    up.add_argument("--advertise", metavar="HOST", default=None,
                    help="host/IP that clients elsewhere use (binds the client listener on all interfaces)")
    up.add_argument("--base-port", type=int, default=None, help="client port of node 0 (default 9092)")
    up.add_argument("--heap-mb", type=int, default=None, help="JVM heap per broker in MB (default 512)")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the brokers (default 120)")
    up.add_argument("--secure", action="store_true",
                    help="new cluster only: SASL_SSL (SCRAM-SHA-512) for clients, mTLS between brokers, ACLs "
                         "(see docs/security.md); an existing cluster keeps what it was created with")
    up.add_argument("--reauth-s", type=int, default=None, metavar="S",
                    help="secure clusters: clients must log in again every S seconds, so a changed or removed "
                         "password is cut off within S (default 60; kept until changed)")
    up.set_defaults(func=_up)

    fetch = ops.add_parser("fetch", help="download the pinned Kafka jars into the cache, and build the brokers' class-data "
                           "archive (one broker started and stopped once: later starts take about half the CPU)")
    fetch.add_argument("--no-class-archive", action="store_true", help="only the jars: no broker is started")
    fetch.set_defaults(func=_fetch)

    status = ops.add_parser("status", parents=[where], help="state of the local cluster")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=_status)

    down = ops.add_parser("down", parents=[where], help="stop the local cluster cleanly")
    down.set_defaults(func=_down)

    config = ops.add_parser("config", help="write one host's config of a multi-host cluster (properties, systemd unit, format script)")
    config.add_argument("--node-id", type=int, required=False, help="this host's node id (required unless --new-cluster-id)")
    config.add_argument("--controllers", metavar="ID@HOST:PORT,...", help="the controller quorum: every node, e.g. 0@10.0.0.1:9192,1@10.0.0.2:9192,2@10.0.0.3:9192 (required unless --new-cluster-id)")
    config.add_argument("--advertise", metavar="HOST", help="address other hosts and clients use for this host (required unless --new-cluster-id)")
    config.add_argument("--listen", metavar="HOST", default="0.0.0.0", help="bind address (default 0.0.0.0)")
    config.add_argument("--cluster-id", help="the id all nodes share (required; make one with --new-cluster-id)")
    config.add_argument("--new-cluster-id", action="store_true", help="print a fresh cluster id and exit")
    config.add_argument("--base-port", type=int, default=9092, help="client port (controller +100, inter-broker +200; default 9092)")
    config.add_argument("--heap-mb", type=int, default=512, help="JVM heap in MB (default 512)")
    config.add_argument("--data-dir", default="/var/lib/emostream-kafka/data", help="log.dirs on the host")
    config.add_argument("--install-dir", default="/etc/emostream-kafka", help="where the files go on the host")
    config.add_argument("--kafka-lib", default="/opt/emostream/kafka/lib",
                        help="folder of Kafka jars on the host (default /opt/emostream/kafka/lib; copy them from 'emostream kafka fetch')")
    config.add_argument("--user", default="kafka", help="system user the broker runs as (default kafka)")
    config.add_argument("--java", default=None, help="java executable on the host (default: the one on PATH)")
    config.add_argument("--out", type=Path, help="folder to write the files into")
    config.add_argument("--secure", action="store_true",
                        help="SASL_SSL clients and mTLS between nodes, as 'kafka up --secure'; the host reads broker.pem and "
                             "ca.crt from --install-dir ('emostream certs issue --host'); the CA and admin profile are in --dir")
    config.add_argument("--dir", type=Path, default=None,
                        help="with --secure: folder whose security/ holds the CA and admin profile "
                             "(default: EMOSTREAM_CLUSTER_DIR or ~/.emostream/cluster)")
    config.add_argument("--reauth-s", type=int, default=None, metavar="S",
                        help="with --secure: clients log in again every S seconds (default 60)")
    config.set_defaults(func=_config)

    topics = sub.add_parser("topics", help="create the pipeline's topics")
    tops = topics.add_subparsers(dest="op", metavar="OP")
    tops.required = True
    create = tops.add_parser("create", parents=[common], help="create a topic with durable defaults")
    create.add_argument("name")
    create.add_argument("--partitions", type=int, default=None, help="partitions (default 6)")
    create.add_argument("--replication", type=int, default=None, help="replication (default min(3, live brokers))")
    create.add_argument("--min-insync", type=int, default=None, help="min.insync.replicas (default max(1, R-1))")
    create.set_defaults(func=_create)
    ensure = tops.add_parser("ensure", parents=[common], help="create the transcripts, emotions and DLQ topics, the device key registry and the dedupe changelog if missing")
    ensure.add_argument("--partitions", type=int, default=None, help="partitions of new topics (default 6)")
    ensure.add_argument("--replication", type=int, default=None, help="replication (default min(3, live brokers))")
    ensure.add_argument("--source-topic", default=None, help="transcripts topic (default stt.transcripts)")
    ensure.add_argument("--target-topic", default=None, help="emotions topic (default emotion.events)")
    ensure.set_defaults(func=_ensure)


def _cluster(args: argparse.Namespace):
    from emostream.cluster import LocalCluster

    return LocalCluster(args.dir or default_cluster_dir())


def _up(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    status = cluster.up(args.brokers, args.base_port, args.advertise, args.heap_mb, args.timeout, secure=args.secure,
                        reauth_s=args.reauth_s)
    print(f"Kafka {status.kafka_version} up: {len(status.live_brokers)} broker(s), controller {status.controller}, dir {status.dir}")
    print(f"bootstrap servers: {status.bootstrap}")
    if status.extra.get("admin_profile"):
        print(f"secure (SASL_SSL); admin profile: {status.extra['admin_profile']} — add users with 'emostream users add ID --role device'")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from emostream.cluster import fetch
    from emostream.config import cache_dir

    fetch.require_java()
    lib = fetch.ensure_kafka(cache_dir())
    print(f"Kafka {fetch.KAFKA_VERSION} cached in {lib}")
    if not args.no_class_archive:
        import subprocess

        from emostream.cluster.brokers import build_class_archive
        from emostream.errors import EmostreamError

        try:
            print(f"class-data archive for faster broker start: {build_class_archive(cache_dir())}")
        except (EmostreamError, OSError, subprocess.SubprocessError) as exc:
            # Only a speed-up: brokers start without it, on about twice the CPU.
            print(f"warning: no class-data archive, brokers will start without it: {exc}", file=sys.stderr)
    return 0


def _config(args: argparse.Namespace) -> int:
    import shutil

    from emostream.cluster import fetch
    from emostream.cluster.config import DEFAULT_REAUTH_S, new_cluster_id
    from emostream.cluster.hostconfig import HostOptions, with_admin_credential, write_host_config
    from emostream.cluster.material import SecurityFiles
    from emostream.config import cache_dir
    from emostream.errors import UsageError

    if args.new_cluster_id:
        print(new_cluster_id())
        return 0
    missing = [f"--{n.replace('_', '-')}" for n in ("node_id", "controllers", "advertise", "cluster_id", "out") if getattr(args, n) is None]
    if missing:
        raise UsageError(f"kafka config needs {', '.join(missing)} (see 'emostream kafka config --help')")
    if args.reauth_s is not None and not args.secure:
        raise UsageError("--reauth-s is for --secure host configs")
    options = HostOptions(
        args.node_id, args.controllers, args.advertise, args.cluster_id, args.listen, args.base_port, args.heap_mb,
        args.data_dir, args.install_dir, args.java or shutil.which("java") or "/usr/bin/java", f"{args.kafka_lib}/*", args.user,
        reauth_s=args.reauth_s or DEFAULT_REAUTH_S,
    )
    if args.secure:
        options = with_admin_credential(options, SecurityFiles.of_cluster(args.dir or default_cluster_dir()))
    bundle = write_host_config(args.out, options)
    print(f"wrote {bundle.properties}, {bundle.log4j}, {bundle.unit}, {bundle.format_script}"
          + (f", {bundle.scram_args} (admin credential, 0600)" if bundle.scram_args else ""))
    print(f"on the host: copy the Kafka jars ({fetch.classpath(cache_dir())[:-2]}) to {args.kafka_lib},")
    if bundle.scram_args:
        print(f"copy broker.pem and ca.crt from 'emostream certs issue --host {args.advertise} --out DIR' and "
              f"{bundle.scram_args.name} to {args.install_dir}/ (owned by {args.user}, mode 0600),")
    print(f"copy server.properties and log4j2.properties to {args.install_dir}/, run format-storage.sh once,")
    print("then: sudo cp emostream-kafka.service /etc/systemd/system/ && sudo systemctl enable --now emostream-kafka")
    return 0


def _status(args: argparse.Namespace) -> int:
    status = _cluster(args).status()
    if args.json:
        print(json.dumps(status.to_dict(), indent=2))
        return 0 if status.running else 1
    if status.bootstrap is None:
        print(f"no cluster in {status.dir}")
        return 1
    print(f"cluster {status.cluster_id} (Kafka {status.kafka_version}) in {status.dir}")
    print(f"bootstrap servers: {status.bootstrap}")
    for b in status.brokers:
        state = "alive" if b.alive else "stopped"
        role = " (controller)" if b.id == status.controller else ""
        print(f"  broker {b.id}: port {b.port}, pid {b.pid or '-'}, {state}{role}")
    print(f"live brokers reported by the cluster: {status.live_brokers or 'none'}")
    if status.extra.get("admin_profile"):
        print(f"secure (SASL_SSL); admin profile: {status.extra['admin_profile']}")
    return 0 if status.running else 1


def _down(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    if cluster.state is None:
        print(f"no cluster in {cluster.dir}; nothing to stop")
        return 0
    stopped = cluster.down()
    print(f"stopped broker(s) {stopped}" if stopped else f"cluster in {cluster.dir} was not running")
    return 0


def _admin(args: argparse.Namespace):
    from emostream.kafka.admin import Admin
    from emostream.kafka.configuration import ClientConfig

    return Admin(ClientConfig.resolve(args.bootstrap, args.security_profile))


def _create(args: argparse.Namespace) -> int:
    from emostream.topics import create_topic, plan_topic

    admin = _admin(args)
    plan = plan_topic(args.name, admin.live_brokers(), args.partitions, args.replication, args.min_insync)
    if not create_topic(admin, plan):
        print(f"topic {plan.name} already exists")
        return 0
    print(f"created topic {plan.name} (partitions {plan.partitions}, replication {plan.replication}, "
          f"min.insync.replicas {plan.configs['min.insync.replicas']})")
    return 0


def _ensure(args: argparse.Namespace) -> int:
    from emostream.topics import ensure_pipeline_topics

    result = ensure_pipeline_topics(_admin(args), args.partitions, args.replication, args.source_topic, args.target_topic)
    for name, created in result.items():
        print(f"{'created' if created else 'exists '} {name}")
    return 0
