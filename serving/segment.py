"""Split a document into the segments that promofilter labels.

A segment is one paragraph or one stand-alone line (a headline, a link line,
a list item), as defined in the labeling guide. Offsets always index the
original string, so callers can cut, highlight or remove segments without
re-searching the text. The training code imports this module too: corpus
documents and runtime documents are segmented by the same rules.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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


# --- sentences -------------------------------------------------------------------------------
# analyze() refines a paragraph into sentences to separate a trailing call to action from the
# factual sentences before it. Splitting too little only keeps a paragraph whole, splitting
# too much puts a wrong seam into a sentence, so every doubtful full stop is *not* a boundary.

# Terminal punctuation, closing quotes or brackets, then whitespace and a character that can
# start a sentence (anything but a lower-case letter).
_BOUNDARY = re.compile(r"([.!?…]+)[\"'“”‘’»«)\]]*(\s+)(?=[^\s])")
_WORD_AFTER = re.compile(r"[„\"'‚«»(\[]*([^\W\d_]+)")
_DOTTED_ABBREVIATION = re.compile(r"^(?:[^\W\d_]{1,2}\.)+[^\W\d_]{1,2}$")  # z.B, u.a, e.V


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Lower-case, without the full stop. Single letters (initials, "z. B.", "u. a.") are caught
# by a rule of their own.
ABBREVIATIONS = _words(
    """
    abb abs abschn abt allg anm apr art aufl aug bd bes betr bsp bspw bzgl bzw ca chr co
    corp dez dgl di dipl do dr dt ebd ehem eigtl einschl engl etc ev evtl exkl feb ff fr frz
    geb gebr gegr gem ges gest ggf ggü hbf hl hr hrn hrsg inc ing inkl insb jan jh jhd jr
    jul jun kap kfm lfd lt ltd max mdb mi min mind mio mo mr mrd mrs ms mwst nov nr okt op
    orig pkt prof rd red sa sek sep sept sog st std stellv str tab tel tsd usf usw vgl vj vs
    wg zb zit zt zzgl zzt
    """
)
MONTHS = _words(
    """
    januar jänner februar feber märz april mai juni juli august september oktober november
    dezember jan feb mär apr jun jul aug sep sept okt nov dez
    """
)
# After a number and a full stop ("am 14. September", "in der 52. Minute") a new sentence is
# assumed only before one of these words; anything else reads as an ordinal.
_SENTENCE_STARTERS = _words(
    """
    der die das den dem des ein eine einer einem einen eines er sie es wir ich ihr man dies
    diese dieser dieses damit dabei dann doch aber auch und oder denn so sonst trotzdem
    dennoch zudem außerdem allerdings selbst nur noch schon im in am an auf aus bei mit nach
    seit von vor zum zur für über unter um wie wo was wer wann warum wenn als ob da dort
    hier jetzt heute nun immerhin insgesamt laut mehr weitere damals zuletzt zuvor
    """
)


def _is_boundary(text: str, match: re.Match[str]) -> bool:
    """Whether the punctuation in ``match`` ends a sentence of ``text``."""
    following = text[match.end()]
    if following.islower():
        return False  # "Jetzt lesen... und mehr", "etc. und"
    if match.group(1) != ".":
        return True  # "!", "?", "?!", "..." and "…" end a sentence
    token_start = match.start()
    while token_start > 0 and not text[token_start - 1].isspace():
        token_start -= 1
    token = text[token_start : match.start()].lstrip("„\"'‚«»([")
    if not token:
        return True
    lowered = token.lower()
    if lowered in ABBREVIATIONS or _DOTTED_ABBREVIATION.match(token):
        return False
    if len(token) == 1 and token.isalpha():
        return False  # an initial or one part of "z. B.", "u. a.", "d. h."
    after = _WORD_AFTER.match(text, match.end())
    next_word = after.group(1).lower() if after else ""
    if token.isdigit():
        preceding = text[:token_start].rstrip()
        if not preceding or preceding[-1] in ".!?…:" or next_word in MONTHS:
            return False  # a list number ("1. Der Tracker") or a date ("am 14. September")
        return len(token) >= 4 or next_word in _SENTENCE_STARTERS  # a year, or an ordinal
    return True


def sentence_spans(document: str, span: Span | None = None) -> list[Span]:
    """The sentences of ``span`` (default: the whole document), as spans of ``document``.

    A sentence ends at ``.``, ``!``, ``?`` or ``…`` (with any closing quote) followed by
    whitespace and a character that is not a lower-case letter. A full stop after a known
    abbreviation ("z. B.", "u. a.", "Dr.", "ca.", "Mio."), after a single letter, inside a
    number ("1.299,99") or after an ordinal ("14. September", "52. Minute") is no boundary.
    Spans exclude surrounding whitespace, like :func:`segment_spans`.
    """
    start, end = (0, len(document)) if span is None else (span.start, span.end)
    text = document[start:end]
    sentences: list[Span] = []
    position = 0
    for match in _BOUNDARY.finditer(text):
        if not _is_boundary(text, match):
            continue
        _add_trimmed(sentences, text, position, match.start(2), start)
        position = match.end()
    _add_trimmed(sentences, text, position, len(text), start)
    return sentences


def _add_trimmed(spans: list[Span], text: str, start: int, end: int, offset: int) -> None:
    piece = text[start:end]
    stripped = piece.strip()
    if stripped:
        left = start + len(piece) - len(piece.lstrip())
        spans.append(Span(offset + left, offset + left + len(stripped)))


def trailing_split(sentence_scores: Sequence[float], threshold: float) -> int | None:
    """Where a paragraph's promotional tail begins, if it has one after a factual head.

    The rule: with the sentences scored one by one, a paragraph of two or more sentences is
    split before sentence ``j`` when every sentence from ``j`` to the end scores at least
    ``threshold`` and every sentence before ``j`` scores below it ("factual, factual,
    promotional, promotional"). Any other pattern returns ``None`` and the paragraph stays
    whole: a leading or interleaved promotional sentence, an all-promotional or all-factual
    paragraph. The caller confirms a split by scoring the head and the tail as whole texts.
    """
    scores = list(sentence_scores)
    j = len(scores)
    while j > 0 and scores[j - 1] >= threshold:
        j -= 1
    if j in (0, len(scores)) or any(score >= threshold for score in scores[:j]):
        return None
    return j
