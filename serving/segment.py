"""Split a document into the segments that promofilter labels.

A segment is one paragraph or one stand-alone line (a headline, a link line,
a list item), as defined in the labeling guide. Offsets always index the
original string, so callers can cut, highlight or remove segments without
re-searching the text. The training code imports this module too: corpus
documents and runtime documents are segmented by the same rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A segment ends at any line break. Real pages put headlines, teaser lines and
# "Hier weiterlesen..." links on lines of their own, often without blank lines
# between them, so a blank line cannot be the only separator.
_LINE = re.compile(r"[^\r\n]+")


@dataclass(frozen=True)
class Span:
    """A half-open character range ``[start, end)`` of a document."""

    start: int
    end: int

    def text(self, document: str) -> str:
        return document[self.start : self.end]


def segment_spans(document: str) -> list[Span]:
    """Return the segments of ``document`` as spans, in reading order.

    Each non-blank line becomes one span, with surrounding whitespace left
    outside the span.
    """
    spans: list[Span] = []
    for match in _LINE.finditer(document):
        line = match.group()
        stripped = line.strip()
        if not stripped:
            continue
        start = match.start() + (len(line) - len(line.lstrip()))
        spans.append(Span(start, start + len(stripped)))
    return spans


def join_segments(texts: list[str]) -> tuple[str, list[Span]]:
    """Join segment texts into one document, separated by a blank line.

    This is the document layout of the corpus format; the returned spans are
    the positions of the given texts in the joined document.
    """
    parts: list[str] = []
    spans: list[Span] = []
    position = 0
    for index, text in enumerate(texts):
        if index:
            parts.append("\n\n")
            position += 2
        parts.append(text)
        spans.append(Span(position, position + len(text)))
        position += len(text)
    return "".join(parts), spans
