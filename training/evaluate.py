"""Evaluate a model or baseline on any corpus file.

    python -m training.evaluate --model tfidf --data training/data/splits/test.jsonl \
        --report training/reports/tfidf-test

``--model`` is a baseline name (``keyword``, ``tfidf``), a saved TF-IDF JSON
file, or a promofilter model directory (one holding ``model.onnx``). The JSON
report goes to stdout; ``--report DIR`` also writes report.json, report.md and
two plots there.

Headline figures leave out segments labeled ``ambiguous``; those are reported
apart.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from promofilter.segment import segment_spans

from training.corpus import (
    AMBIGUOUS,
    FACTUAL,
    PROMOTIONAL,
    CorpusError,
    Document,
    Segment,
    labeled_segments,
    read_documents,
    sha256_file,
)
from training.metrics import (
    average_precision,
    binary_counts,
    character_mask,
    character_scores,
    expected_calibration_error,
    precision_recall_curve,
)

SPLITS_DIR = Path(__file__).parent / "data" / "splits"
WORST_ERRORS = 20


class Scorer(Protocol):
    threshold: float

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class ScoredSegment:
    document: Document
    index: int
    score: float

    @property
    def segment(self) -> Segment:
        return self.document.segments[self.index]


def document_scores(scorer: Scorer, documents: Sequence[Document]) -> list[np.ndarray]:
    """P(promotional) of each document's segments (ambiguous ones included), in order.

    A scorer with ``predict_proba_in_context`` (a model with a context head) scores each
    segment beside its neighbours, as it does inside ``analyze``; others score each segment
    on its own.
    """
    in_context = _in_context_scoring(scorer)
    if in_context is not None:
        return [
            np.asarray(in_context([s.text for s in d.segments]), dtype=float) for d in documents
        ]
    cache = _score_texts(scorer, (s.text for d in documents for s in d.segments))
    return [np.array([cache[s.text] for s in d.segments], dtype=float) for d in documents]


def _in_context_scoring(scorer: Scorer) -> Callable[[list[str]], np.ndarray] | None:
    method = getattr(scorer, "predict_proba_in_context", None)
    return method if callable(method) else None


def _score_texts(scorer: Scorer, texts: Iterable[str]) -> dict[str, float]:
    unique = list(dict.fromkeys(texts))
    scores = scorer.predict_proba(unique) if unique else np.empty(0)
    return {text: float(score) for text, score in zip(unique, scores, strict=True)}


def _predicted_promotional_spans(
    scorer: Scorer, documents: Sequence[Document], threshold: float, cache: dict[str, float]
) -> list[list[tuple[int, int]]]:
    """Analyse each document whole: the model's own ``analyze`` where it has one."""
    texts = [document.joined()[0] for document in documents]
    analyze = getattr(scorer, "analyze", None)
    if callable(analyze):
        results = []
        for text in texts:
            analysis = analyze(text, threshold=threshold)
            results.append([(s.start, s.end) for s in analysis.segments if s.label == PROMOTIONAL])
        return results
    spans_per_document = [segment_spans(text) for text in texts]
    missing = [
        span.text(text)
        for text, spans in zip(texts, spans_per_document, strict=True)
        for span in spans
        if span.text(text) not in cache
    ]
    cache.update(_score_texts(scorer, missing))
    return [
        [(s.start, s.end) for s in spans if cache[s.text(text)] >= threshold]
        for text, spans in zip(texts, spans_per_document, strict=True)
    ]


def _segment_figures(truth: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    counts = binary_counts(truth, scores >= threshold)
    figures = {
        "segments": int(truth.size),
        "promotional": int(truth.sum()),
        "flagged_share": float(np.mean(scores >= threshold)) if truth.size else 0.0,
    }
    if truth.any():
        figures.update(precision=counts.precision, recall=counts.recall, f1=counts.f1)
    if (~truth).any():
        figures["false_positive_rate"] = counts.fp / int((~truth).sum())
    return figures


def _breakdowns(scored: Sequence[ScoredSegment], threshold: float) -> dict[str, dict]:
    groups: dict[str, dict[str, list[ScoredSegment]]] = defaultdict(lambda: defaultdict(list))
    for item in scored:
        document = item.document
        groups["style"][document.style or "unknown"].append(item)
        groups["placement"][document.placement].append(item)
        for register in document.register or ("standard",):
            groups["register"][register].append(item)
        if item.segment.kind:
            groups["kind"][item.segment.kind].append(item)
    result: dict[str, dict] = {}
    for dimension, members in groups.items():
        result[dimension] = {}
        for name, items in sorted(members.items()):
            truth = np.array([i.segment.label == PROMOTIONAL for i in items])
            scores = np.array([i.score for i in items])
            result[dimension][name] = _segment_figures(truth, scores, threshold)
    return result


def _gold_mask(document: Document, text: str, spans, label: str) -> np.ndarray:
    selected = [
        (span.start, span.end)
        for span, segment in zip(spans, document.segments, strict=True)
        if segment.label == label
    ]
    return character_mask(len(text), selected)


def evaluate(
    scorer: Scorer, documents: Sequence[Document], threshold: float | None = None
) -> tuple[dict, list[ScoredSegment]]:
    """Score ``documents`` with ``scorer``; return the report and the scored labeled segments."""
    threshold = scorer.threshold if threshold is None else threshold
    started = time.perf_counter()
    scored_all = [
        ScoredSegment(document, index, float(score))
        for document, scores in zip(documents, document_scores(scorer, documents), strict=True)
        for index, score in enumerate(scores)
    ]
    scored = [item for item in scored_all if item.segment.label != AMBIGUOUS]
    ambiguous = [item for item in scored_all if item.segment.label == AMBIGUOUS]
    truth = np.array([item.segment.label == PROMOTIONAL for item in scored], dtype=bool)
    scores = np.array([item.score for item in scored], dtype=float)
    counts = binary_counts(truth, scores >= threshold)

    in_context = _in_context_scoring(scorer) is not None
    # each text scored on its own, as predict_proba gives it: the same as above for a scorer
    # without context; the analysis of a scorer without analyze() reuses these
    alone_scores = (
        _score_texts(scorer, (item.segment.text for item in scored_all))
        if in_context
        else {item.segment.text: item.score for item in scored_all}
    )
    alone = None
    if in_context:
        alone_counts = binary_counts(
            truth, np.array([alone_scores[item.segment.text] for item in scored]) >= threshold
        )
        alone = {
            "precision": alone_counts.precision,
            "recall": alone_counts.recall,
            "f1": alone_counts.f1,
        }
    predicted_spans = _predicted_promotional_spans(scorer, documents, threshold, alone_scores)
    elapsed = time.perf_counter() - started
    doc_truth, doc_pred = [], []
    gold_promo, gold_factual, predicted = [], [], []
    for document, spans in zip(documents, predicted_spans, strict=True):
        text, gold_spans = document.joined()
        gold_promo.append(_gold_mask(document, text, gold_spans, PROMOTIONAL))
        gold_factual.append(_gold_mask(document, text, gold_spans, FACTUAL))
        predicted.append(character_mask(len(text), spans))
        doc_truth.append(document.has_promotion)
        doc_pred.append(bool(spans))
    characters = character_scores(
        np.concatenate(gold_promo), np.concatenate(gold_factual), np.concatenate(predicted)
    )
    document_counts = binary_counts(doc_truth, doc_pred)

    report = {
        "model": getattr(scorer, "name", type(scorer).__name__),
        "threshold": threshold,
        "documents": len(documents),
        "segment": {
            "segments": int(truth.size),
            "promotional": int(truth.sum()),
            "precision": counts.precision,
            "recall": counts.recall,
            "f1": counts.f1,
            "pr_auc": average_precision(truth, scores),
            "ece": expected_calibration_error(truth, scores),
            "confusion": {"tp": counts.tp, "fp": counts.fp, "fn": counts.fn, "tn": counts.tn},
            "in_context": in_context,
        },
        "segment_alone": alone,
        "document": {
            "accuracy": document_counts.accuracy,
            "with_promotion": int(sum(doc_truth)),
            "precision": document_counts.precision,
            "recall": document_counts.recall,
        },
        "characters": {
            "precision": characters.counts.precision,
            "recall": characters.counts.recall,
            "f1": characters.counts.f1,
            "factual_removed_share": characters.factual_removed_share,
        },
        "ambiguous": {
            "segments": len(ambiguous),
            "flagged": sum(item.score >= threshold for item in ambiguous),
            "mean_score": float(np.mean([i.score for i in ambiguous])) if ambiguous else None,
        },
        "breakdown": _breakdowns(scored, threshold),
        "speed": {"seconds": elapsed, "segments_per_second": len(scored_all) / elapsed},
    }
    return report, scored


def resolve_model(name_or_path: str, train: Path | None = None, dev: Path | None = None):
    """Turn ``--model`` into a scorer: a baseline name, a TF-IDF JSON file or a model directory."""
    from training.baselines import KeywordBaseline, TfidfBaseline

    if name_or_path == "keyword":
        return KeywordBaseline()
    if name_or_path == "tfidf":
        return fit_tfidf(train or SPLITS_DIR / "train.jsonl", dev or SPLITS_DIR / "dev.jsonl")
    path = Path(name_or_path)
    if path.is_file() and path.suffix == ".json":
        return TfidfBaseline.load(path)
    if path.is_dir() and (path / "model.onnx").is_file():
        import promofilter

        return promofilter.load(path)
    raise SystemExit(
        f"--model {name_or_path!r}: expected 'keyword', 'tfidf', a TF-IDF .json file "
        "or a directory holding model.onnx"
    )


def fit_tfidf(train: Path, dev: Path, generated_per_document: int = 6):
    """Fit the TF-IDF baseline on train plus its generated variants, tuned on dev."""
    from training.baselines import TfidfBaseline
    from training.generate import generate_variants

    train_documents = read_documents(train)
    train_documents += generate_variants(train_documents, per_document=generated_per_document)
    texts, labels = labeled_segments(train_documents)
    dev_texts, dev_labels = labeled_segments(read_documents(dev))
    return TfidfBaseline.fit(texts, labels, dev_texts, dev_labels)


def write_report(report: dict, scored: Sequence[ScoredSegment], directory: Path) -> None:
    """Write report.json, report.md, pr_curve.png and confusion_matrix.png to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    truth = np.array([item.segment.label == PROMOTIONAL for item in scored])
    scores = np.array([item.score for item in scored])
    _plot_pr_curve(truth, scores, report, directory / "pr_curve.png")
    _plot_confusion(report["segment"]["confusion"], report, directory / "confusion_matrix.png")
    write_report_files(directory, report, _markdown(report, scored))


def write_report_files(directory: Path, report: dict, markdown: str) -> None:
    """``report`` as report.json and ``markdown`` as report.md in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    (directory / "report.json").write_text(text, encoding="utf-8")
    (directory / "report.md").write_text(markdown, encoding="utf-8")


def _plot_pr_curve(truth: np.ndarray, scores: np.ndarray, report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    precision, recall, _ = precision_recall_curve(truth, scores)
    figure, axes = plt.subplots(figsize=(5, 4), dpi=100)
    axes.step(np.r_[0.0, recall], np.r_[1.0, precision], where="post")
    segment = report["segment"]
    axes.plot([segment["recall"]], [segment["precision"]], "o", label="at threshold")
    axes.set(xlabel="recall (promotional)", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02))
    axes.set_title(f"{report['model']}: PR-AUC {segment['pr_auc']:.3f}")
    axes.legend(loc="lower left")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _plot_confusion(confusion: dict, report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.array([[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]])
    figure, axes = plt.subplots(figsize=(4, 3.5), dpi=100)
    axes.imshow(matrix, cmap="Blues")
    for (row, column), value in np.ndenumerate(matrix):
        colour = "white" if value > matrix.max() / 2 else "black"
        axes.text(column, row, str(value), ha="center", va="center", color=colour)
    axes.set_xticks([0, 1], [FACTUAL, PROMOTIONAL])
    axes.set_yticks([0, 1], [FACTUAL, PROMOTIONAL])
    axes.set(
        xlabel="predicted", ylabel="gold", title=f"{report['model']} @ {report['threshold']:.2f}"
    )
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _markdown(report: dict, scored: Sequence[ScoredSegment]) -> str:
    segment, characters, document = report["segment"], report["characters"], report["document"]
    lines = [
        f"# Evaluation: `{report['model']}` on `{report.get('data', '?')}`",
        "",
        f"Data sha256 `{report.get('data_sha256', '?')}`; {report['documents']} documents, "
        f"{segment['segments']} segments ({segment['promotional']} promotional); "
        f"threshold {report['threshold']:.3f}.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| segment precision (promotional) | {segment['precision']:.3f} |",
        f"| segment recall | {segment['recall']:.3f} |",
        f"| segment F1 | {segment['f1']:.3f} |",
        f"| PR-AUC | {segment['pr_auc']:.3f} |",
        f"| segments scored in document context | {'yes' if segment['in_context'] else 'no'} |",
        *(
            [f"| segment F1 scored alone (no neighbours) | {report['segment_alone']['f1']:.3f} |"]
            if report.get("segment_alone")
            else []
        ),
        f"| expected calibration error | {segment['ece']:.3f} |",
        f"| document accuracy (contains promotion?) | {document['accuracy']:.3f} |",
        f"| character F1, documents analysed whole | {characters['f1']:.3f} |",
        f"| factual characters wrongly removed | {characters['factual_removed_share']:.2%} |",
        f"| ambiguous segments (left out above) | {report['ambiguous']['segments']} "
        f"({report['ambiguous']['flagged']} flagged) |",
        "",
    ]
    lines += ["![PR curve](pr_curve.png) ![confusion matrix](confusion_matrix.png)", ""]
    for dimension, groups in report["breakdown"].items():
        lines += [
            f"## By {dimension}",
            "",
            "| group | segments | promotional | precision | recall | F1 | flagged | FP rate |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, figures in groups.items():
            cells = [
                _cell(figures.get(key))
                for key in ("precision", "recall", "f1", "flagged_share", "false_positive_rate")
            ]
            lines.append(
                f"| {name} | {figures['segments']} | {figures['promotional']} | "
                + " | ".join(cells)
                + " |"
            )
        lines.append("")
    lines += [
        f"## The {WORST_ERRORS} worst errors",
        "",
        "| document | gold | kind | score | text |",
        "|---|---|---|---|---|",
    ]
    for item in worst_errors(scored, report["threshold"]):
        text = item.segment.text.replace("|", "\\|")
        text = text if len(text) <= 160 else text[:157] + "..."
        lines.append(
            f"| {item.document.id} | {item.segment.label} | {item.segment.kind or ''} | "
            f"{item.score:.3f} | {text} |"
        )
    return "\n".join(lines) + "\n"


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def worst_errors(
    scored: Sequence[ScoredSegment], threshold: float, limit: int = WORST_ERRORS
) -> list[ScoredSegment]:
    """Misclassified segments, the most confidently wrong first."""
    errors = [
        item for item in scored if (item.score >= threshold) != (item.segment.label == PROMOTIONAL)
    ]
    # distance from the gold label: 1.0 is a maximally confident mistake
    errors.sort(
        key=lambda item: abs(item.score - (item.segment.label == PROMOTIONAL)), reverse=True
    )
    return errors[:limit]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate",
        description="Evaluate a promofilter model or baseline on a corpus file.",
    )
    parser.add_argument("--model", required=True, help="keyword, tfidf, a .json or a model dir")
    parser.add_argument("--data", required=True, type=Path, help="corpus JSONL file")
    parser.add_argument("--report", type=Path, help="directory for report.md, JSON and plots")
    parser.add_argument("--threshold", type=float, help="override the model's threshold")
    parser.add_argument("--train", type=Path, help="training split for 'tfidf' (default: ours)")
    parser.add_argument("--dev", type=Path, help="dev split for 'tfidf' (default: ours)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        documents = read_documents(args.data)
        scorer = resolve_model(args.model, args.train, args.dev)
    except CorpusError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report, scored = evaluate(scorer, documents, args.threshold)
    report["model"] = args.model
    report["data"] = str(args.data)
    report["data_sha256"] = sha256_file(args.data)
    if args.report:
        write_report(report, scored, args.report)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
