"""training.agreement: annotators against the gold labels, against each other, and the model
on the segments they all agree on."""

import json

import numpy as np
import pytest

from training.agreement import (
    agreement_report,
    cohen_kappa,
    main,
    majority_vote,
    read_annotation,
    read_annotations,
)
from training.corpus import CorpusError, Document, Segment, write_documents

F, P = "factual", "promotional"


def _document(doc_id: str, labels: list[str]) -> Document:
    segments = tuple(Segment(f"{doc_id} Satz {i}.", label) for i, label in enumerate(labels))
    return Document(id=doc_id, source="test", segments=segments)


@pytest.fixture
def gold(tmp_path):
    documents = [_document("a", [F, F, P, P]), _document("b", [F, P, "ambiguous"])]
    path = tmp_path / "gold.jsonl"
    write_documents(path, documents)
    return path, documents


def _write_labels(directory, name: str, records: list[dict]) -> None:
    lines = [json.dumps(record) for record in records]
    (directory / f"labels-{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_kappa_of_a_worked_example():
    # observed agreement 3/4; chance 0.5 * 0.25 + 0.5 * 0.75 = 0.5; kappa (0.75 - 0.5) / 0.5
    assert cohen_kappa([True, True, False, False], [True, False, False, False]) == 0.5
    assert cohen_kappa([True, False], [True, False]) == 1.0
    assert cohen_kappa([True, False], [False, True]) == -1.0


def test_an_annotation_maps_labels_onto_the_gold_segments(gold, tmp_path):
    _, documents = gold
    _write_labels(tmp_path, "x", [{"id": "b", "labels": [P, P, F]}])
    annotation = read_annotation(tmp_path / "labels-x.jsonl", documents)
    assert annotation.annotator == "x"
    assert annotation.covered.tolist() == [False] * 4 + [True] * 3
    assert annotation.promotional.tolist() == [False] * 4 + [True, True, False]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"id": "zzz", "labels": []}', "labels-x.jsonl:2: id: 'zzz' is not a document"),
        ('{"id": "b", "labels": ["factual"]}', "labels-x.jsonl:2: labels: 1 labels for 3"),
        ('{"id": "b", "labels": ["factual", "spam", "factual"]}', "labels[1]: 'spam' is not"),
        ('{"id": "a", "labels": ["factual", "factual", "factual", "factual"]}', "duplicate id"),
        ("{not json", "labels-x.jsonl:2: not JSON"),
        ('["a"]', "labels-x.jsonl:2: a line must be a JSON object"),
    ],
)
def test_a_bad_label_file_names_file_line_and_field(gold, tmp_path, line, expected):
    _, documents = gold
    first = json.dumps({"id": "a", "labels": [F, F, P, P]})
    (tmp_path / "labels-x.jsonl").write_text(f"{first}\n{line}\n", encoding="utf-8")
    with pytest.raises(CorpusError) as caught:
        read_annotation(tmp_path / "labels-x.jsonl", documents)
    assert expected in str(caught.value)


def test_a_directory_without_label_files_is_refused(gold, tmp_path):
    with pytest.raises(CorpusError, match="no labels-"):
        read_annotations(tmp_path / "empty", gold[1])


def test_majority_vote_leaves_ties_and_unlabelled_segments_undecided(gold, tmp_path):
    _, documents = gold
    _write_labels(tmp_path, "x", [{"id": "a", "labels": [P, F, P, F]}])
    _write_labels(tmp_path, "y", [{"id": "a", "labels": [P, P, P, F]}])
    _write_labels(tmp_path, "z", [{"id": "a", "labels": [F, F, P, P]}])
    annotations = read_annotations(tmp_path, documents)
    majority, decided = majority_vote(annotations)
    assert majority[:4].tolist() == [True, False, True, False]
    assert decided.tolist() == [True] * 4 + [False] * 3
    majority, decided = majority_vote(annotations[:2])  # x and y split on segment 1
    assert decided[:4].tolist() == [True, False, True, True]


def test_report_figures_against_gold_each_other_and_the_model(gold, tmp_path):
    _, documents = gold
    # gold a: F F P P, b: F P (ambiguous)
    _write_labels(
        tmp_path, "x", [{"id": "a", "labels": [F, F, P, P]}, {"id": "b", "labels": [F, P, P]}]
    )
    _write_labels(tmp_path, "y", [{"id": "a", "labels": [F, P, P, F]}])
    _write_labels(tmp_path, "z", [{"id": "a", "labels": [F, P, P, P]}])
    annotations = read_annotations(tmp_path, documents)
    scores = np.array([0.1, 0.9, 0.9, 0.2, 0.1, 0.9, 0.5])
    report = agreement_report(documents, annotations, scores, threshold=0.5)

    assert report["gold_segments"] == 6
    assert report["annotators"]["x"] == {"segments": 6, "f1": 1.0, "kappa": 1.0, "disagreements": 0}
    # y against gold on a: one false alarm, one miss
    assert report["annotators"]["y"]["segments"] == 4
    assert report["annotators"]["y"]["f1"] == 0.5
    assert report["annotators"]["y"]["disagreements"] == 2
    assert report["pairs"]["x/y"]["segments"] == 4  # only document a is shared
    # majority on a: F P P P; it differs from gold on segment 1 only
    assert report["majority"]["disagreements"] == 1
    assert [(d["document"], d["segment"]) for d in report["majority_differs"]] == [("a", 1)]
    assert report["majority_differs"][0]["votes"] == {"x": F, "y": P, "z": P}
    model = report["model"]
    # the model: F P P F F P on the gold segments: one false alarm (a#1), one miss (a#3)
    assert model["all"]["disagreements"] == 2
    # where all annotators agree with gold: a#0, a#2 and b's two segments; a#1, a#3 disputed
    assert model["annotators_unanimous_with_gold"]["segments"] == 4
    assert model["annotators_unanimous_with_gold"]["disagreements"] == 0


def test_main_writes_the_report_and_refuses_a_bad_file(gold, tmp_path, capsys):
    path, _ = gold
    labels = tmp_path / "labels"
    labels.mkdir()
    _write_labels(labels, "x", [{"id": "a", "labels": [F, F, P, F]}])
    assert (
        main(["--gold", str(path), "--labels", str(labels), "--report", str(tmp_path / "r")]) == 0
    )
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["annotators"]["x"]["disagreements"] == 1
    assert report["majority_differs"][0]["segment"] == 3
    assert "| annotator x | gold | 4 |" in (tmp_path / "r" / "report.md").read_text()
    _write_labels(labels, "y", [{"id": "a", "labels": [F]}])
    assert main(["--gold", str(path), "--labels", str(labels)]) == 2
    assert "labels-y.jsonl:1: labels: 1 labels for 4 segments" in capsys.readouterr().err


def test_the_committed_labels_cover_every_test_segment_three_times():
    from training.agreement import DEFAULT_LABELS_DIR
    from training.corpus import read_documents
    from training.evaluate import SPLITS_DIR

    documents = read_documents(SPLITS_DIR / "test.jsonl")
    annotations = read_annotations(DEFAULT_LABELS_DIR, documents)
    assert np.sum([a.covered for a in annotations], axis=0).tolist() == [3] * sum(
        len(d.segments) for d in documents
    )
    report = agreement_report(documents, annotations)
    # what the dataset card says: the majority of three differs from gold on 4 segments
    assert report["majority"]["disagreements"] == 4


def test_the_summary_for_a_model_card_fits_only_the_labelled_split(gold, tmp_path):
    from training.agreement import agreement_summary
    from training.evaluate import SPLITS_DIR

    summary = agreement_summary(SPLITS_DIR / "test.jsonl")
    assert summary["annotators"] == 6 and summary["per_segment"] == 3
    low, high = summary["annotator_f1"]
    assert low <= summary["majority_f1"] <= 1.0 and low <= high
    # labels made for another split, or no labels at all: nothing to report
    assert agreement_summary(SPLITS_DIR / "dev.jsonl") is None
    assert agreement_summary(gold[0], tmp_path / "none") is None
