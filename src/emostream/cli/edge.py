"""``emostream edge send|flush|spool status|listen|watch|mic|simulate``: the device side."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emostream.config import EMOTIONS_TOPIC, TRANSCRIPTS_TOPIC


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the ``edge`` command."""
    edge = sub.add_parser("edge", help="device side: speech-to-text, reliable sending, listening, simulation")
    ops = edge.add_subparsers(dest="op", metavar="OP")
    ops.required = True

    spooling = argparse.ArgumentParser(add_help=False)
    spooling.add_argument("--spool", type=Path, default=None,
                          help="spool file (default: EMOSTREAM_SPOOL, else ~/.emostream/spool-<device>.db)")
    spooling.add_argument("--spool-max", type=int, default=100_000, help="most records the spool holds (default 100000)")
    spooling.add_argument("--spool-policy", choices=("block", "drop-oldest"), default="block",
                          help="when the spool is full: wait (then fail) or drop the oldest records (default block)")
    spooling.add_argument("--wait", type=float, default=10.0,
                          help="seconds to wait for the broker's acks before leaving the rest spooled (default 10)")
    spooling.add_argument("--topic", default=TRANSCRIPTS_TOPIC, help=f"transcripts topic (default {TRANSCRIPTS_TOPIC})")

    send = ops.add_parser("send", parents=[common, spooling], help="transcribe if needed and send transcripts reliably")
    send.add_argument("--device", required=True, help="this device's id (the record key)")
    src = send.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", action="append", metavar="T", help="a transcript (repeatable)")
    src.add_argument("--wav", nargs="+", metavar="F",
                     help="audio files to transcribe (WAV, FLAC, OGG, MP3…, any rate), one transcript each")
    src.add_argument("--stdin", action="store_true", help="one transcript per input line; runs until end of input")
    send.add_argument("--stt", choices=("auto", "whisper", "pocketsphinx"), default="auto",
                      help="speech-to-text engine for --wav (default auto: whisper, else pocketsphinx)")
    send.add_argument("--json", action="store_true", help="print a JSON summary")
    send.set_defaults(func=_send)

    flush = ops.add_parser("flush", parents=[common, spooling], help="deliver what waits in the spool")
    flush.add_argument("--device", default=None, help="the device whose spool to flush (or pass --spool)")
    flush.set_defaults(func=_flush)

    spool = ops.add_parser("spool", help="inspect spools")
    sops = spool.add_subparsers(dest="spool_op", metavar="OP")
    sops.required = True
    status = sops.add_parser("status", help="what waits: count, oldest age, size, per device, rejected rows")
    status.add_argument("--spool", type=Path, default=None, help="one spool file (default: every spool in ~/.emostream)")
    status.add_argument("--device", default=None, help="the device's default spool")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=_spool_status)

    listen = ops.add_parser("listen", parents=[common], help="this device's emotion events, one JSON line each")
    listen.add_argument("--device", required=True, help="the device id to follow")
    listen.add_argument("--exec", dest="hook", metavar="CMD", help="run CMD per event with its JSON on stdin")
    listen.add_argument("--from-beginning", action="store_true", help="a new listener starts at the oldest event")
    listen.add_argument("--topic", default=None,
                        help=f"emotions topic (default: {EMOTIONS_TOPIC}.<device> when it exists, else {EMOTIONS_TOPIC})")
    listen.add_argument("--group", default=None, help="consumer group (default emostream-edge-<device>)")
    listen.add_argument("--max-events", type=int, default=None, help="stop after N events")
    listen.add_argument("--idle-timeout", type=float, default=None, help="stop after S seconds without events")
    listen.set_defaults(func=_listen)

    watch = ops.add_parser("watch", parents=[common, spooling],
                           help="send each new audio file in a folder once, then move it to done/")
    watch.add_argument("--device", required=True, help="this device's id")
    watch.add_argument("--dir", type=Path, required=True, help="folder to watch")
    watch.add_argument("--stt", choices=("auto", "whisper", "pocketsphinx"), default="auto", help="speech-to-text engine")
    watch.add_argument("--settle", type=float, default=1.0, help="seconds a file must stop growing before it is read (default 1)")
    watch.set_defaults(func=_watch)

    mic = ops.add_parser("mic", parents=[common, spooling],
                         help="live microphone: voice activity cuts utterances, each one → STT → spool → Kafka")
    mic.add_argument("--device", required=True, help="this device's id (the record key)")
    mic.add_argument("--input", default="default", metavar="ALSA_DEVICE",
                     help="capture device for 'arecord -D' (default 'default'; see 'arecord -l', e.g. plughw:1,0)")
    mic.add_argument("--stt", choices=("auto", "whisper", "pocketsphinx"), default="auto",
                     help="speech-to-text engine (default auto: whisper, else pocketsphinx)")
    mic.add_argument("--from-wav", type=Path, default=None, metavar="FILE",
                     help="replay an audio file through the same path instead of the microphone; ends when it is consumed")
    mic.add_argument("--realtime", action="store_true", help="with --from-wav: pace the replay in real time")
    mic.add_argument("--json", action="store_true", help="print one JSON summary at the end (stdout)")
    mic.add_argument("--vad-start", type=float, default=0.5, help="speech probability that starts speech (default 0.5)")
    mic.add_argument("--vad-stop", type=float, default=0.35,
                     help="speech probability below which speaking frames count as silence (default 0.35)")
    mic.add_argument("--min-speech", type=float, default=0.25, help="shorter speech bursts are dropped (s, default 0.25)")
    mic.add_argument("--stop-silence", type=float, default=0.5,
                     help="silence that ends an utterance (s, default 0.5); shorter pauses never cut")
    mic.add_argument("--max-utterance", type=float, default=12.0,
                     help="longer speech is cut at its quietest recent frame (s, default 12)")
    mic.add_argument("--queue-max", type=int, default=8,
                     help="utterances waiting for STT; beyond it the oldest is dropped (default 8)")
    mic.add_argument("--threads", type=int, default=None, help="Whisper CPU threads (default: up to 4)")
    mic.add_argument("--stt-window", choices=("fit", "30"), default="fit",
                     help="Whisper encoder window: 'fit' (default) encodes whole 10 s steps covering the utterance "
                          "(about 3x less STT time) and redoes a pass that is gated, empty or looping with the 30 s "
                          "window; '30' always uses Whisper's own 30 s window (see docs/edge.md)")
    mic.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus /metrics on this port")
    mic.add_argument("-v", "--verbose", action="store_true",
                     help="log every dropped segment and every 30 s-window retry, with its reason")
    mic.set_defaults(func=_mic)

    sim = ops.add_parser("simulate", parents=[common], help="many fake devices sending realistic utterances")
    sim.add_argument("--devices", type=int, default=10, help="number of devices (default 10)")
    sim.add_argument("--rate", type=float, default=1.0, help="utterances per second PER DEVICE; 0 = as fast as possible (default 1)")
    sim.add_argument("--duration", type=float, default=None, help="seconds to run (default: until --count or Ctrl-C)")
    sim.add_argument("--count", type=int, default=None, help="total utterances to send")
    sim.add_argument("--topic", default=TRANSCRIPTS_TOPIC, help=f"transcripts topic (default {TRANSCRIPTS_TOPIC})")
    sim.add_argument("--spool", type=Path, default=None, help="spool file (default ~/.emostream/spool-simulator.db)")
    sim.add_argument("--no-spool", action="store_true", help="produce directly (measures the spool's cost)")
    sim.add_argument("--seed", type=int, default=0, help="corpus seed")
    sim.add_argument("--json", action="store_true", help="print a JSON summary at the end")
    sim.set_defaults(func=_simulate)


def _client(args: argparse.Namespace):
    from emostream.kafka.configuration import ClientConfig

    return ClientConfig.resolve(args.bootstrap, args.security_profile)


def _open_spool(args: argparse.Namespace, device: str, synchronous: str = "FULL"):
    from emostream.edge.spool import Spool, default_spool_path

    return Spool(args.spool or default_spool_path(device), max_records=args.spool_max, policy=args.spool_policy,
                 synchronous=synchronous)


def _signer(client):
    from emostream.edge.sender import signer_for

    return signer_for(client)


def _warn_rejected(stats, spool_path) -> None:
    if stats is not None and stats.rejected:
        print(f"emostream: {stats.rejected} record(s) refused for good ({stats.last_error}); kept in the spool's "
              f"rejected table, see 'emostream edge spool status --spool {spool_path}'", file=sys.stderr)


def _report(remaining: int, spooled: int, stats, spool_path, wait: float, bootstrap: str) -> None:
    _warn_rejected(stats, spool_path)
    if stats is None:
        print(f"spooled {spooled} transcript(s) in {spool_path}; the running sender delivers them")
    elif remaining == 0:
        print(f"delivered {stats.acked} transcript(s) to {bootstrap}")
    elif stats.failed:
        print(f"emostream: delivery failed ({stats.last_error}); {remaining} transcript(s) stay spooled in {spool_path}",
              file=sys.stderr)
        print(f"delivered {stats.acked}, {remaining} waiting in {spool_path}")
    else:
        print(f"broker at {bootstrap} did not ack within {wait:g}s: {remaining} transcript(s) spooled in {spool_path}; "
              "the next 'edge send' or 'emostream edge flush' delivers them")


def _send(args: argparse.Namespace) -> int:
    from emostream.edge.input import check_device, transcript_from_text
    from emostream.edge.sender import spooled_send

    check_device(args.device)
    client = _client(args)
    signer = _signer(client)
    if args.text:
        transcripts = [transcript_from_text(args.device, t) for t in args.text]  # refused before anything is spooled
    spool = _open_spool(args, args.device)
    try:
        if args.stdin:
            return _send_stdin(args, client, spool, signer)
        if args.wav:
            from emostream.edge.stt import load_engine, transcribe_file

            engine = load_engine(args.stt)
            transcripts = []
            for path in args.wav:
                t, rec, seconds = transcribe_file(engine, path, args.device)
                print(f"{path}: {t.text!r} ({rec.engine}, {seconds:.1f}s audio, real-time factor "
                      f"{rec.real_time_factor(seconds):.2f})", file=sys.stderr)
                transcripts.append(t)
        remaining, spooled, stats = spooled_send(client, spool, transcripts, args.topic, args.wait, signer=signer)
        if args.json:
            _warn_rejected(stats, spool.path)
            print(json.dumps({"spooled": spooled, "acked": stats.acked if stats else 0, "waiting": remaining,
                              "rejected": stats.rejected if stats else 0,
                              "utterance_ids": [t.utterance_id for t in transcripts]}))
        else:
            _report(remaining, spooled, stats, spool.path, args.wait, client.bootstrap)
        return 0
    finally:
        spool.close()


def _send_stdin(args: argparse.Namespace, client, spool, signer) -> int:
    """Long-running: one transcript per line; keeps delivering while the broker comes and goes."""
    from emostream.edge.input import send_lines
    from emostream.edge.sender import SpoolingSender

    def refused(line_no: int, exc: Exception) -> None:
        print(f"emostream: input line {line_no} not sent: {exc}", file=sys.stderr)

    sender = SpoolingSender(client, spool, signer=signer)
    try:
        sender.pump()  # what an earlier run left behind goes first
        lines = send_lines(sender, sys.stdin.fileno(), args.device, args.topic, block_s=args.wait, on_refused=refused)
        remaining = sender.drain(args.wait)
        _report(remaining, 0, sender.stats, spool.path, args.wait, client.bootstrap)
        return 2 if lines.refused else 0
    finally:
        sender.close()


def _flush(args: argparse.Namespace) -> int:
    from emostream.edge.input import check_device
    from emostream.edge.sender import SpoolingSender
    from emostream.errors import UsageError

    if args.device is None and args.spool is None:
        raise UsageError("flush needs --device ID or --spool FILE")
    if args.device is not None:
        check_device(args.device)
    client = _client(args)
    signer = _signer(client)
    spool = _open_spool(args, args.device or "")
    try:
        before = spool.count()
        sender = SpoolingSender(client, spool, signer=signer)
        try:
            remaining = sender.drain(args.wait)
        finally:
            sender.close()
        rejected = f", {sender.stats.rejected} refused for good (see 'edge spool status')" if sender.stats.rejected else ""
        print(f"{before - remaining - sender.stats.rejected} of {before} spooled transcript(s) delivered{rejected}; "
              f"{remaining} waiting in {spool.path}")
        return 0 if remaining == 0 else 1
    finally:
        spool.close()


def _spool_status(args: argparse.Namespace) -> int:
    from emostream.config import home_dir
    from emostream.edge.spool import Spool, default_spool_path

    if args.spool:
        paths = [args.spool]
    elif args.device:
        paths = [default_spool_path(args.device)]
    else:
        paths = sorted(home_dir().glob("spool-*.db"))
    out = []
    for p in paths:
        if not Path(p).exists():
            from emostream.edge.errors import SpoolError

            raise SpoolError(f"no spool at {p}")
        with Spool(p, create=False) as s:
            out.append(s.status())
    if args.json:
        print(json.dumps([s.to_dict() for s in out], indent=2))
        return 0
    if not out:
        print(f"no spools in {home_dir()}")
    for s in out:
        age = "-" if s.oldest_age_s is None else f"{s.oldest_age_s:.0f}s"
        print(f"{s.path}: {s.count} waiting, oldest {age}, {s.size_bytes / 1024:.0f} KiB, {s.dropped_total} dropped so far, "
              f"{s.rejected_total} rejected")
        for d in s.devices:
            print(f"  {d.device}: {d.count} waiting, oldest {d.oldest_age_s:.0f}s")
        for r in s.rejected:
            print(f"  rejected seq {r.seq} ({r.device}, {r.utterance_id}): {r.error}")
    return 0


def _listen(args: argparse.Namespace) -> int:
    from emostream.edge.listen import hook_runner, listen, print_json

    handler = hook_runner(args.hook) if args.hook else print_json
    listen(_client(args), args.device, handler, topic=args.topic, group=args.group, from_beginning=args.from_beginning,
           max_events=args.max_events, idle_timeout_s=args.idle_timeout)
    return 0


def _watch(args: argparse.Namespace) -> int:
    from emostream.edge.input import check_device
    from emostream.edge.sender import SpoolingSender
    from emostream.edge.stt import load_engine, transcribe_file
    from emostream.edge.watch import watch

    check_device(args.device)
    client = _client(args)
    signer = _signer(client)
    engine = load_engine(args.stt)
    spool = _open_spool(args, args.device)
    sender = SpoolingSender(client, spool, signer=signer)
    print(f"watching {args.dir} for WAV files (device {args.device}, engine {engine.name})", file=sys.stderr)

    def handle(path: Path) -> None:
        t, rec, seconds = transcribe_file(engine, str(path), args.device)
        sender.submit([t], args.topic, block_s=args.wait)
        print(json.dumps({"file": path.name, "utterance_id": t.utterance_id, "text": t.text,
                          "audio_s": round(seconds, 2), "rtf": round(rec.real_time_factor(seconds), 3)}), flush=True)

    try:
        watch(args.dir, handle, settle_s=args.settle, idle=lambda: sender.service(0))
    finally:
        sender.drain(min(args.wait, 5.0))
        sender.close()
        spool.close()
    return 0


def _mic(args: argparse.Namespace) -> int:
    import signal

    from emostream.edge.mic import (WHISPER_OPTIONS, ArecordSource, FileSource, MicMetrics, MicPipeline, MicSettings,
                                    SenderSink, log_to_stderr, warm_up)
    from emostream.edge.sender import SpoolingSender
    from emostream.edge.stt import load_engine
    from emostream.edge.vad import SileroVad, VadSettings
    from emostream.errors import UsageError

    log_to_stderr(args.verbose)
    if args.realtime and args.from_wav is None:
        raise UsageError("--realtime paces a replay: it needs --from-wav FILE")
    vad_settings = VadSettings(start_threshold=args.vad_start, stop_threshold=args.vad_stop, min_speech_s=args.min_speech,
                               stop_silence_s=args.stop_silence, max_utterance_s=args.max_utterance)
    settings = MicSettings(args.device, vad_settings, queue_max=args.queue_max).check()
    client = _client(args)
    signer = _signer(client)
    source = FileSource(args.from_wav, realtime=args.realtime) if args.from_wav else ArecordSource(args.input)
    vad = SileroVad().probs
    engine = load_engine(args.stt, **WHISPER_OPTIONS, fit_window=args.stt_window == "fit",
                         **({"threads": args.threads} if args.threads else {}))
    warm_up(engine)
    metrics = MicMetrics()
    if args.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, registry=metrics.registry)
    spool = _open_spool(args, args.device)
    try:
        sender = SpoolingSender(client, spool, signer=signer)
        try:
            def heard(t, item) -> None:
                u = item.utterance
                print(f"{u.start_s:7.2f}-{u.end_s:7.2f}s {t.text!r} (spooled {t.utterance_id})", file=sys.stderr, flush=True)

            pipeline = MicPipeline(source, vad, engine, SenderSink(sender, args.topic, args.wait), settings,
                                   metrics=metrics, on_transcript=heard)
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: pipeline.stop())
            print(f"listening on {source.name} (device {args.device}, engine {engine.name})", file=sys.stderr)
            sender.pump()  # what an earlier run left behind goes first
            result = pipeline.run()
            result.waiting = sender.drain(args.wait if args.from_wav else min(args.wait, 5.0))
        finally:
            sender.close()
    finally:
        spool.close()
    _warn_rejected(sender.stats, spool.path)
    if args.json:
        print(json.dumps({**result.to_dict(), "acked": sender.stats.acked}))
    else:
        summary = result.to_dict()
        print(f"{summary['utterances']} transcript(s) from {summary['audio_s']:.1f}s of audio, dropped {summary['dropped']}, "
              f"real-time factor {summary['rtf']:.2f}, p95 end of speech → spooled {summary['p95_speech_end_to_spooled_ms']} ms; "
              f"{result.waiting} waiting in {spool.path}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from emostream.config import home_dir
    from emostream.edge.simulate import simulate, stderr_progress
    from emostream.edge.spool import Spool
    from emostream.errors import UsageError

    if args.devices < 1 or args.rate < 0:
        raise UsageError("--devices must be at least 1 and --rate at least 0")
    if args.duration is None and args.count is None and args.rate == 0:
        raise UsageError("--rate 0 (as fast as possible) needs --duration or --count")
    client = _client(args)
    signer = _signer(client)
    spool = None
    if not args.no_spool:
        # Synthetic data: NORMAL is enough (survives a killed process; only a power cut could lose the last commit).
        spool = Spool(args.spool or home_dir() / "spool-simulator.db", max_records=1_000_000, synchronous="NORMAL")
    try:
        result = simulate(client, args.devices, args.rate, args.topic, duration_s=args.duration,
                          count=args.count, spool=spool, seed=args.seed, progress=stderr_progress, signer=signer)
    finally:
        if spool is not None:
            spool.close()
    if args.json:
        print(json.dumps({**result.to_dict(), "devices": args.devices, "spool": spool is not None}))
    return 0
