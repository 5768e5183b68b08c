"""The library API on a real ONNX model: the smoke build's tiny random one.

Its scores carry no meaning, so these tests check shapes, types, thresholds, windows,
sessions and offsets; the labelling rules are tested in test_analyze.py with a stand-in.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import shutil
from pathlib import Path

import numpy as np
import promofilter
import pytest
from promofilter.context import SegmentOnly
from promofilter.model import ModelLoadError, padded_runs, windows

TEXTS = [
    "Die Bundesbank meldete am Dienstag einen Rückgang der Kreditvergabe.",
    "Jetzt kostenlos registrieren und die Gratis-Analyse sichern!",
    "Hier weiterlesen...",
]


@pytest.fixture(scope="session")
def model_dir(smoke_build: Path) -> Path:
    return smoke_build / "model"


@pytest.fixture(scope="session")
def model(model_dir: Path) -> promofilter.PromoFilter:
    return promofilter.load(model_dir)


class SessionSpy:
    """Stands in for a model's ONNX Runtime session: runs the real one, keeps every feed."""

    def __init__(self, session) -> None:
        self.session = session
        self.feeds: list[dict[str, np.ndarray]] = []

    def run(self, names, feed):
        self.feeds.append(feed)
        return self.session.run(names, feed)

    @property
    def rows(self) -> int:
        """Rows fed so far, over all runs."""
        return sum(len(feed["input_ids"]) for feed in self.feeds)


@pytest.fixture
def fresh(model_dir: Path) -> promofilter.PromoFilter:
    """An instance of its own, for tests that change the threshold or batch size."""
    return promofilter.load(model_dir)


def test_predict_proba_returns_one_float32_per_text(model):
    scores = model.predict_proba(TEXTS)
    assert isinstance(scores, np.ndarray) and scores.dtype == np.float32
    assert scores.shape == (3,)
    assert np.all((scores >= 0) & (scores <= 1))
    assert model.predict_proba(tuple(TEXTS)).shape == (3,)
    assert model.predict_proba(t for t in TEXTS).shape == (3,)


def test_one_string_is_a_list_of_one_and_an_empty_list_is_empty(model):
    one = model.predict_proba(TEXTS[1])
    assert one.shape == (1,) and one.dtype == np.float32
    assert one[0] == pytest.approx(model.predict_proba([TEXTS[1]])[0])
    empty = model.predict_proba([])
    assert empty.shape == (0,) and empty.dtype == np.float32
    assert model.predict(TEXTS[0]) in (["promotional"], ["factual"])
    assert model.predict([]) == []


def test_non_strings_are_refused_naming_the_index(model):
    with pytest.raises(TypeError, match=r"texts\[2\] is int"):
        model.predict_proba(["a", "b", 3])
    with pytest.raises(TypeError, match=r"texts\[0\] is NoneType"):
        model.predict([None])


def test_predict_applies_the_threshold_per_call_and_per_instance(fresh, model_dir):
    scores = fresh.predict_proba(TEXTS)
    assert fresh.predict(TEXTS, threshold=0.0) == ["promotional"] * 3
    assert fresh.predict(TEXTS, threshold=1.0) == ["factual"] * 3
    cut = float(np.median(scores))
    expected = ["promotional" if s >= cut else "factual" for s in scores]
    assert fresh.predict(TEXTS, threshold=cut) == expected
    fresh.threshold = cut
    assert fresh.predict(TEXTS) == expected
    assert promofilter.load(model_dir, threshold=cut).predict(TEXTS) == expected
    config = json.loads((model_dir / "config.json").read_text())
    assert promofilter.load(model_dir).threshold == config["threshold"]
    with pytest.raises(ValueError, match="threshold"):
        fresh.threshold = 1.5
    with pytest.raises(ValueError, match="threshold"):
        fresh.predict(TEXTS, threshold=-0.1)


def test_batch_size_order_and_batch_mates_do_not_change_scores(fresh):
    texts = [*TEXTS, "Kurz.", "Ein etwas längerer Satz über die Zinsen. " * 5]
    reference = fresh.predict_proba(texts)
    fresh.batch_size = 1
    one_by_one = fresh.predict_proba(texts)
    fresh.batch_size = 2
    reversed_order = fresh.predict_proba(texts[::-1])[::-1]
    # static int8 scales: a row is computed on its own, padding and batch mates aside
    np.testing.assert_allclose(one_by_one, reference, rtol=0, atol=1e-6)
    np.testing.assert_allclose(reversed_order, reference, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        fresh.batch_size = 0


def _partitions(count: int):
    """Every way to cut ``range(count)`` into consecutive runs, as lists of (start, stop)."""
    for cuts in itertools.product([False, True], repeat=max(0, count - 1)):
        bounds = [0, *(i + 1 for i, cut in enumerate(cuts) if cut), count]
        yield list(itertools.pairwise(bounds))


def _cost(lengths, runs, overhead: int) -> int:
    return sum(overhead + (stop - start) * int(lengths[stop - 1]) for start, stop in runs)


def _allowed(lengths, max_rows: int, max_tokens: int, run: tuple[int, int]) -> bool:
    rows = run[1] - run[0]
    return rows == 1 or (rows <= max_rows and rows * lengths[run[1] - 1] <= max_tokens)


def test_padded_runs_are_the_cheapest_allowed_cut():
    rng = np.random.default_rng(0)
    for _ in range(200):
        lengths = np.sort(rng.integers(1, 60, rng.integers(1, 9)))
        max_rows, max_tokens, overhead = int(rng.integers(1, 5)), int(rng.integers(20, 200)), 16
        runs = padded_runs(lengths, max_rows, max_tokens, overhead)
        allowed = functools.partial(_allowed, lengths, max_rows, max_tokens)
        assert runs == sorted(runs) and runs[0][0] == 0 and runs[-1][1] == len(lengths)
        assert all(allowed(run) for run in runs)
        cheapest = min(
            _cost(lengths, p, overhead) for p in _partitions(len(lengths)) if all(map(allowed, p))
        )
        assert _cost(lengths, runs, overhead) == cheapest


def test_padded_runs_cut_where_lengths_jump_not_every_batch_size_rows():
    lengths = np.array([10] * 12 + [100] * 4)
    assert padded_runs(lengths, max_rows=16, max_tokens=4096, run_overhead_tokens=32) == [
        (0, 12),
        (12, 16),
    ]
    # a call costing more than the padding keeps one run
    assert padded_runs(lengths, 16, 4096, run_overhead_tokens=2000) == [(0, 16)]
    assert padded_runs(np.array([], dtype=np.int64), 16, 4096) == []


def test_batches_respect_the_row_and_token_caps_and_cover_every_text(fresh, monkeypatch):
    texts = [f"Satz {i}. " * (1 + i % 40) for i in range(60)]
    reference = fresh.predict_proba(texts)
    fresh.batch_size, fresh.max_batch_tokens = 4, 64
    spy = SessionSpy(fresh.session)
    monkeypatch.setattr(fresh, "session", spy)
    scores = fresh.predict_proba(texts)
    shapes = [feed["input_ids"].shape for feed in spy.feeds]
    assert all(feed["attention_mask"].shape == feed["input_ids"].shape for feed in spy.feeds)
    assert sum(rows for rows, _ in shapes) == 60  # every text once (none is over 128 tokens)
    assert all(rows <= 4 for rows, _ in shapes)
    assert all(rows * width <= 64 or rows == 1 for rows, width in shapes)
    assert [width for _, width in shapes] == sorted(width for _, width in shapes)
    np.testing.assert_allclose(scores, reference, atol=0.02)
    with pytest.raises(ValueError, match="max_batch_tokens"):
        fresh.max_batch_tokens = 0


def test_instances_share_one_session_per_model_and_thread_count(model, model_dir):
    again = promofilter.load(model_dir, threshold=0.9)
    assert again.session is model.session and again.threshold == 0.9
    assert model.threads == promofilter.model.DEFAULT_THREADS
    assert model.session.get_session_options().intra_op_num_threads == model.threads
    single = promofilter.load(model_dir, threads=1)
    assert single.session is not model.session
    assert single.session.get_session_options().intra_op_num_threads == 1
    with pytest.raises(ValueError, match="threads"):
        promofilter.load(model_dir, threads=0)


@pytest.mark.parametrize(("length", "max_length"), [(5, 8), (8, 8), (9, 8), (40, 8), (41, 9)])
def test_windows_cover_every_token_and_keep_the_special_tokens(length, max_length):
    ids = [100, *range(length - 2), 101]
    chunks = windows(ids, max_length)
    assert all(len(c) <= max_length and c[0] == 100 and c[-1] == 101 for c in chunks)
    covered = {token for chunk in chunks for token in chunk[1:-1]}
    assert covered == set(range(length - 2))
    if length > max_length:
        assert len(chunks) > 1
        # consecutive windows overlap, so a phrase cut at one edge is whole in the next
        assert all(set(a[1:-1]) & set(b[1:-1]) for a, b in itertools.pairwise(chunks))


def test_a_long_text_is_scored_in_windows_never_truncated(model_dir, monkeypatch):
    # without the cascade, which may decide this text from its n-grams alone
    fresh = promofilter.load(model_dir, cascade=False)
    long_text = " ".join(["Der Konzern meldete am Dienstag solide Zahlen."] * 60)
    long_text += " Jetzt die Gratis-Analyse sichern!"
    ids = fresh.tokenizer.encode(long_text).ids
    max_length = fresh.config.max_length
    assert len(ids) > 2 * max_length
    spy = SessionSpy(fresh.session)
    monkeypatch.setattr(fresh, "session", spy)
    score = fresh.predict_proba([long_text])[0]
    fed = [feed["input_ids"] for feed in spy.feeds]
    rows = [row for batch in fed for row in batch]
    assert all(batch.shape[1] <= max_length for batch in fed)
    assert len(rows) == len(windows(ids, max_length))
    # every token of the text, including the call to action at the end, was fed
    assert set(ids) <= {int(token) for row in rows for token in row}
    monkeypatch.undo()
    # the encoder represents the text by one of its windows (its most promotional by the
    # encoder's own logits), so its embedding is that window's, embedded as a text of its own
    # (character n-grams, where a model has them, read the whole text)
    assert 0.0 <= score <= 1.0
    window_embeddings = fresh.embed(
        [fresh.tokenizer.decode(w[1:-1]) for w in windows(ids, max_length)]
    )
    distances = np.abs(window_embeddings - fresh.embed([long_text])[0]).max(axis=1)
    assert distances.min() <= 0.02 * np.abs(window_embeddings).max()


def test_analyze_offsets_index_the_document_and_labels_follow_scores(model, seed_article):
    document = seed_article.read_text(encoding="utf-8")
    for threshold in (None, 0.0, 0.999):
        analysis = model.analyze(document, threshold=threshold)
        cut = model.threshold if threshold is None else threshold
        assert analysis.threshold == cut
        assert len(analysis.segments) >= 18
        for segment in analysis.segments:
            assert document[segment.start : segment.end] == segment.text
            assert segment.label == ("promotional" if segment.score >= cut else "factual")
        starts = [s.start for s in analysis.segments]
        assert starts == sorted(starts)
    assert model.analyze(document, threshold=0.0).promo_share == 1.0
    assert model.clean(document, threshold=0.0) == ""
    assert model.clean(document, threshold=1.0) == document


def test_analyze_and_clean_on_the_model_follow_the_rules(fresh, seed_article):
    keywords = re.compile(r"Gratis|weiterlesen|Kaufen oder verkaufen|Dringend")

    def keyword_scores(texts):
        return np.array([0.9 if keywords.search(t) else 0.1 for t in texts], np.float32)

    # the instance's encoder and head, as analyze uses them: rows that are the scores
    fresh.encode = lambda texts: keyword_scores(texts)[:, None]
    fresh.head = SegmentOnly()
    fresh.split_confidence = 0.0
    document = seed_article.read_text(encoding="utf-8")
    analysis = fresh.analyze(document, threshold=0.5)
    assert analysis.label == "promotional" and 0 < analysis.promo_share < 0.2
    lines = document.splitlines(keepends=True)
    assert fresh.clean(document, threshold=0.5) == "".join(lines[:15]).rstrip("\n")
    mixed = "Der Kurs stieg um 3 Prozent. Hier weiterlesen..."
    assert [s.label for s in fresh.analyze(mixed, threshold=0.5).segments] == [
        "factual",
        "promotional",
    ]
    assert fresh.clean(mixed, threshold=0.5) == "Der Kurs stieg um 3 Prozent."


def test_analyze_takes_one_document_and_analyze_many_a_list(model):
    with pytest.raises(TypeError, match="analyze_many"):
        model.analyze(["a", "b"])
    with pytest.raises(TypeError, match="list of documents"):
        model.analyze_many("one document")
    results = model.analyze_many(["Titel\n\nText.", ""])
    assert [len(r.segments) for r in results] == [2, 0]


def test_the_evaluation_harness_runs_on_the_runtime(model):
    from training.corpus import read_documents
    from training.evaluate import SPLITS_DIR, evaluate

    documents = read_documents(SPLITS_DIR / "test.jsonl")[:5]
    report, scored = evaluate(model, documents)
    assert report["documents"] == 5
    assert 0.0 <= report["characters"]["factual_removed_share"] <= 1.0
    # the smoke model has a context head: segments are scored in their documents, and the
    # report also says what each would score alone
    assert report["segment"]["in_context"] is True
    assert set(report["segment_alone"]) == {"precision", "recall", "f1"}
    first = documents[0]
    in_context = model.predict_proba_in_context([s.text for s in first.segments])
    np.testing.assert_allclose(
        [item.score for item in scored if item.document is first],
        [p for p, s in zip(in_context, first.segments, strict=True) if s.label != "ambiguous"],
        rtol=1e-6,
    )


def test_a_missing_model_directory_or_file_is_a_clear_error(model_dir, tmp_path):
    with pytest.raises(ModelLoadError, match="no such model directory"):
        promofilter.load(tmp_path / "nowhere")
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    (copy / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match=r"tokenizer\.json not found"):
        promofilter.load(copy)


def test_a_damaged_model_is_refused_or_reported(model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    (copy / "model.onnx").write_bytes(b"not an onnx graph")
    with pytest.raises(ModelLoadError, match=r"sha256 .* does not match .* Reinstall"):
        promofilter.load(copy)
    with pytest.raises(ModelLoadError, match=r"onnxruntime .* cannot load it"):
        promofilter.load(copy, verify=False)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("threshold", "high", r"field 'threshold' must be a number between 0 and 1, got 'high'"),
        ("threshold", 1.5, r"field 'threshold' must be a number between 0 and 1, got 1\.5"),
        ("max_length", 2, r"field 'max_length' must be a number at least 3, got 2"),
        ("split_confidence", None, r"field 'split_confidence' .* got None"),
        ("id2label", ["factual", "promotional"], r"id2label must map class indices to labels"),
    ],
)
def test_a_damaged_config_is_a_model_load_error_naming_the_field(
    model_dir, tmp_path, field, value, message
):
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, field: value}))
    with pytest.raises(ModelLoadError, match=rf"config\.json: {message}"):
        promofilter.load(copy)


def test_a_missing_default_model_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setattr(promofilter.model, "default_model_path", lambda: tmp_path / "default")
    with pytest.raises(ModelLoadError, match=r"default model is missing.*Reinstall"):
        promofilter.load()
