from promofilter.segment import join_segments, segment_spans


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
