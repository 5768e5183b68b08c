"""What the teacher reaches: the quality ceiling of the distillation.

The shipped model is a small student distilled from a 12-layer teacher that reads each
document as one sequence (:class:`training.document_model.DocumentClassifier`). This scores
the teacher itself on dev, test and the hard subset, every segment in its document, at the
threshold the build's rule picks on dev. The gap to the shipped student is what a larger or
better distilled student could still win.

    python -m training.ceiling --teacher ~/.cache/promofilter/runs/build-default/document-teacher

The teacher runs in fp32 PyTorch: about 3 minutes on 2 cores for the three splits.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from training.build import BuildConfig, _load_tokenizer, stored_threshold
from training.context import fit_targets
from training.corpus import Document, read_documents
from training.metrics import binary_counts
from training.train import dev_metrics

# P(promotional) for every segment of each document, in order
DocumentScorer = Callable[[Sequence[Document]], list[np.ndarray]]


def _segment_targets(documents: Sequence[Document]) -> tuple[np.ndarray, np.ndarray]:
    """Over all segments: which carry a gold label, and whether each is promotional."""
    known, target = fit_targets(documents, "an evaluation")
    promotional = np.zeros(len(known), dtype=bool)
    promotional[known] = target
    return known, promotional


def ceiling(
    score: DocumentScorer,
    dev: Sequence[Document],
    evaluations: dict[str, Sequence[Document]],
    precision_target: float,
) -> dict:
    """Choose the threshold on ``dev`` as the build does and give segment F1 on dev and on
    each of ``evaluations``, every segment scored in its document by ``score``."""
    dev_known, dev_truth = _segment_targets(dev)
    dev_scores = np.concatenate(score(dev))
    chosen = dev_metrics(
        dev_truth[dev_known].astype(float), dev_scores[dev_known], precision_target
    )
    threshold = stored_threshold(chosen["threshold"])  # as the build stores it
    report = {
        "threshold": threshold,
        "dev": {"f1": round(chosen["f1"], 4), "segments": int(dev_known.sum())},
    }
    for name, documents in evaluations.items():
        known, truth = _segment_targets(documents)
        found = np.concatenate(score(documents))
        counts = binary_counts(truth[known], found[known] >= threshold)
        report[name] = {
            "f1": round(counts.f1, 4),
            "precision": round(counts.precision, 4),
            "recall": round(counts.recall, 4),
            "segments": int(known.sum()),
        }
    return report


def teacher_scorer(directory: Path) -> DocumentScorer:
    """A build's teacher checkpoint as a :data:`DocumentScorer`."""
    from training.document_model import DocumentClassifier, predict_documents

    model = DocumentClassifier.from_pretrained(directory, local_files_only=True).eval()
    tokenizer = _load_tokenizer(directory)

    def score(documents: Sequence[Document]) -> list[np.ndarray]:
        texts = [[segment.text for segment in document.segments] for document in documents]
        return predict_documents(model, tokenizer, texts)

    return score


def checkpoint_report(checkpoint: Path, config: BuildConfig) -> dict:
    """:func:`ceiling` of a document-reading checkpoint on the build's dev, test and hard
    splits, at the threshold the build's rule picks on dev."""
    return ceiling(
        teacher_scorer(checkpoint),
        read_documents(config.dev),
        {"test": read_documents(config.test), "test-hard": read_documents(config.test_hard)},
        config.precision_target,
    )


def write_report(report: dict, path: Path | None) -> None:
    """Print ``report`` as JSON, and write it to ``path`` as well where one is given."""
    text = json.dumps(report, indent=2)
    print(text)
    if path:
        path.write_text(text + "\n", encoding="utf-8")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.ceiling",
        description="Segment F1 of a build's document-reading teacher on dev, test and hard.",
    )
    parser.add_argument("--teacher", type=Path, required=True, help="the teacher's checkpoint")
    parser.add_argument("--report", type=Path, help="also write the figures here as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.teacher / "config.json").is_file():
        print(f"error: {args.teacher}: no config.json, not a checkpoint directory", file=sys.stderr)
        return 2
    report = checkpoint_report(args.teacher, BuildConfig(progress=False))
    write_report({**report, "teacher": str(args.teacher)}, args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
