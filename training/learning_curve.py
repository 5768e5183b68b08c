"""How much more hand-written training data would buy: a learning curve.

Fits the shipped model's character n-gram member (:mod:`training.lexical`: TF-IDF of a
segment and its neighbours, logistic regression) on a random share of the training
documents plus their generated variants, picks the threshold on dev as the build does, and
reports F1 on dev and test. It is the only part of the model cheap enough to refit many
times; the encoder takes more than an hour per fit on 2 cores.

    python -m training.learning_curve [--fractions 0.25 0.5 0.75 1] [--seeds 5]
        [--report training/reports/learning-curve]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.build import BuildConfig
from training.corpus import (
    AMBIGUOUS,
    CorpusError,
    Document,
    labeled_segments,
    read_documents,
    sha256_file,
)
from training.evaluate import SPLITS_DIR, write_report_files
from training.metrics import binary_counts, threshold_for_precision

DEFAULT_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
GENERATOR_SEED = 13  # the build's seed for the variants the heads are fitted on


def _scores(lexical, head, documents: Sequence[Document]) -> np.ndarray:
    """P(promotional) of the gold segments, each beside its neighbours."""
    scores = [head.in_document(lexical.rows([s.text for s in d.segments])) for d in documents]
    known = np.array([s.label != AMBIGUOUS for d in documents for s in d.segments])
    return np.concatenate(scores)[known]


def learning_curve(
    train: Sequence[Document],
    dev: Sequence[Document],
    test: Sequence[Document],
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seeds: int = 5,
    config: BuildConfig | None = None,
) -> list[dict]:
    """One entry per fraction of the training documents: their number and, over ``seeds``
    random draws of the documents and their generated variants, dev and test F1 at the dev
    threshold."""
    from training.generate import generate_variants
    from training.lexical import fit_char_ngrams

    config = config or BuildConfig()
    if not fractions or any(not 0 < fraction <= 1 for fraction in fractions):
        raise ValueError(f"fractions must lie in (0, 1], got {list(fractions)}")
    _, dev_truth = labeled_segments(dev)
    _, test_truth = labeled_segments(test)
    curve = []
    for fraction in sorted(fractions):
        count = max(1, round(fraction * len(train)))
        runs = []
        for draw in range(seeds):
            chosen = np.random.default_rng(draw).permutation(len(train))[:count]
            documents = [train[i] for i in sorted(chosen)]
            # the variants vary with the draw too: at the whole split they are all that does
            # (draw 0 is the build's own seed)
            variant_seed = GENERATOR_SEED + draw
            documents += generate_variants(documents, config.generated_per_document, variant_seed)
            lexical, head = fit_char_ngrams(documents)
            dev_scores = _scores(lexical, head, dev)
            threshold = threshold_for_precision(dev_truth, dev_scores, config.precision_target)
            test_predicted = _scores(lexical, head, test) >= threshold
            runs.append(
                (
                    binary_counts(dev_truth, dev_scores >= threshold).f1,
                    binary_counts(test_truth, test_predicted).f1,
                )
            )
        dev_f1, test_f1 = np.array(runs).T
        curve.append(
            {
                "fraction": fraction,
                "documents": count,
                "draws": len(runs),
                "dev_f1": round(float(dev_f1.mean()), 4),
                "test_f1": round(float(test_f1.mean()), 4),
                "test_f1_range": [round(float(test_f1.min()), 4), round(float(test_f1.max()), 4)],
            }
        )
    return curve


def markdown(curve: Sequence[dict], data: dict) -> str:
    lines = [
        "Character n-gram member alone (TF-IDF of a segment and its neighbours, logistic "
        "regression), fitted on a share of the training documents and their generated "
        "variants; threshold on dev as the build chooses it.",
        "",
        "| training documents | share | draws | dev F1 | test F1 | test F1 range |",
        "|---|---|---|---|---|---|",
    ]
    for point in curve:
        low, high = point["test_f1_range"]
        lines.append(
            f"| {point['documents']} | {point['fraction']:g} | {point['draws']} | "
            f"{point['dev_f1']:.4f} | {point['test_f1']:.4f} | {low:.4f}-{high:.4f} |"
        )
    lines += ["", "Data sha256:", ""]
    lines += [f"- `{name}`: `{digest}`" for name, digest in data.items()]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.learning_curve",
        description="F1 of the character n-gram member against the share of training data.",
    )
    parser.add_argument("--train", type=Path, default=SPLITS_DIR / "train.jsonl")
    parser.add_argument("--dev", type=Path, default=SPLITS_DIR / "dev.jsonl")
    parser.add_argument("--test", type=Path, default=SPLITS_DIR / "test.jsonl")
    parser.add_argument("--fractions", type=float, nargs="+", default=list(DEFAULT_FRACTIONS))
    parser.add_argument("--seeds", type=int, default=5, help="random draws per fraction")
    parser.add_argument("--report", type=Path, help="directory for report.md and report.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        splits = [read_documents(path) for path in (args.train, args.dev, args.test)]
        curve = learning_curve(*splits, fractions=args.fractions, seeds=args.seeds)
    except (CorpusError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    data = {
        f"{role} ({path.name})": sha256_file(path)
        for role, path in (("train", args.train), ("dev", args.dev), ("test", args.test))
    }
    text = markdown(curve, data)
    if args.report:
        write_report_files(args.report, {"curve": curve, "data_sha256": data}, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
