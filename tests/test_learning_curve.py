"""training.learning_curve: the character n-gram member refitted on shares of the train split."""

import json

import pytest

from training.corpus import read_documents
from training.learning_curve import learning_curve, main


@pytest.fixture(scope="module")
def documents(tiny_corpus):
    return read_documents(tiny_corpus)


def test_one_point_per_share_with_its_document_count(documents):
    curve = learning_curve(documents, documents, documents, fractions=(1.0, 0.5), seeds=2)
    assert [point["fraction"] for point in curve] == [0.5, 1.0]
    assert [point["documents"] for point in curve] == [round(len(documents) / 2), len(documents)]
    assert [point["draws"] for point in curve] == [2, 2]
    for point in curve:
        low, high = point["test_f1_range"]
        assert 0.0 <= low <= point["test_f1"] <= high <= 1.0
    # fitted and scored on the same documents, the full share separates them
    assert curve[-1]["test_f1"] == curve[-1]["dev_f1"] > 0.9


@pytest.mark.parametrize("fractions", [(), (0.0,), (1.5,)])
def test_a_share_outside_zero_to_one_is_refused(documents, fractions):
    with pytest.raises(ValueError, match="fractions must lie in"):
        learning_curve(documents, documents, documents, fractions=fractions)


def test_main_writes_the_report_with_the_data_hashes(tiny_corpus, tmp_path, capsys):
    splits = ["--train", str(tiny_corpus), "--dev", str(tiny_corpus), "--test", str(tiny_corpus)]
    assert main([*splits, "--fractions", "1", "--report", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert [point["fraction"] for point in report["curve"]] == [1.0]
    assert list(report["data_sha256"]) == [
        f"{role} (tiny.jsonl)" for role in ("train", "dev", "test")
    ]
    assert "| training documents |" in (tmp_path / "report.md").read_text()
    assert main([*splits, "--fractions", "2"]) == 2
    assert "fractions must lie in (0, 1]" in capsys.readouterr().err
