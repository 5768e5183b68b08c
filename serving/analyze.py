"""Whole documents: label each segment, split off trailing calls to action, strip promotion.

:func:`analyze_documents` needs only an encoding function (texts in, one row each out) and a
head (:mod:`promofilter.context`) that turns rows into P(promotional), alone or beside the
neighbouring segments; so the rules here are tested with a stand-in and run unchanged on the
ONNX model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from promofilter.context import Head
from promofilter.segment import Span, segment_spans, sentence_spans, trailing_split

PROMOTIONAL = "promotional"
FACTUAL = "factual"


def label_of(score: float, threshold: float) -> str:
    """The label of a P(promotional) score: promotional at or above ``threshold``."""
    return PROMOTIONAL if score >= threshold else FACTUAL


EncodeFunction = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class SegmentResult:
    """One labelled segment: ``text == document[start:end]``, ``score`` is P(promotional)."""

    start: int
    end: int
    text: str
    label: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "label": self.label,
            "score": round(self.score, 6),
            "text": self.text,
        }


@dataclass(frozen=True)
class Analysis:
    """A document's segments in reading order, each with its label and score."""

    document: str = field(repr=False)
    segments: tuple[SegmentResult, ...]
    threshold: float

    @property
    def label(self) -> str:
        """``"promotional"`` if any segment is: one call to action makes a page need cleaning."""
        return PROMOTIONAL if any(s.label == PROMOTIONAL for s in self.segments) else FACTUAL

    @property
    def promo_share(self) -> float:
        """The share of segment characters (whitespace between segments left out) that are
        promotional; 0.0 for a document without segments."""
        total = sum(s.end - s.start for s in self.segments)
        promotional = sum(s.end - s.start for s in self.segments if s.label == PROMOTIONAL)
        return promotional / total if total else 0.0

    @property
    def promotional(self) -> list[SegmentResult]:
        return [s for s in self.segments if s.label == PROMOTIONAL]

    def clean(self) -> str:
        """The document without its promotional segments (see :func:`remove_spans`)."""
        return remove_spans(self.document, [Span(s.start, s.end) for s in self.promotional])

    def to_dict(self) -> dict[str, Any]:
        return {
            "segments": [s.to_dict() for s in self.segments],
            "label": self.label,
            "promo_share": round(self.promo_share, 6),
            "clean_text": self.clean(),
        }


class _RowCache:
    """Collects the texts of one encoding round and keeps every row, never asking twice.

    Rows are what the head needs of a text (see :mod:`promofilter.context`); ``score`` is
    the head's P(promotional) for the text on its own, which the splitting rules use.
    """

    def __init__(self, head: Head) -> None:
        self._head = head
        self._rows: dict[str, np.ndarray] = {}
        self._scores: dict[str, float] = {}
        self._wanted: dict[str, None] = {}

    def want(self, text: str) -> None:
        if text not in self._rows:
            self._wanted[text] = None

    def take_wanted(self) -> list[str]:
        texts = list(self._wanted)
        self._wanted.clear()
        return texts

    def store(self, texts: list[str], rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.float32).reshape(len(texts), -1)
        scores = self._head.alone(rows)
        for text, row, score in zip(texts, rows, scores, strict=True):
            self._rows[text], self._scores[text] = row, float(score)

    def score(self, text: str) -> float:
        return self._scores[text]

    def rows(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._rows[text] for text in texts])


@dataclass
class _Paragraph:
    document: str
    span: Span
    sentences: list[Span]
    split: int | None = None

    def sentences_span(self, start: int = 0, stop: int | None = None) -> Span:
        chosen = self.sentences[start:stop]
        return Span(chosen[0].start, chosen[-1].end)

    def text(self, start: int = 0, stop: int | None = None) -> str:
        """The text of the whole span (default) or of sentences ``start:stop``."""
        if start == 0 and stop is None:
            return self.span.text(self.document)
        return self.sentences_span(start, stop).text(self.document)


# Yields the texts of one encoding round, is sent their rows, returns the analyses.
AnalysisSteps = Generator[list[str], np.ndarray, list[Analysis]]


def analysis_steps(
    documents: Sequence[str], head: Head, threshold: float, split_confidence: float = 0.0
) -> AnalysisSteps:
    """The analysis of ``documents`` as encoding rounds, without running any model itself.

    Each ``yield`` hands out the texts of one round (never empty, never a text twice) and
    takes back their rows (see :meth:`promofilter.PromoFilter.encode`) in the same order; the
    generator returns one :class:`Analysis` per document. :func:`analyze_documents` drives it
    with a plain function; the HTTP service drives it with its dynamic batcher, so both
    produce the same analyses.
    """
    cache = _RowCache(head)
    split_bar = max(threshold, split_confidence)

    def scoring_round():  # yields only when there is something to encode
        texts = cache.take_wanted()
        if texts:
            cache.store(texts, (yield texts))

    paragraphs: list[list[_Paragraph]] = []
    for index, document in enumerate(documents):
        if not isinstance(document, str):
            raise TypeError(f"documents[{index}] is {type(document).__name__}, expected str")
        found = []
        for span in segment_spans(document):
            paragraph = _Paragraph(document, span, sentence_spans(document, span))
            cache.want(paragraph.text())
            if len(paragraph.sentences) > 1:
                cache.want(paragraph.text(-1))
            found.append(paragraph)
        paragraphs.append(found)
    yield from scoring_round()

    candidates = [
        p
        for found in paragraphs
        for p in found
        if len(p.sentences) > 1 and cache.score(p.text(-1)) >= split_bar
    ]
    for paragraph in candidates:
        for index in range(len(paragraph.sentences) - 1):
            cache.want(paragraph.text(index, index + 1))
    yield from scoring_round()

    for paragraph in candidates:
        sentence_scores = [
            cache.score(paragraph.text(i, i + 1)) for i in range(len(paragraph.sentences))
        ]
        paragraph.split = trailing_split(sentence_scores, split_bar)
        if paragraph.split is not None:
            cache.want(paragraph.text(0, paragraph.split))
            cache.want(paragraph.text(paragraph.split))
    yield from scoring_round()

    results = []
    for document, found in zip(documents, paragraphs, strict=True):
        whole = head.in_document(cache.rows([p.text() for p in found])) if found else []
        parts: list[Span] = []
        for index, paragraph in enumerate(found):
            # inside a promotional run a paragraph is promotional whole, even where its first
            # sentences read neutral on their own ("Die neusten Zahlen sprechen eine klare
            # Sprache: ..."); a trailing call to action is split off after factual text only
            after_factual = index == 0 or whole[index - 1] < threshold
            if paragraph.split is not None and after_factual:
                head_span = paragraph.sentences_span(0, paragraph.split)
                tail_span = paragraph.sentences_span(paragraph.split)
                head_score = cache.score(head_span.text(document))
                if head_score < threshold and split_bar <= cache.score(tail_span.text(document)):
                    parts += [head_span, tail_span]
                    continue
            parts.append(paragraph.span)
        texts = [part.text(document) for part in parts]
        # each paragraph gives one part unless it was split: then the whole-paragraph
        # scores above are already the segments' scores
        split_any = len(parts) != len(found)
        scores = head.in_document(cache.rows(texts)) if split_any else whole
        segments = tuple(
            SegmentResult(part.start, part.end, text, label_of(score, threshold), float(score))
            for part, text, score in zip(parts, texts, scores, strict=True)
        )
        results.append(Analysis(document, segments, threshold))
    return results


def analyze_documents(
    documents: Sequence[str],
    encode: EncodeFunction,
    head: Head,
    threshold: float,
    split_confidence: float = 0.0,
) -> list[Analysis]:
    """Label the segments of each document; see :func:`promofilter.segment.trailing_split`.

    Encoding runs in three batched rounds over all documents, so a multi-sentence paragraph
    costs little more than the paragraph itself unless it ends on a promotional sentence:

    1. every segment (paragraph or stand-alone line) and the last sentence of each segment
       with two or more sentences;
    2. the other sentences of segments whose last sentence is promotional;
    3. head and tail of each candidate split, as whole texts.

    These rounds decide on each text's score on its own. A split is kept when the head scores
    below ``threshold``, the tail at or above both ``threshold`` and ``split_confidence``, and
    the paragraph does not follow a promotional one (scored whole, in context); the segment
    then becomes two. A sentence read alone is easily misjudged, hence the separate bar for
    the tail. Once the segments are settled, each is scored by ``head`` beside its neighbours
    in the document, and its label is that score against ``threshold``.
    """
    steps = analysis_steps(documents, head, threshold, split_confidence)
    try:
        texts = next(steps)
        while True:
            texts = steps.send(encode(texts))
    except StopIteration as finished:
        return finished.value


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _line_breaks(whitespace: str) -> int:
    return len(_LINE_BREAK.findall(whitespace))


def remove_spans(document: str, spans: Sequence[Span]) -> str:
    """``document`` without ``spans``; every other non-whitespace character stays as it was.

    Only the whitespace at each seam changes. Removed spans with nothing but whitespace
    between them form one block. Of the whitespace just before and just after a block, the
    part with more line breaks is kept (the left one on a tie), so a removed paragraph leaves
    one paragraph break and a removed trailing sentence leaves none: no blank lines pile up.
    At the start of the document the seam's whitespace goes; at the end, one line break stays
    if the document ended with one.
    """
    if not spans:
        return document
    ordered = sorted(spans, key=lambda s: s.start)
    blocks: list[list[int]] = []
    for span in ordered:
        if blocks and not document[blocks[-1][1] : span.start].strip():
            blocks[-1][1] = max(blocks[-1][1], span.end)
        else:
            blocks.append([span.start, span.end])

    pieces: list[str] = []
    position = 0
    kept_any = False
    for start, end in blocks:
        kept = document[position:start]
        left = kept[len(kept.rstrip()) :]
        pieces.append(kept[: len(kept) - len(left)])
        kept_any = kept_any or bool(kept.strip())
        following = document[end:]
        right = following[: len(following) - len(following.lstrip())]
        position = end + len(right)
        if not kept_any:
            continue  # nothing kept before the seam yet: no leading whitespace
        if position >= len(document):
            last = _LINE_BREAK.findall(right)
            pieces.append(last[-1] if last else "")
        else:
            pieces.append(right if _line_breaks(right) > _line_breaks(left) else left)
    pieces.append(document[position:])
    return "".join(pieces)
