"""What the build fits on an encoder that ships: its embeddings, split by document, and the
gold labels they are fitted on.

The heads and the cascade are fitted on the embeddings of the graph that ships (int8), so
that they weigh exactly what the runtime will hand them, on whole documents, so that they
see real neighbours, first and last segments, and one-segment documents. Ambiguous segments
serve as neighbours but are not fitted on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.corpus import AMBIGUOUS, PROMOTIONAL, Document


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
