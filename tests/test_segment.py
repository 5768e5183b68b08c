import pytest
from hypothesis import given
from hypothesis import strategies as st
from promofilter.segment import (
    Span,
    join_segments,
    segment_spans,
    sentence_spans,
    trailing_split,
)


def test_spans_index_the_original_string_exactly():
    document = "  Titel  \r\nErster Absatz.\n\n\n   Zweiter Absatz mit Text.\t\nHier weiterlesen..."
    spans = segment_spans(document)
    assert [s.text(document) for s in spans] == [
        "Titel",
        "Erster Absatz.",
        "Zweiter Absatz mit Text.",
        "Hier weiterlesen...",
    ]
    assert all(document[s.start : s.end] == s.text(document) for s in spans)


def test_blank_and_empty_documents_have_no_segments():
    assert segment_spans("") == []
    assert segment_spans(" \n\t\n  ") == []


def test_join_segments_round_trips_through_the_segmenter():
    texts = ["Überschrift", "Ein Absatz, der länger ist.", "Anzeige"]
    document, spans = join_segments(texts)
    assert document == "Überschrift\n\nEin Absatz, der länger ist.\n\nAnzeige"
    assert [s.text(document) for s in spans] == texts
    assert segment_spans(document) == spans


def sentences(text: str) -> list[str]:
    return [span.text(text) for span in sentence_spans(text)]


@pytest.mark.parametrize(
    "text",
    [
        "Die Kosten steigen z. B. bei Strom um ca. 12 Prozent.",
        "Der Konzern investiert u. a. in Cloud-Dienste, d. h. in Rechenzentren.",
        "Laut Dr. Müller und Prof. Schmidt bleibt die Lage stabil.",
        "Die neue Analyse vom 14. September liefert die Antwort.",
        "Das Gerät kostet 1.299,99 Euro und ist ab 1. Oktober erhältlich.",
        "In der 52. Minute fiel das 3:2 durch einen Elfmeter.",
        "Der Umsatz lag bei 5 Mio. Euro, bzw. rund 4 Mrd. Yen.",
        "Die Firma z.B. aus Köln, die XY AG & Co. KG, meldet Verluste.",
        "Jetzt lesen... und mehr erfahren.",
        "1. Der Tracker ist gut.",
    ],
)
def test_abbreviations_dates_numbers_and_ordinals_do_not_end_a_sentence(text):
    assert sentences(text) == [text]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Der DAX schloss im Plus. Hier weiterlesen...",
            ["Der DAX schloss im Plus.", "Hier weiterlesen..."],
        ),
        (
            "Kaufen oder verkaufen?! Die Antwort gibt es hier!",
            ["Kaufen oder verkaufen?!", "Die Antwort gibt es hier!"],
        ),
        (
            "„Wir sind zufrieden.“ Das sagte der Chef. Warum?",
            ["„Wir sind zufrieden.“", "Das sagte der Chef.", "Warum?"],
        ),
        (
            "Das wärmste Jahr war 2024. Im Vorjahr war es kühler.",
            ["Das wärmste Jahr war 2024.", "Im Vorjahr war es kühler."],
        ),
        (
            "Das KGV liegt bei rund 40. Das ist viel. 2025 wird es sinken.",
            ["Das KGV liegt bei rund 40.", "Das ist viel.", "2025 wird es sinken."],
        ),
        ("Gründe: 1. Der Preis. 2. Die Lage.", ["Gründe: 1. Der Preis.", "2. Die Lage."]),
        ("JETZT KAUFEN!!! 🚀 Nur heute…  Danke", ["JETZT KAUFEN!!!", "🚀 Nur heute…", "Danke"]),
    ],
)
def test_sentence_boundaries(text, expected):
    assert sentences(text) == expected


def test_sentence_spans_index_the_document_within_a_segment():
    document = "Titel\n\n  Erster Satz. Zweiter Satz!  \nHier weiterlesen..."
    paragraph = segment_spans(document)[1]
    spans = sentence_spans(document, paragraph)
    assert [s.text(document) for s in spans] == ["Erster Satz.", "Zweiter Satz!"]
    assert spans[0].start == paragraph.start and spans[-1].end == paragraph.end
    assert sentence_spans(document, Span(0, 0)) == []


@given(st.text(alphabet=st.sampled_from("ab AB.!?…:1 „“\u00a0z"), max_size=60))
def test_sentences_cover_every_character_of_their_span_in_order(text):
    spans = sentence_spans(text)
    position = 0
    for span in spans:
        piece = span.text(text)
        assert piece and piece == piece.strip()
        assert not text[position : span.start].strip()  # only whitespace between sentences
        position = span.end
    assert not text[position:].strip()


@given(st.lists(st.text(alphabet=st.sampled_from("ab \t\r\n."), max_size=12), max_size=8))
def test_segment_spans_are_exactly_the_stripped_non_blank_lines(lines):
    document = "".join(lines)
    expected = [line.strip() for line in document.splitlines() if line.strip()]
    # str.splitlines also splits at \v, \f, \x1c...; the alphabet has only \r and \n
    assert [s.text(document) for s in segment_spans(document)] == expected


F, P = 0.1, 0.9


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([F, P], 1),
        ([F, F, P], 2),
        ([F, F, P, P], 2),
        ([F, 0.5], 1),  # at the threshold counts as promotional
        ([F], None),  # one sentence: nothing to split
        ([P], None),
        ([F, F], None),  # no promotional tail
        ([P, P], None),  # no factual head: the paragraph is promotional whole
        ([P, F], None),  # a leading call to action is not split off
        ([P, F, P], None),  # a promotional sentence in the head
        ([F, P, F, P], None),
        ([], None),
    ],
)
def test_trailing_split_rule(scores, expected):
    assert trailing_split(scores, threshold=0.5) == expected
