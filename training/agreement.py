"""How well independent annotators agree with the gold labels: a ceiling for a model's F1.

Each annotator labels documents of a split blind (without the gold labels), following
``../shared/LABELING.md``. Their files sit in one directory, one file per annotator,
``labels-<name>.jsonl``, a line per document::

    {"id": "dax-019", "labels": ["promotional", "factual", ...]}

with one label per segment, in the segment order of the gold split. An annotator may cover
only some of the split's documents. This module reports, for the promotional label:

* each annotator's F1 and Cohen's kappa against the gold labels;
* each pair of annotators' agreement on the documents both labelled;
* the majority vote's F1 against gold, and the segments where it differs from gold;
* with ``--model``: the model's F1 against gold, on all segments and on the segments where
  every annotator agrees with gold.

    python -m training.agreement --gold training/data/splits/test.jsonl \
        --labels training/data/agreement --model models/default
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.build import REPO
from training.corpus import (
    AMBIGUOUS,
    FACTUAL,
    LABELS,
    PROMOTIONAL,
    CorpusError,
    Document,
    read_documents,
    sha256_file,
)
from training.evaluate import SPLITS_DIR, write_report_files
from training.metrics import binary_counts

DEFAULT_LABELS_DIR = REPO / "training" / "data" / "agreement"
LABEL_FILE_PREFIX = "labels-"


@dataclass(frozen=True)
class Annotation:
    """One annotator's labels: for each gold segment (in split order), promotional or not,
    and whether the annotator labelled it at all."""

    annotator: str
    promotional: np.ndarray
    covered: np.ndarray


def read_annotation(path: str | Path, documents: Sequence[Document]) -> Annotation:
    """Read one annotator's file against the gold ``documents``; a :class:`CorpusError`
    lists every problem as ``file:line: field: reason``."""
    path = Path(path)
    offsets = np.cumsum([0] + [len(d.segments) for d in documents])
    by_id = {d.id: position for position, d in enumerate(documents)}
    promotional = np.zeros(offsets[-1], dtype=bool)
    covered = np.zeros(offsets[-1], dtype=bool)
    problems: list[str] = []
    seen: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise CorpusError(path, [f"{path}: cannot read: {error}"]) from error
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except ValueError as error:
            problems.append(f"{where}: not JSON: {error}")
            continue
        if not isinstance(record, dict):
            problems.append(f"{where}: a line must be a JSON object")
            continue
        document_id, labels = record.get("id"), record.get("labels")
        if document_id not in by_id:
            problems.append(f"{where}: id: {document_id!r} is not a document of the gold split")
            continue
        if document_id in seen:
            problems.append(
                f"{where}: id: duplicate id {document_id!r} (first on line {seen[document_id]})"
            )
            continue
        seen[document_id] = number
        position = by_id[document_id]
        expected = len(documents[position].segments)
        if not isinstance(labels, list) or len(labels) != expected:
            count = len(labels) if isinstance(labels, list) else "no list of"
            problems.append(f"{where}: labels: {count} labels for {expected} segments")
            continue
        wrong = [(i, label) for i, label in enumerate(labels) if label not in LABELS]
        if wrong:
            index, label = wrong[0]
            problems.append(f"{where}: labels[{index}]: {label!r} is not one of {list(LABELS)}")
            continue
        span = slice(offsets[position], offsets[position + 1])
        promotional[span] = [label == PROMOTIONAL for label in labels]
        covered[span] = True
    if problems:
        raise CorpusError(path, problems)
    if not seen:
        raise CorpusError(path, [f"{path}: no documents"])
    return Annotation(annotator_name(path), promotional, covered)


def annotator_name(path: Path) -> str:
    return path.stem.removeprefix(LABEL_FILE_PREFIX)


def read_annotations(directory: str | Path, documents: Sequence[Document]) -> list[Annotation]:
    files = sorted(Path(directory).glob(f"{LABEL_FILE_PREFIX}*.jsonl"))
    if not files:
        raise CorpusError(directory, [f"{directory}: no {LABEL_FILE_PREFIX}*.jsonl files"])
    return [read_annotation(path, documents) for path in files]


def agreement_summary(gold: str | Path, labels: str | Path = DEFAULT_LABELS_DIR) -> dict | None:
    """The annotators' headline figures on ``gold`` for a model card: their F1 against gold,
    each and by majority. None when the label files do not fit ``gold`` (another split, or
    one changed since they were made) or there are none."""
    try:
        documents = read_documents(gold)
        annotations = read_annotations(labels, documents)
    except CorpusError:
        return None
    report = agreement_report(documents, annotations)
    each = [figures["f1"] for figures in report["annotators"].values()]
    coverage = np.sum([a.covered for a in annotations], axis=0)
    return {
        "annotators": len(each),
        "per_segment": int(coverage.min()),
        "annotator_f1": [min(each), max(each)],
        "majority_f1": report["majority"]["f1"],
        "segments": report["majority"]["segments"],
    }


def cohen_kappa(first: np.ndarray, second: np.ndarray) -> float:
    """Cohen's kappa of two boolean labelings of the same items."""
    first, second = np.asarray(first, dtype=bool), np.asarray(second, dtype=bool)
    if first.size == 0:
        return float("nan")
    observed = np.mean(first == second)
    chance = first.mean() * second.mean() + (1 - first.mean()) * (1 - second.mean())
    return float((observed - chance) / (1 - chance)) if chance < 1 else 1.0


def _pair_figures(truth: np.ndarray, other: np.ndarray) -> dict:
    counts = binary_counts(truth, other)
    return {
        "segments": int(truth.size),
        "f1": round(counts.f1, 4),
        "kappa": round(cohen_kappa(truth, other), 4),
        "disagreements": counts.fp + counts.fn,
    }


def majority_vote(annotations: Sequence[Annotation]) -> tuple[np.ndarray, np.ndarray]:
    """Per segment: whether more than half of the annotators who labelled it said
    promotional, and whether there is such a majority either way (no tie, at least one
    vote)."""
    votes = np.sum([a.promotional & a.covered for a in annotations], axis=0)
    voters = np.sum([a.covered for a in annotations], axis=0)
    decided = (voters > 0) & (2 * votes != voters)
    return 2 * votes > voters, decided


def agreement_report(
    documents: Sequence[Document],
    annotations: Sequence[Annotation],
    model_scores: np.ndarray | None = None,
    threshold: float | None = None,
) -> dict:
    """The figures listed in the module docstring; ``model_scores`` are P(promotional) per
    gold segment in split order, judged at ``threshold``."""
    segments = [(d, i, s) for d in documents for i, s in enumerate(d.segments)]
    gold_known = np.array([s.label != AMBIGUOUS for _, _, s in segments])
    gold = np.array([s.label == PROMOTIONAL for _, _, s in segments])
    report: dict = {"documents": len(documents), "gold_segments": int(gold_known.sum())}
    report["annotators"] = {
        a.annotator: _pair_figures(
            gold[a.covered & gold_known], a.promotional[a.covered & gold_known]
        )
        for a in annotations
    }
    report["pairs"] = {
        f"{a.annotator}/{b.annotator}": _pair_figures(a.promotional[both], b.promotional[both])
        for a, b in itertools.combinations(annotations, 2)
        if (both := a.covered & b.covered).any()
    }
    majority, decided = majority_vote(annotations)
    judged = decided & gold_known
    report["majority"] = _pair_figures(gold[judged], majority[judged])
    report["majority"]["ties"] = int((gold_known & ~decided & _covered_by_any(annotations)).sum())
    report["majority_differs"] = [
        {
            "document": document.id,
            "segment": index,
            "gold": segment.label,
            "kind": segment.kind,
            "votes": {a.annotator: _label(a.promotional[n]) for a in annotations if a.covered[n]},
            "text": segment.text,
        }
        for n, (document, index, segment) in enumerate(segments)
        if judged[n] and majority[n] != gold[n]
    ]
    if model_scores is not None:
        predicted = np.asarray(model_scores) >= threshold
        unanimous = gold_known & _covered_by_any(annotations)
        for a in annotations:
            unanimous &= ~a.covered | (a.promotional == gold)
        report["model"] = {
            "threshold": threshold,
            "all": _pair_figures(gold[gold_known], predicted[gold_known]),
            "annotators_unanimous_with_gold": _pair_figures(gold[unanimous], predicted[unanimous]),
            "against_majority": _pair_figures(majority[judged], predicted[judged]),
        }
    return report


def _covered_by_any(annotations: Sequence[Annotation]) -> np.ndarray:
    return np.any([a.covered for a in annotations], axis=0)


def _label(promotional: bool) -> str:
    return PROMOTIONAL if promotional else FACTUAL


def markdown(report: dict) -> str:
    rows = [
        "| who | against | segments | F1 | kappa | disagreements |",
        "|---|---|---|---|---|---|",
    ]

    def row(who: str, against: str, figures: dict) -> None:
        rows.append(
            f"| {who} | {against} | {figures['segments']} | {figures['f1']:.4f} | "
            f"{figures['kappa']:.4f} | {figures['disagreements']} |"
        )

    for name, figures in report["annotators"].items():
        row(f"annotator {name}", "gold", figures)
    for pair, figures in report["pairs"].items():
        row(f"annotators {pair}", "each other", figures)
    row("majority of annotators", "gold", report["majority"])
    if "model" in report:
        model = report["model"]
        row("model", "gold", model["all"])
        row(
            "model",
            "gold, where every annotator agrees with gold",
            model["annotators_unanimous_with_gold"],
        )
        row("model", "majority of annotators", model["against_majority"])
    lines = [
        f"Gold: `{report.get('gold', '')}` (sha256 `{report.get('gold_sha256', '')}`), "
        f"{report['documents']} documents, {report['gold_segments']} labelled segments. "
        f"Ties in the majority vote: {report['majority']['ties']}.",
        "",
        *rows,
        "",
        f"Segments where the majority of annotators differs from gold: "
        f"{len(report['majority_differs'])}",
        "",
        "| document | segment | gold | kind | votes | text |",
        "|---|---|---|---|---|---|",
    ]
    for item in report["majority_differs"]:
        votes = ", ".join(f"{name}: {label}" for name, label in item["votes"].items())
        text = item["text"].replace("|", "\\|")
        text = text if len(text) <= 160 else text[:157] + "..."
        lines.append(
            f"| {item['document']} | {item['segment']} | {item['gold']} | {item['kind'] or ''} "
            f"| {votes} | {text} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.agreement",
        description="Agreement of independent annotators with the gold labels of a split.",
    )
    parser.add_argument("--gold", type=Path, default=SPLITS_DIR / "test.jsonl")
    parser.add_argument(
        "--labels",
        type=Path,
        default=DEFAULT_LABELS_DIR,
        help=f"directory of {LABEL_FILE_PREFIX}<annotator>.jsonl files",
    )
    parser.add_argument("--model", help="also score a model directory against gold")
    parser.add_argument("--report", type=Path, help="directory for report.md and report.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        documents = read_documents(args.gold)
        annotations = read_annotations(args.labels, documents)
    except CorpusError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    scores = threshold = None
    if args.model:
        import promofilter

        from training.evaluate import document_scores

        model = promofilter.load(args.model)
        scores = np.concatenate(document_scores(model, documents))
        threshold = model.threshold
    report = agreement_report(documents, annotations, scores, threshold)
    # relative to the repository when inside it, so that a committed report names no machine
    gold = args.gold.resolve()
    shown = gold.relative_to(REPO) if gold.is_relative_to(REPO) else gold
    report.update(gold=str(shown), gold_sha256=sha256_file(args.gold))
    text = markdown(report)
    if args.report:
        write_report_files(args.report, report, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
