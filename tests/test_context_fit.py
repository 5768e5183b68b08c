"""What the build fits heads on: embeddings split by document, and the gold labels."""

from __future__ import annotations

import numpy as np
import pytest

from training.context import document_rows, fit_targets
from training.corpus import Document, Segment


class MarkedEmbeddings:
    """``embed`` gives [1, 0] for a text containing "Gratis" and [0, 1] otherwise."""

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.array([[1.0, 0.0] if "Gratis" in t else [0.0, 1.0] for t in texts])


def document(*segments: tuple[str, str], name: str = "doc") -> Document:
    return Document(name, "test", tuple(Segment(text, label) for text, label in segments))


def test_document_rows_split_one_call_by_document():
    documents = [
        document(("Der Kurs stieg.", "factual"), ("Gratis-Report!", "promotional")),
        document(("Unklar.", "ambiguous")),
        document(("Die Antwort kam.", "factual"), ("Gratis!", "promotional"), ("Ende.", "factual")),
    ]
    rows = document_rows(MarkedEmbeddings(), documents)
    assert [len(r) for r in rows] == [2, 1, 3]
    np.testing.assert_array_equal(rows[2], [[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])


def test_fit_targets_leave_ambiguous_segments_out():
    documents = [
        document(("Der Kurs stieg.", "factual"), ("Unklar.", "ambiguous")),
        document(("Gratis-Report!", "promotional")),
    ]
    known, target = fit_targets(documents, "a head")
    assert known.tolist() == [True, False, True]
    assert target.tolist() == [False, True]


def test_fitting_needs_both_labels():
    only_factual = [document(("Der Kurs stieg.", "factual"), ("Ende.", "factual"))]
    with pytest.raises(ValueError, match="fitting a head needs promotional and factual"):
        fit_targets(only_factual, "a head")
