"""Document analysis and cleaning, with a keyword stand-in for the model.

The smoke model is random, so the rules are tested with a scorer whose answers are known
(its rows are the scores themselves, read by the head of a model without context);
tests/test_model_runtime.py runs the same code on the ONNX model.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from promofilter.analyze import Analysis, analyze_documents, remove_spans
from promofilter.context import ContextHead, SegmentOnly
from promofilter.segment import Span, segment_spans

PROMO = re.compile(r"Gratis|Hier weiterlesen|Jetzt|Kaufen oder verkaufen|Dringend")


class KeywordScorer:
    """0.9 for a text with a promotional keyword, else 0.1; records every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([0.9 if PROMO.search(t) else 0.1 for t in texts], dtype=np.float32)


def analyze(document: str, scorer=None, threshold: float = 0.5) -> Analysis:
    return analyze_documents([document], scorer or KeywordScorer(), SegmentOnly(), threshold)[0]


def test_segments_are_labelled_with_offsets_into_the_document():
    document = "Überschrift\n\nDer Kurs stieg.\n  Hier weiterlesen...  \n"
    analysis = analyze(document)
    assert [(s.text, s.label) for s in analysis.segments] == [
        ("Überschrift", "factual"),
        ("Der Kurs stieg.", "factual"),
        ("Hier weiterlesen...", "promotional"),
    ]
    for segment in analysis.segments:
        assert document[segment.start : segment.end] == segment.text
        assert segment.score == pytest.approx(0.9 if segment.label == "promotional" else 0.1)
    assert analysis.label == "promotional"
    assert analysis.promo_share == pytest.approx(19 / (11 + 15 + 19))


def test_a_trailing_call_to_action_is_split_off_a_factual_paragraph():
    document = (
        "Der Umsatz stieg um 5 Prozent. Der Gewinn z. B. verdoppelte sich. "
        "Jetzt die Gratis-Analyse sichern! Hier weiterlesen...\nNächste Zeile."
    )
    analysis = analyze(document)
    assert [(s.text, s.label) for s in analysis.segments] == [
        ("Der Umsatz stieg um 5 Prozent. Der Gewinn z. B. verdoppelte sich.", "factual"),
        ("Jetzt die Gratis-Analyse sichern! Hier weiterlesen...", "promotional"),
        ("Nächste Zeile.", "factual"),
    ]
    assert analysis.clean() == (
        "Der Umsatz stieg um 5 Prozent. Der Gewinn z. B. verdoppelte sich.\nNächste Zeile."
    )


@pytest.mark.parametrize(
    "paragraph",
    [
        "Jetzt zugreifen! Der Kurs stieg um 5 Prozent.",  # leading call to action
        "Gratis dabei. Der Kurs stieg. Hier weiterlesen...",  # promotion in the head
        "Jetzt kaufen! Hier weiterlesen...",  # promotional throughout
    ],
)
def test_other_mixtures_stay_one_segment(paragraph):
    analysis = analyze(paragraph)
    assert [(s.text, s.label) for s in analysis.segments] == [(paragraph, "promotional")]


def test_a_split_needs_the_head_and_tail_confirmed_as_whole_texts():
    class HeadTurnsPromotional(KeywordScorer):
        def __call__(self, texts):
            scores = super().__call__(texts)
            scores[[t == "Eins. Zwei." for t in texts]] = 0.8
            return scores

    analysis = analyze("Eins. Zwei. Jetzt kaufen!", HeadTurnsPromotional())
    assert [s.text for s in analysis.segments] == ["Eins. Zwei. Jetzt kaufen!"]


def test_scoring_runs_in_at_most_three_batched_rounds_and_never_twice():
    scorer = KeywordScorer()
    documents = [
        "Titel\n\nEin Satz. Noch ein Satz.\n\nEins. Zwei. Jetzt kaufen!",
        "Titel\n\nFaktisch.",
    ]
    analyze_documents(documents, scorer, SegmentOnly(), 0.5)
    assert len(scorer.calls) == 3
    texts = [t for call in scorer.calls for t in call]
    assert len(texts) == len(set(texts))
    # a paragraph whose last sentence is factual costs one extra text, not one per sentence
    assert "Ein Satz." not in texts and "Noch ein Satz." in texts
    assert scorer.calls[1] == ["Eins.", "Zwei."]
    assert scorer.calls[2] == ["Eins. Zwei."]  # the tail is the last sentence, already scored


# rows are the keyword scores (0.9 or 0.1); logit = 10 * own + 10 * next - 8.5: promotional
# on its own, or factual but followed by something promotional
LEADS_INTO_PROMOTION = ContextHead(np.array([10.0, 0.0, 0.0, 10.0, 0.0]), bias=-8.5)


def test_a_context_head_scores_each_segment_beside_its_neighbours():
    document = "Der Kurs stieg.\n\nAlibaba: was tun?\n\nHier weiterlesen..."
    alone = analyze_documents([document], KeywordScorer(), SegmentOnly(), 0.5)[0]
    in_context = analyze_documents([document], KeywordScorer(), LEADS_INTO_PROMOTION, 0.5)[0]
    assert [s.label for s in alone.segments] == ["factual", "factual", "promotional"]
    assert [s.label for s in in_context.segments] == ["factual", "promotional", "promotional"]
    assert in_context.segments[1].score == pytest.approx(1 / (1 + np.exp(-1.5)), abs=1e-6)
    assert in_context.clean() == "Der Kurs stieg."


def test_a_context_head_sees_the_segments_after_a_split_not_the_paragraphs():
    # the split-off tail is the neighbour of the factual head: "Eins. Zwei." leads into it
    analysis = analyze_documents(
        ["Eins. Zwei. Jetzt kaufen!"], KeywordScorer(), LEADS_INTO_PROMOTION, 0.5
    )[0]
    assert [(s.text, s.label) for s in analysis.segments] == [
        ("Eins. Zwei.", "promotional"),
        ("Jetzt kaufen!", "promotional"),
    ]


def test_a_paragraph_after_a_promotional_one_is_not_split():
    # "Zahlen. Jetzt kaufen!" would be split after factual text; after a teaser it stays whole
    document = "Gratis-Report: was tun?\n\nDie Zahlen sind da. Jetzt kaufen!"
    analysis = analyze(document)
    assert [(s.text, s.label) for s in analysis.segments] == [
        ("Gratis-Report: was tun?", "promotional"),
        ("Die Zahlen sind da. Jetzt kaufen!", "promotional"),
    ]
    after_factual = analyze("Der Kurs stieg.\n\nDie Zahlen sind da. Jetzt kaufen!")
    assert [s.text for s in after_factual.segments][1:] == ["Die Zahlen sind da.", "Jetzt kaufen!"]


def test_split_confidence_is_the_bar_a_trailing_sentence_must_reach():
    document = "Der Umsatz stieg. Jetzt kaufen!"

    def texts(bar: float) -> list[str]:
        analysis = analyze_documents([document], KeywordScorer(), SegmentOnly(), 0.5, bar)[0]
        return [s.text for s in analysis.segments]

    assert texts(0.0) == texts(0.85) == ["Der Umsatz stieg.", "Jetzt kaufen!"]
    assert texts(0.95) == [document]  # the keyword scorer gives the tail 0.9


def test_threshold_decides_labels():
    document = "Der Kurs stieg.\nHier weiterlesen..."
    assert analyze(document, threshold=0.95).label == "factual"
    assert analyze(document, threshold=0.05).promo_share == 1.0


def test_empty_and_blank_documents():
    for document in ("", "  \n\n "):
        analysis = analyze(document)
        assert analysis.segments == ()
        assert analysis.label == "factual" and analysis.promo_share == 0.0
        assert analysis.clean() == document


def test_analyze_rejects_non_strings_naming_the_index():
    with pytest.raises(TypeError, match=r"documents\[1\] is bytes"):
        analyze_documents(["ok", b"bytes"], KeywordScorer(), SegmentOnly(), 0.5)


def test_cleaning_the_seed_article_keeps_the_first_15_lines_exactly(seed_article):
    document = seed_article.read_text(encoding="utf-8")
    analysis = analyze(document)
    lines = document.splitlines(keepends=True)
    flagged = {
        i + 1 for i, line in enumerate(lines) for s in analysis.promotional if s.text in line
    }
    assert flagged == {16, 17, 18}
    assert analysis.clean() == "".join(lines[:15]).rstrip("\n")
    assert analysis.to_dict()["clean_text"] == analysis.clean()


@pytest.mark.parametrize(
    ("document", "removed", "expected"),
    [
        ("A\n\nP\n\nB", ["P"], "A\n\nB"),
        ("A\nP\n\nB", ["P"], "A\n\nB"),  # the wider of the two breaks stays
        ("A\r\n\r\nP\r\n\r\nB\r\n", ["P"], "A\r\n\r\nB\r\n"),
        ("P\n\nA", ["P"], "A"),  # no leading blank line
        ("\n\nP\n\nA", ["P"], "A"),
        ("A\n\nP\n", ["P"], "A\n"),  # the final line break stays
        ("A\n\nP", ["P"], "A"),
        ("A\n\nP1\n\n\n\nP2\n\nB", ["P1", "P2"], "A\n\nB"),  # adjacent removals are one
        ("A. P.\nB", ["P."], "A.\nB"),  # a trailing sentence
        ("A. P.", ["P."], "A."),
        ("P", ["P"], ""),
        ("  A\n\n\n\nB  ", [], "  A\n\n\n\nB  "),  # nothing removed, nothing touched
    ],
)
def test_remove_spans_tidies_only_the_seams(document, removed, expected):
    spans = []
    for text in removed:
        start = document.index(text)
        spans.append(Span(start, start + len(text)))
    assert remove_spans(document, spans) == expected


SEGMENT = st.text(alphabet=st.sampled_from("abcÄß .,!?-"), min_size=1, max_size=15).filter(
    lambda text: text.strip() == text and text
)
SEPARATOR = st.sampled_from(["\n", "\n\n", "\r\n", "\r\n\r\n", " \n ", "\n\n\n", "\t\n"])


@given(
    st.lists(st.tuples(SEGMENT, st.booleans()), min_size=1, max_size=8),
    st.lists(SEPARATOR, min_size=8, max_size=8),
    st.sampled_from(["", "\n", "  "]),
    st.sampled_from(["", "\n", "\n\n"]),
)
def test_clean_keeps_every_factual_segment_byte_identical_and_in_order(
    segments, separators, lead, trail
):
    document = lead
    for index, (text, _) in enumerate(segments):
        document += (separators[index] if index else "") + text
    document += trail
    spans = segment_spans(document)
    assert [s.text(document) for s in spans] == [text for text, _ in segments]
    removed = [span for span, (_, promo) in zip(spans, segments, strict=True) if promo]
    cleaned = remove_spans(document, removed)

    factual = [text for text, promo in segments if not promo]
    position = 0
    for text in factual:
        found = cleaned.find(text, position)
        assert found >= 0, (text, cleaned)
        assert not cleaned[position:found].strip()  # nothing but whitespace in between
        position = found + len(text)
    assert not cleaned[position:].strip()
    # the whitespace left is the original whitespace, never more line breaks than it had
    longest = max((len(m) for m in re.findall(r"(?:\r?\n)+", document)), default=0)
    assert all(len(m) <= longest for m in re.findall(r"(?:\r?\n)+", cleaned))
    if not factual:
        assert cleaned == ""
    elif segments[0][1]:
        assert cleaned.startswith(factual[0])  # removal created no leading whitespace
    else:
        assert cleaned.startswith(lead + factual[0])
    if factual and segments[-1][1]:
        assert cleaned.rstrip("\r\n").endswith(factual[-1])
        assert cleaned.count("\n", len(cleaned.rstrip("\r\n"))) <= 1
