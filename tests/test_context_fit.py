"""Fitting the context head: it must learn what only the neighbours tell."""

from __future__ import annotations

import numpy as np
import pytest

from training.context import document_rows, fit_context_head
from training.corpus import Document, Segment


class MarkedEmbeddings:
    """``embed`` gives [1, 0] for a text containing "Gratis" and [0, 1] otherwise."""

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.array([[1.0, 0.0] if "Gratis" in t else [0.0, 1.0] for t in texts])


def document(*segments: tuple[str, str], name: str = "doc") -> Document:
    return Document(name, "test", tuple(Segment(text, label) for text, label in segments))


def teaser_documents() -> list[Document]:
    """A teaser ("Was tun?") is promotional only before a "Gratis" line; alone it is not."""
    documents = []
    for number in range(40):
        documents.append(
            document(
                ("Der Kurs stieg.", "factual"),
                (f"Was tun? {number}", "promotional"),
                ("Gratis-Report sichern!", "promotional"),
                name=f"promo-{number}",
            )
        )
        documents.append(
            document(
                ("Der Kurs stieg.", "factual"),
                (f"Was tun? {number}", "factual"),
                ("Die Antwort kam am Abend.", "factual"),
                ("Unklar.", "ambiguous"),
                name=f"plain-{number}",
            )
        )
    return documents


def test_the_fitted_head_reads_the_next_segment():
    model = MarkedEmbeddings()
    documents = teaser_documents()
    head = fit_context_head(model, documents, c=10.0)
    before_offer, before_answer = document_rows(model, documents[:2])
    assert head.in_document(before_offer)[1] > 0.5 > head.in_document(before_answer)[1]
    # on its own the teaser has nothing to go by: the same score in both documents
    assert head.alone(before_offer[1:2]) == pytest.approx(head.alone(before_answer[1:2]))


def test_document_rows_split_one_call_by_document():
    rows = document_rows(MarkedEmbeddings(), teaser_documents()[:3])
    assert [len(r) for r in rows] == [3, 4, 3]


def test_fitting_needs_both_labels():
    only_factual = [document(("Der Kurs stieg.", "factual"), ("Ende.", "factual"))]
    with pytest.raises(ValueError, match="promotional and factual"):
        fit_context_head(MarkedEmbeddings(), only_factual)
