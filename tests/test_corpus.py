import json
from pathlib import Path

import pytest

from training.corpus import (
    CorpusError,
    document_from_text,
    parse_line_ranges,
    read_documents,
)
from training.corpus import (
    main as corpus_main,
)

GOOD = {"id": "d1", "source": "test", "segments": [{"text": "Ein Satz.", "label": "factual"}]}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def with_segment(**segment) -> str:
    return json.dumps({**GOOD, "id": "d2", "segments": [GOOD["segments"][0], segment]})


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        ('{"id": "d2", "source": "test", "segments": [', "invalid JSON"),
        (
            with_segment(text="Jetzt kaufen", label="werbung"),
            "segments[1].label: unknown label 'werbung'",
        ),
        (with_segment(text="   ", label="factual"), "segments[1].text: empty text"),
        (json.dumps({"id": "d2", "source": "test"}), "segments: missing field"),
        (json.dumps({"id": "d2", "segments": GOOD["segments"]}), "source: missing field"),
        (with_segment(label="factual"), "segments[1].text: missing field"),
        (with_segment(text=42, label="factual"), "segments[1].text: expected a string"),
        (with_segment(text="Zeile\nzwei", label="factual"), "found a line break"),
        (json.dumps(GOOD), "duplicate id 'd1'"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_malformed_lines_are_reported_with_file_and_line(tmp_path, bad_line, expected):
    path = write_lines(tmp_path / "corpus.jsonl", [json.dumps(GOOD), bad_line])
    with pytest.raises(CorpusError) as caught:
        read_documents(path)
    message = str(caught.value)
    assert f"{path}:2" in message
    assert expected in message


def test_every_problem_is_listed_not_only_the_first(tmp_path):
    bad = json.dumps({"id": "x", "source": "s", "segments": [{"text": "", "label": "?"}]})
    path = write_lines(tmp_path / "c.jsonl", [bad, json.dumps(GOOD), "{oops"])
    with pytest.raises(CorpusError) as caught:
        read_documents(path)
    assert len(caught.value.problems) == 3
    assert f"{path}:1" in str(caught.value) and f"{path}:3" in str(caught.value)


def test_invalid_utf8_and_missing_file_are_clear_errors(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n\xfcber\n")
    with pytest.raises(CorpusError, match="not valid UTF-8"):
        read_documents(path)
    with pytest.raises(CorpusError, match="cannot open"):
        read_documents(tmp_path / "missing.jsonl")


def test_documents_keep_metadata_and_join_to_gold_spans(tiny_corpus):
    documents = read_documents(tiny_corpus)
    assert len(documents) == 8
    first = documents[0]
    text, spans = first.joined()
    assert [s.text(text) for s in spans] == [s.text for s in first.segments]
    assert first.style == "portal"
    assert first.placement == "end"
    assert {d.placement for d in documents} >= {"none", "end", "middle", "whole"}


def test_from_text_labels_the_seed_article_lines(tmp_path, seed_article):
    output = tmp_path / "seed.jsonl"
    assert (
        corpus_main(
            ["from-text", str(seed_article), "--promotional-lines", "16-18", "-o", str(output)]
        )
        == 0
    )
    (document,) = read_documents(output)
    labels = [s.label for s in document.segments]
    assert len(labels) == 18
    assert labels[-3:] == ["promotional"] * 3 and "promotional" not in labels[:-3]
    assert document.segments[-1].text.endswith("Hier weiterlesen...")


def test_line_ranges_and_text_documents():
    assert parse_line_ranges("2, 4-6") == {2, 4, 5, 6}
    with pytest.raises(ValueError, match="bad line range"):
        parse_line_ranges("vier")
    document = document_from_text("Titel\n\nText\nMehr erfahren\n", {4}, "x", "test")
    assert [(s.text, s.label) for s in document.segments] == [
        ("Titel", "factual"),
        ("Text", "factual"),
        ("Mehr erfahren", "promotional"),
    ]


def test_hugging_face_loader_gives_a_classlabel_and_checks_lines(tmp_path, tiny_corpus):
    from training.hf_dataset import load_segments

    dataset = load_segments(tiny_corpus)
    assert dataset.features["label"].names == ["factual", "promotional"]
    documents = read_documents(tiny_corpus)
    expected = [s for d in documents for s in d.segments if s.label != "ambiguous"]
    assert dataset["text"] == [s.text for s in expected]
    assert dataset["label"] == [int(s.label == "promotional") for s in expected]
    with_ambiguous = load_segments(tiny_corpus, include_ambiguous=True)
    assert with_ambiguous.num_rows == dataset.num_rows + 1
    assert -1 in with_ambiguous["label"]

    bad = write_lines(
        tmp_path / "bad.jsonl", [json.dumps(GOOD), with_segment(text="x", label="spam")]
    )
    with pytest.raises(CorpusError, match=rf"{bad}:2: segments\[1\].label"):
        load_segments(bad)
