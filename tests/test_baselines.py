import json
import time

import numpy as np
import pytest

from training.baselines import KeywordBaseline, TfidfBaseline
from training.corpus import read_documents
from training.evaluate import evaluate
from training.evaluate import main as evaluate_main


def segments(path):
    items = [s for d in read_documents(path) for s in d.segments if s.label != "ambiguous"]
    return [s.text for s in items], [s.label == "promotional" for s in items]


def test_keyword_baseline_flags_obvious_calls_only():
    baseline = KeywordBaseline()
    texts = [
        "Hier weiterlesen...",
        "Jetzt kostenlos anmelden und den Report sichern!",
        "Anzeige",
        "Die Bundesbank erwartet für das kommende Jahr ein Wachstum von 0,8 Prozent.",
    ]
    assert baseline.predict(texts) == ["promotional"] * 3 + ["factual"]
    scores = baseline.predict_proba(texts)
    assert scores.shape == (4,) and np.all((scores >= 0) & (scores <= 1))


def test_tfidf_baseline_fits_saves_as_json_and_reloads(tmp_path, tiny_corpus):
    texts, labels = segments(tiny_corpus)
    started = time.perf_counter()
    model = TfidfBaseline.fit(texts, labels, texts, labels, c_grid=(1.0, 10.0))
    assert time.perf_counter() - started < 30
    assert model.params["C"] in (1.0, 10.0)
    path = tmp_path / "tfidf.json"
    model.save(path)
    assert json.loads(path.read_text())["format"] == "promofilter-tfidf-logreg"
    reloaded = TfidfBaseline.load(path)
    np.testing.assert_allclose(reloaded.predict_proba(texts), model.predict_proba(texts), atol=1e-6)
    assert reloaded.threshold == model.threshold
    assert reloaded.predict(texts) == model.predict(texts)
    # fitted and tuned on the same few texts, it must at least separate them
    scores = model.predict_proba(texts)
    promotional = np.array(labels)
    assert scores[promotional].min() > scores[~promotional].max()


def test_tfidf_load_rejects_other_json(tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="not a TF-IDF baseline file"):
        TfidfBaseline.load(path)


class TableScorer:
    """Scores looked up by text: makes the expected figures computable by hand."""

    name = "table"
    threshold = 0.5

    def __init__(self, table):
        self.table = table

    def predict_proba(self, texts):
        return np.array([self.table.get(t, 0.0) for t in texts])


def test_evaluate_figures_match_a_hand_computed_case(tiny_corpus):
    documents = read_documents(tiny_corpus)[:2]  # fx-001 (2 promo at the end), fx-002 (none)
    first = documents[0]
    table = {
        first.segments[3].text: 0.9,  # promotional, caught
        first.segments[4].text: 0.2,  # promotional "Hier weiterlesen...", missed
        first.segments[2].text: 0.7,  # factual, wrongly flagged
    }
    report, _ = evaluate(TableScorer(table), documents)
    segment = report["segment"]
    assert segment["confusion"] == {"tp": 1, "fp": 1, "fn": 1, "tn": 5}
    assert segment["f1"] == pytest.approx(0.5)
    assert report["document"]["accuracy"] == pytest.approx(1.0)
    promo_chars = len(first.segments[3].text) + len(first.segments[4].text)
    tp, fp = len(first.segments[3].text), len(first.segments[2].text)
    factual_chars = sum(len(s.text) for d in documents for s in d.segments if s.label == "factual")
    assert report["characters"]["precision"] == pytest.approx(tp / (tp + fp))
    assert report["characters"]["recall"] == pytest.approx(tp / promo_chars)
    assert report["characters"]["factual_removed_share"] == pytest.approx(fp / factual_chars)
    assert report["breakdown"]["placement"]["none"]["false_positive_rate"] == 0.0
    assert segment["in_context"] is False and report["segment_alone"] is None


def test_a_scorer_with_context_is_evaluated_in_context(tiny_corpus):
    """A segment counts as caught when its document context lifts it over the threshold."""
    documents = read_documents(tiny_corpus)[:1]
    first = documents[0]

    class ContextScorer(TableScorer):
        def predict_proba_in_context(self, segments):
            alone = self.predict_proba(segments)
            # each segment also gets its successor's score: a teaser before an offer
            return np.maximum(alone, np.r_[alone[1:], 0.0])

    table = {first.segments[3].text: 0.9, first.segments[4].text: 0.2}
    report, _ = evaluate(ContextScorer(table), documents)
    assert report["segment"]["in_context"] is True
    # in context segment 2 (factual) inherits 0.9 from segment 3: a false alarm; alone it
    # is not flagged, and segment 4 is missed either way
    assert report["segment"]["confusion"] == {"tp": 1, "fp": 1, "fn": 1, "tn": 2}
    assert report["segment_alone"]["precision"] == pytest.approx(1.0)
    assert report["segment_alone"]["recall"] == pytest.approx(0.5)


def test_ambiguous_segments_are_reported_apart(tiny_corpus):
    report, scored = evaluate(KeywordBaseline(), read_documents(tiny_corpus))
    assert report["ambiguous"]["segments"] == 1
    assert all(item.segment.label != "ambiguous" for item in scored)
    total = sum(len(d.segments) for d in read_documents(tiny_corpus))
    assert report["segment"]["segments"] == total - 1


@pytest.mark.parametrize("model", ["keyword", "tfidf"])
def test_evaluate_cli_writes_json_markdown_and_plots(tmp_path, tiny_corpus, capsys, model):
    report_dir = tmp_path / "report"
    argv = ["--model", model, "--data", str(tiny_corpus), "--report", str(report_dir)]
    if model == "tfidf":
        argv += ["--train", str(tiny_corpus), "--dev", str(tiny_corpus)]
    assert evaluate_main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["model"] == model and 0 <= printed["segment"]["f1"] <= 1
    for name in ("report.json", "report.md", "pr_curve.png", "confusion_matrix.png"):
        assert (report_dir / name).stat().st_size > 0
    markdown = (report_dir / "report.md").read_text()
    assert "worst errors" in markdown and "By style" in markdown


def test_evaluate_cli_names_file_and_line_of_bad_data(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "source": "s", "segments": [{"text": "x", "label": "spam"}]}\n')
    assert evaluate_main(["--model", "keyword", "--data", str(bad)]) == 2
    assert f"{bad}:1: segments[0].label" in capsys.readouterr().err


def test_baseline_reports_cover_both_baselines_on_all_three_datasets(tmp_path, seed_article):
    from training.baseline_reports import main as reports_main

    assert reports_main(["--output", str(tmp_path), "--seed-article", str(seed_article)]) == 0
    index = (tmp_path / "README.md").read_text()
    for model in ("keyword", "tfidf"):
        for data in ("test", "test-hard", "seed"):
            report = json.loads((tmp_path / f"{model}-{data}" / "report.json").read_text())
            assert report["model"] == model and report["segment"]["segments"] > 0
            assert f"({model}-{data}/report.md)" in index
    seed = json.loads((tmp_path / "keyword-seed" / "report.json").read_text())
    assert seed["segment"]["promotional"] == 3 and seed["documents"] == 1
