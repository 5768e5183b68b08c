"""Fit the context head (:class:`promofilter.context.ContextHead`) on a built encoder.

The head is a logistic regression over a segment's pooled embedding and its neighbours'
(:func:`promofilter.context.neighbour_features`). It is fitted on the embeddings of the graph
that ships (int8), so that it weighs exactly what the runtime will hand it, on whole
documents, so that it sees real neighbours, first and last segments, and one-segment
documents. Ambiguous segments serve as neighbours but are not fitted on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from promofilter.context import ContextHead, neighbour_features

from training.corpus import AMBIGUOUS, PROMOTIONAL, Document

DEFAULT_WINDOW = 1
# Inverse L2 strength on raw embeddings: 1.0 beat 0.1 on dev (F1 0.938 vs 0.936), a window
# of 2 added nothing (0.936) and an MLP with 64 hidden units no more (0.941 on dev, 0.911
# against 0.912 on test), in a sweep over the 3-layer student's fp32 embeddings.
DEFAULT_C = 1.0


def document_rows(model, documents: Sequence[Document]) -> list[np.ndarray]:
    """The pooled embedding of every segment, one ``(segments, hidden)`` array per document,
    from one batched call of ``model.embed``."""
    texts = [segment.text for document in documents for segment in document.segments]
    rows = model.embed(texts)
    bounds = np.cumsum([len(document.segments) for document in documents])[:-1]
    return np.split(rows, bounds)


def fit_targets(documents: Sequence[Document], fitted: str) -> tuple[np.ndarray, np.ndarray]:
    """Over all segments of ``documents`` in order: which carry a gold label (ambiguous ones
    serve as neighbours only), and for those, whether it is promotional. ``fitted`` names
    what is being fitted in the error raised when one of the two labels is missing."""
    labels = [segment.label for document in documents for segment in document.segments]
    known = np.array([label != AMBIGUOUS for label in labels], dtype=bool)
    target = np.array([label == PROMOTIONAL for label in labels], dtype=bool)[known]
    if target.all() or not target.any():
        raise ValueError(f"fitting {fitted} needs promotional and factual segments")
    return known, target


def fit_context_head(
    model,
    documents: Sequence[Document],
    window: int = DEFAULT_WINDOW,
    c: float = DEFAULT_C,
) -> ContextHead:
    """A :class:`ContextHead` for ``model``'s encoder, fitted on ``documents``' gold labels."""
    return fit_context_head_on_rows(document_rows(model, documents), documents, window, c)


def fit_context_head_on_rows(
    rows_by_document: Sequence[np.ndarray],
    documents: Sequence[Document],
    window: int = DEFAULT_WINDOW,
    c: float = DEFAULT_C,
) -> ContextHead:
    """:func:`fit_context_head` on embeddings already computed (from :func:`document_rows`)."""
    from sklearn.linear_model import LogisticRegression

    known, target = fit_targets(documents, "a context head")
    features = np.vstack([neighbour_features(rows, window) for rows in rows_by_document])
    regression = LogisticRegression(C=c, max_iter=5000)
    regression.fit(features[known], target)
    return ContextHead(regression.coef_[0], float(regression.intercept_[0]), window)
