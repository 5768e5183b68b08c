"""Fit the cascade (:class:`promofilter.cascade.Cascade`) and choose its bounds on dev.

The stand-in embeddings are the mean embedding of the factual and of the promotional
segments the context head is fitted on. The bounds are symmetric, ``skip_below = b`` and
``skip_above = 1 - b``: the build widens ``b`` along :data:`BOUND_GRID` while dev F1, each
segment scored in its document at the model's threshold, stays at least the F1 without the
cascade, less a tolerance. A wider gate skips more segments and, past some width, starts to
cost F1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from promofilter.cascade import Cascade
from promofilter.context import ContextHead, MixtureHead

from training.context import fit_targets
from training.corpus import Document, read_documents
from training.metrics import binary_counts

# In a sweep over the shipped 3-layer model's dev split, b = 0.05 skipped 59% of the
# segments at unchanged dev F1 (0.946); 0.1 skipped 71% and cost 0.7 points.
BOUND_GRID = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


def stand_in_embeddings(
    rows_by_document: Sequence[np.ndarray], documents: Sequence[Document]
) -> tuple[np.ndarray, np.ndarray]:
    """The mean embedding of the factual and of the promotional gold segments."""
    known, target = fit_targets(documents, "the cascade's stand-ins")
    rows = np.vstack(rows_by_document)[known]
    return rows[~target].mean(axis=0), rows[target].mean(axis=0)


@dataclass(frozen=True)
class EncodedSplit:
    """A split's rows, one array per document, and its gold labels over all segments."""

    embedding_rows: Sequence[np.ndarray]
    lexical_rows: Sequence[np.ndarray]
    known: np.ndarray  # which segments carry a gold label
    truth: np.ndarray  # for those: promotional or not

    def figures(
        self, head: MixtureHead, threshold: float, cascade: Cascade | None
    ) -> dict[str, float]:
        """F1 in context at ``threshold`` over the gold segments, and the share of all
        segments that skip the encoder, with ``cascade`` (or without, for None)."""
        scores, skipped = [], 0
        for embeddings, lexical in zip(self.embedding_rows, self.lexical_rows, strict=True):
            if cascade is not None:
                skipped += int(cascade.skipped(lexical).sum())
                embeddings = cascade.fill(embeddings, lexical)
            scores.append(head.in_document(np.hstack([embeddings, lexical])))
        predicted = np.concatenate(scores)[self.known] >= threshold
        total = sum(len(rows) for rows in self.lexical_rows)
        return {"f1": binary_counts(self.truth, predicted).f1, "skipped": skipped / max(total, 1)}


def choose_cascade(
    gate: ContextHead,
    stand_ins: tuple[np.ndarray, np.ndarray],
    head: MixtureHead,
    threshold: float,
    dev: EncodedSplit,
    tolerance: float = 0.0,
) -> tuple[Cascade | None, dict[str, dict[str, float]]]:
    """The widest bounds of :data:`BOUND_GRID` up to the first that lowers dev F1 by more
    than ``tolerance`` (None if the narrowest already does), and the dev figures of each
    bound tried, keyed by ``b`` (``"none"``: without a cascade)."""
    figures = {"none": dev.figures(head, threshold, None)}
    chosen = None
    for bound in BOUND_GRID:
        cascade = Cascade(gate, bound, 1.0 - bound, *stand_ins)
        figures[str(bound)] = dev.figures(head, threshold, cascade)
        if figures[str(bound)]["f1"] < figures["none"]["f1"] - tolerance:
            break
        chosen = cascade
    return chosen, figures


def cascade_summary(runtime, test: Path, test_hard: Path) -> dict[str, dict[str, float]]:
    """For the test split and its hard subset: the share of segments ``runtime``'s cascade
    skips, and F1 and character F1 with the encoder run on every segment instead."""
    import promofilter

    from training.evaluate import evaluate

    exact = promofilter.load(runtime.path, threshold=runtime.threshold, cascade=False)
    exact.split_confidence = runtime.split_confidence
    summary = {}
    for name, path in (("test", test), ("test-hard", test_hard)):
        documents = read_documents(path)
        texts = [segment.text for document in documents for segment in document.segments]
        skipped = runtime.cascade.skipped(runtime.lexical.rows(texts))
        report, _ = evaluate(exact, documents)
        summary[name] = {
            "skipped": round(float(skipped.mean()), 4),
            "f1_without_cascade": round(report["segment"]["f1"], 4),
            "char_f1_without_cascade": round(report["characters"]["f1"], 4),
        }
    return summary
