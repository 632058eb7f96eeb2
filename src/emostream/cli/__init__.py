"""The ``emostream`` command. Each area registers its subcommands from its own module here;
handlers only parse, call and print."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from emostream.errors import EmostreamError

# Modules under emostream.cli that each expose ``register(subparsers, common)``.
_AREAS = ("kafka", "security", "model", "worker", "edge", "dashboard", "bench")


def common_options() -> argparse.ArgumentParser:
    """Options every command accepts."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--bootstrap",
        metavar="HOST:PORT[,...]",
        help="Kafka bootstrap servers (default: EMOSTREAM_BOOTSTRAP, else the local cluster from 'kafka up', "
        "else localhost:9092)",
    )
    common.add_argument(
        "--security-profile",
        metavar="FILE",
        help="client security profile JSON (default: EMOSTREAM_SECURITY_PROFILE)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, every area registered."""
    parser = argparse.ArgumentParser(prog="emostream", description="Voice-emotion pipelines on Apache Kafka.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    common = common_options()
    for area in _AREAS:
        importlib.import_module(f"emostream.cli.{area}").register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except EmostreamError as exc:
        print(f"emostream: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("emostream: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co.: not an error of ours
        sys.stderr.close()
        return 0
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
