"""The ``emostream`` command. Each area registers its subcommands from its own module here;
handlers only parse, call and print."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from emostream.errors import EmostreamError, Terminated

# Modules under emostream.cli that each expose ``register(subparsers, common)``; ``common`` holds
# the Kafka connection options, and each module passes it as a parent only to the commands that
# connect to Kafka.
_AREAS = ("kafka", "security", "model", "worker", "edge", "dashboard", "bench")
# Areas none of whose commands connect to Kafka get a parent without options. (cli/model.py still
# passes ``common`` to classify/eval/model train/export; this keeps them from advertising
# --bootstrap/--security-profile they would ignore.)
_OFFLINE_AREAS = frozenset({"model"})


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose subcommands reject unknown arguments themselves, so the error shows
    the usage of the command that was typed (``classify --bogus``), not the top-level one."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def, override]
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


class _Version(argparse.Action):
    """``--version``: computed only when asked, so start-up stays fast."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the versions of emostream, confluent-kafka and Python, then exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: object, values: object, option: str | None = None) -> None:
        print(version_text())
        parser.exit()


def version_text() -> str:
    """``emostream X (confluent-kafka Y, Python Z)``: what a bug report needs. Read from the installed
    metadata: importing confluent_kafka is the kafka/ layer's business."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from emostream import __version__

    try:
        kafka = f"confluent-kafka {version('confluent-kafka')}"
    except PackageNotFoundError:  # pragma: no cover - a broken install; --version should still answer
        kafka = "confluent-kafka not installed"
    return f"emostream {__version__} ({kafka}, Python {platform.python_version()})"


def common_options() -> argparse.ArgumentParser:
    """The Kafka connection options, a parent parser for every command that connects to Kafka."""
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
    parser = _Parser(prog="emostream", description="Voice-emotion pipelines on Apache Kafka.")
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    common = common_options()
    offline = argparse.ArgumentParser(add_help=False)
    for area in _AREAS:
        importlib.import_module(f"emostream.cli.{area}").register(sub, offline if area in _OFFLINE_AREAS else common)
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
    except Terminated:
        print("emostream: terminated (SIGTERM)", file=sys.stderr)
        return Terminated.exit_code
    except KeyboardInterrupt:
        print("emostream: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co.: not an error of ours
        sys.stderr.close()
        return 0
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
