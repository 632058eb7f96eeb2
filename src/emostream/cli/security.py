"""``emostream certs init|issue|rotate|show`` and ``emostream users add|list|remove``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emostream.config import default_cluster_dir


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the ``certs`` and ``users`` commands."""
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--dir", type=Path, default=None,
                       help="cluster folder (default: EMOSTREAM_CLUSTER_DIR or ~/.emostream/cluster)")

    certs = sub.add_parser("certs", help="the secure cluster's CA and TLS certificates")
    ops = certs.add_subparsers(dest="op", metavar="OP")
    ops.required = True
    init = ops.add_parser("init", parents=[where], help="create the cluster's CA (kept if it exists)")
    init.set_defaults(func=_certs_init)
    issue = ops.add_parser("issue", parents=[where],
                           help="issue a device client certificate, one host's node certificate, or reissue the local brokers'")
    who = issue.add_mutually_exclusive_group()
    who.add_argument("--device", metavar="ID", help="issue a client certificate for device ID (optional mTLS)")
    who.add_argument("--broker", action="store_true", help="reissue the local brokers' certificate (then restart the cluster)")
    issue.add_argument("--host", action="append", default=[], metavar="HOST",
                       help="without --broker/--device: issue the node certificate of one host of a multi-host cluster "
                            "(broker.pem and ca.crt into --out) for this DNS name or IP; with --broker: another name the "
                            "brokers are reached by (repeatable)")
    issue.add_argument("--ip", action="append", default=[], metavar="IP", help="with --host: the host's IP address (repeatable)")
    issue.add_argument("--out", type=Path, default=None,
                       help="folder for the files (default .); made 0700 if missing, an existing one keeps its mode")
    issue.set_defaults(func=_certs_issue)
    rotate = ops.add_parser("rotate", parents=[where], help="reissue the brokers' certificate from the same CA")
    rotate.set_defaults(func=_certs_rotate)
    show = ops.add_parser("show", parents=[where], help="CA and broker certificates: subjects, names, expiry")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_certs_show)

    users = sub.add_parser("users", help="principals of a secure cluster: SCRAM users, role ACLs, quotas, device keys")
    uops = users.add_subparsers(dest="op", metavar="OP")
    uops.required = True
    add = uops.add_parser("add", parents=[common, where],
                          help="create a user (or set a new password, and a device's new signing key) with a role's ACLs; "
                               "prints its client profile, or writes it to --out")
    add.add_argument("id", metavar="ID")
    add.add_argument("--role", choices=("device", "worker", "dashboard"), default="device", help="default device")
    add.add_argument("--password", default=None,
                     help="password to set (default: a random one); '-' reads it from stdin, which keeps it out of ps")
    add.add_argument("--produce-rate", type=int, default=None, metavar="BYTES/S",
                     help="devices: produce quota in bytes/s (default 1048576)")
    add.add_argument("--cert-file", default=None, help="device client certificate to put into the profile (mTLS)")
    add.add_argument("--key-file", default=None, help="its key")
    add.add_argument("--out", type=Path, default=None,
                     help="write the profile to FILE (mode 0600) instead of stdout; only a confirmation is printed")
    add.set_defaults(func=_users_add)
    lst = uops.add_parser("list", parents=[common, where], help="users and their ACLs")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=_users_list)
    rm = uops.add_parser("remove", parents=[common, where],
                         help="delete a user's password, ACLs and quota; a device's key (tombstone) and results topic")
    rm.add_argument("id", metavar="ID")
    rm.set_defaults(func=_users_remove)


def _files(args: argparse.Namespace):
    from emostream.security.files import SecurityFiles

    return SecurityFiles.of_cluster(args.dir or default_cluster_dir())


def _advertise(args: argparse.Namespace) -> str | None:
    from emostream.cluster.state import load_state

    state = load_state(args.dir or default_cluster_dir())
    return state.advertise if state else None


def _certs_init(args: argparse.Namespace) -> int:
    from emostream.security.files import init_ca

    files = _files(args)
    made = init_ca(files)
    print(f"{'created' if made else 'kept existing'} CA {files.ca.cert_path} (key {files.ca.key_path}, mode 0600)")
    return 0


def _certs_issue(args: argparse.Namespace) -> int:
    from emostream.errors import UsageError
    from emostream.security.files import issue_broker_cert, issue_device_cert, issue_host_cert, init_ca
    from emostream.security.roles import check_user_id

    files = _files(args)
    if not (args.broker or args.device or args.host):
        raise UsageError("certs issue needs --device ID, --host NAME (a host of a multi-host cluster) or --broker")
    if args.ip and (args.broker or args.device):
        raise UsageError("--ip is for a host certificate (--host NAME --ip IP)")
    init_ca(files)
    if not (args.broker or args.device):
        keystore, ca = issue_host_cert(files, [*args.host, *args.ip], args.out or Path("."))
        print(f"issued {keystore} (key + certificate for {', '.join([*args.host, *args.ip])}, mode 0600) and {ca}")
        print("copy both to the host's install folder (kafka config --install-dir), readable by the broker's user only")
        return 0
    if args.broker:
        path = issue_broker_cert(files, _advertise(args), args.host)
        print(f"issued broker certificate {path} (from CA {files.ca.cert_path})")
        _restart_hint(args)
        return 0
    if args.host:
        raise UsageError("--host is for --broker certificates; device certificates carry no host names")
    cert, key = issue_device_cert(files, check_user_id(args.device), args.out or Path("."))
    print(f"issued {cert} and {key} (mode 0600) for device {args.device}")
    print(f"use them with: emostream users add {args.device} --cert-file {cert.absolute()} --key-file {key.absolute()}")
    return 0


def _certs_rotate(args: argparse.Namespace) -> int:
    from emostream.errors import UsageError
    from emostream.security.files import issue_broker_cert

    files = _files(args)
    if not files.ca.exists():
        raise UsageError(f"no CA in {files.root}; a secure cluster makes one ('emostream kafka up --secure')")
    path = issue_broker_cert(files, _advertise(args))
    print(f"reissued broker certificate {path}; CA unchanged, so clients keep working")
    _restart_hint(args)
    return 0


def _restart_hint(args: argparse.Namespace) -> None:
    d = args.dir or default_cluster_dir()
    print(f"brokers read it at start: restart with 'emostream kafka down --dir {d} && emostream kafka up --dir {d}'")


def _certs_show(args: argparse.Namespace) -> int:
    from emostream.errors import UsageError
    from emostream.cluster.tls import describe

    files = _files(args)
    found = {name: describe(p) for name, p in (("ca", files.ca.cert_path), ("broker", files.broker_pem)) if p.exists()}
    if not found:
        raise UsageError(f"no certificates in {files.root}; create them with 'emostream certs init' or 'emostream kafka up --secure'")
    if args.json:
        print(json.dumps({k: v.to_dict() for k, v in found.items()}, indent=2))
        return 0
    for name, info in found.items():
        print(f"{name}: {info.path}\n  subject {info.subject}\n  issuer  {info.issuer}\n  expires {info.not_after}")
        if info.sans:
            print(f"  names   {', '.join(info.sans)}")
        print(f"  sha256  {info.sha256}")
    return 0


def _admin_profile(args: argparse.Namespace) -> Path:
    """--security-profile, else EMOSTREAM_SECURITY_PROFILE, else the local secure cluster's admin profile."""
    from emostream.errors import UsageError
    from emostream.kafka.configuration import security_profile_path

    explicit = security_profile_path(args.security_profile)
    if explicit:
        return explicit
    path = _files(args).admin_profile
    if not path.exists():
        raise UsageError(f"no admin profile at {path}; start a secure cluster ('emostream kafka up --secure') "
                         "or pass the admin's --security-profile")
    return path


def _users_add(args: argparse.Namespace) -> int:
    from emostream.security.profile import render_profile, write_profile
    from emostream.security.users import add_user

    password = sys.stdin.readline().rstrip("\n") if args.password == "-" else args.password
    added = add_user(_admin_profile(args), args.id, args.role, password, args.produce_rate,
                     args.cert_file, args.key_file, args.bootstrap)
    if not args.out:  # the secrets go to exactly one place: stdout, or the file
        sys.stdout.write(render_profile(added.profile))
        return 0
    write_profile(args.out, added.profile)
    print(f"wrote the profile of {args.id} ({args.role}) to {args.out} (mode 0600; it holds the password"
          f"{' and signing key' if added.public_key else ''}: copy it to the {args.role} only)")
    if added.public_key:
        print(f"results topic {added.results_topic}; registered public key ed25519:{added.public_key}")
    return 0


def _users_list(args: argparse.Namespace) -> int:
    from emostream.security.users import list_users

    users = list_users(_admin_profile(args), args.bootstrap)
    if args.json:
        print(json.dumps([u.to_dict() for u in users], indent=2))
        return 0
    for u in users:
        print(f"{u.name}{'' if u.has_password else ' (no password)'}")
        for acl in u.acls:
            print(f"  {acl}")
    return 0


def _users_remove(args: argparse.Namespace) -> int:
    from emostream.security.users import remove_user

    removed = remove_user(_admin_profile(args), args.id, args.bootstrap)
    print(f"removed {args.id}: password {'deleted' if removed.had_password else 'was not set'}, "
          f"{removed.acls_deleted} ACL(s) deleted")
    if removed.was_device:
        print(f"device {args.id}: signing key revoked (tombstone in the key registry), "
              f"results topic {removed.results_topic_deleted} deleted, produce quota removed")
    return 0
