"""The context head: arithmetic, file format, and how a model directory loads it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from promofilter.cascade import CASCADE_FILE
from promofilter.context import (
    CONTEXT_HEAD_FILE,
    ContextHead,
    DocumentHead,
    MixtureHead,
    SegmentOnly,
    load_head,
)
from promofilter.lexical import CHAR_NGRAMS_FILE
from promofilter.model import ModelLoadError, PromoFilter


def neighbour_features(rows: np.ndarray, window: int) -> np.ndarray:
    """``[e_i, e_{i-1}, has_{i-1}, e_{i+1}, has_{i+1}, ...]`` for each row of one document,
    written out row by row: the layout a :class:`ContextHead` weighs, to check it against."""
    rows = np.asarray(rows, dtype=np.float64)
    count = len(rows)
    parts = [rows]
    for offset in range(1, window + 1):
        for neighbour in (-offset, offset):
            shifted, present = np.zeros_like(rows), np.zeros((count, 1))
            for i in range(count):
                if 0 <= i + neighbour < count:
                    shifted[i], present[i] = rows[i + neighbour], 1.0
            parts += [shifted, present]
    return np.hstack(parts)


def random_head(dim: int, window: int, seed: int = 0) -> ContextHead:
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=ContextHead.feature_count(dim, window))
    return ContextHead(weights, float(rng.normal()), window)


@pytest.mark.parametrize("window", [1, 2])
@pytest.mark.parametrize("segments", [1, 2, 3, 7])
def test_in_document_is_a_logistic_regression_over_the_neighbour_features(window, segments):
    head = random_head(dim=5, window=window)
    rows = np.random.default_rng(1).normal(size=(segments, 5)).astype(np.float32)
    features = neighbour_features(rows, window)
    expected = 1 / (1 + np.exp(-(features @ head.weights + head.bias)))
    assert features.shape == (segments, ContextHead.feature_count(5, window))
    np.testing.assert_allclose(head.in_document(rows), expected, rtol=1e-5, atol=1e-6)


def test_neighbour_features_hold_each_neighbour_and_whether_it_exists():
    rows = np.array([[1.0], [2.0], [3.0]])
    assert neighbour_features(rows, 1).tolist() == [
        # own, previous, has previous, next, has next
        [1.0, 0.0, 0.0, 2.0, 1.0],
        [2.0, 1.0, 1.0, 3.0, 1.0],
        [3.0, 2.0, 1.0, 0.0, 0.0],
    ]


def test_alone_is_a_document_of_one_segment():
    head = random_head(dim=4, window=1)
    rows = np.random.default_rng(2).normal(size=(6, 4))
    singles = np.concatenate([head.in_document(row[None, :]) for row in rows])
    np.testing.assert_allclose(head.alone(rows), singles, rtol=1e-6)
    # and differs from the same rows read as one document
    assert not np.allclose(head.alone(rows), head.in_document(rows))


def test_a_head_without_context_passes_scores_through():
    scores = np.array([[0.25], [0.75]], dtype=np.float32)
    assert SegmentOnly().alone(scores).tolist() == [0.25, 0.75]
    assert SegmentOnly().in_document(scores).tolist() == [0.25, 0.75]


def test_rows_of_the_wrong_width_are_refused():
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        random_head(dim=4, window=1).in_document(np.zeros((3, 5)))


def test_the_head_survives_a_round_trip_through_json(tmp_path):
    head = random_head(dim=3, window=2)
    head.save(tmp_path / "head.json")
    again = ContextHead.load(tmp_path / "head.json")
    rows = np.random.default_rng(3).normal(size=(5, 3))
    assert (again.window, again.dim) == (2, 3)
    np.testing.assert_array_equal(again.in_document(rows), head.in_document(rows))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "cannot read the context head"),
        ('{"kind": "mlp", "weights": [], "bias": 0, "window": 1}', "field 'kind'"),
        ('{"kind": "neighbour-logistic", "bias": 0, "window": 1}', "missing field 'weights'"),
        (
            '{"kind": "neighbour-logistic", "weights": [1, 2, 3, 4], "bias": 0, "window": 1}',
            "4 weights do not fit window 1",
        ),
        (
            '{"kind": "neighbour-logistic", "weights": [1, 2, 3, 4, 5], "bias": 0, '
            '"window": 1, "dim": 2}',
            "field 'dim' is 2",
        ),
    ],
)
def test_a_bad_head_file_is_named_with_what_is_wrong(tmp_path, content, message):
    path = tmp_path / CONTEXT_HEAD_FILE
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as raised:
        ContextHead.load(path)
    assert str(path) in str(raised.value)


def test_a_mixture_averages_its_members_each_over_its_own_columns(tmp_path):
    first, second = random_head(dim=4, window=1, seed=1), random_head(dim=2, window=2, seed=2)
    mixture = MixtureHead([(0.25, first), (0.75, second)])
    rows = np.random.default_rng(5).normal(size=(5, 6))
    assert mixture.dim == 6
    for score in ("alone", "in_document"):
        expected = 0.25 * getattr(first, score)(rows[:, :4]) + 0.75 * getattr(second, score)(
            rows[:, 4:]
        )
        np.testing.assert_allclose(getattr(mixture, score)(rows), expected, rtol=1e-6)
    mixture.save(tmp_path / CONTEXT_HEAD_FILE)
    again = load_head(tmp_path / CONTEXT_HEAD_FILE)
    assert isinstance(again, MixtureHead)
    np.testing.assert_allclose(again.in_document(rows), mixture.in_document(rows), rtol=1e-6)
    with pytest.raises(ValueError, match=r"rows of shape \(n, 6\)"):
        mixture.alone(rows[:, :4])


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([(0.5, 0), (0.4, 0)], "sum to 1"),
        ([(1.5, 0), (-0.5, 0)], "non-negative"),
        ([], "at least one member"),
    ],
)
def test_a_mixture_needs_weights_that_make_an_average(members, message):
    head = random_head(dim=2, window=1)
    with pytest.raises(ValueError, match=message):
        MixtureHead([(weight, head) for weight, _ in members])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"kind": "mixture"}', "field 'members' must be a list"),
        ('{"kind": "mixture", "members": [{"weight": 1}]}', r"members\[0\]' needs"),
        (
            '{"kind": "mixture", "members": [{"weight": 1, "head": {"kind": "x"}}]}',
            r"members\[0\]': field 'kind'",
        ),
        ('{"kind": "stacked"}', "must be one of"),
    ],
)
def test_a_bad_mixture_file_is_named_with_what_is_wrong(tmp_path, content, message):
    path = tmp_path / CONTEXT_HEAD_FILE
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as raised:
        load_head(path)
    assert str(path) in str(raised.value)


def without_context(model: Path) -> None:
    """Turn a model directory into one of the kind built before the context head."""
    (model / CONTEXT_HEAD_FILE).unlink()
    (model / CHAR_NGRAMS_FILE).unlink(missing_ok=True)
    (model / CASCADE_FILE).unlink(missing_ok=True)
    config = json.loads((model / "config.json").read_text())
    config.pop("char_ngrams_sha256", None)
    config.pop("cascade_sha256", None)
    (model / "config.json").write_text(json.dumps(config))


@pytest.fixture
def model_copy(model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    return copy


def test_the_smoke_model_ships_a_context_head_and_scores_in_context(model_copy):
    model = PromoFilter(model_copy, cascade=False)  # every row an embedding (test_cascade.py)
    assert isinstance(model.head, DocumentHead | MixtureHead)
    segments = ["Der Kurs stieg.", "Jetzt kaufen!", "Hier weiterlesen..."]
    rows = model.encode(segments)
    embeddings = model.embed(segments)
    assert rows.shape == (3, model.head.dim)
    np.testing.assert_allclose(rows[:, : embeddings.shape[1]], embeddings)
    np.testing.assert_allclose(model.predict_proba(segments), model.head.alone(rows))
    np.testing.assert_allclose(
        model.predict_proba_in_context(segments), model.head.in_document(rows)
    )
    analysis = model.analyze("\n\n".join(segments))
    np.testing.assert_allclose(
        [s.score for s in analysis.segments], model.head.in_document(rows), rtol=1e-6
    )


def test_a_changed_head_file_fails_the_integrity_check(model_copy):
    path = model_copy / CONTEXT_HEAD_FILE
    raw = json.loads(path.read_text())
    segment_head = raw["members"][0]["head"] if raw["kind"] == "mixture" else raw
    segment_head["own_bias"] += 1.0  # the smoke build's head reads the whole document
    path.write_text(json.dumps(raw))
    rows = PromoFilter(model_copy, verify=False).encode(["Der Kurs stieg."])
    with pytest.raises(ModelLoadError, match="context_head_sha256"):
        PromoFilter(model_copy)
    changed = PromoFilter(model_copy, verify=False).head
    np.testing.assert_allclose(changed.alone(rows), load_head(path).alone(rows))


def test_a_broken_head_file_is_a_model_load_error(model_copy):
    (model_copy / CONTEXT_HEAD_FILE).write_text("{}")
    with pytest.raises(ModelLoadError, match=CONTEXT_HEAD_FILE):
        PromoFilter(model_copy, verify=False)


def test_a_model_without_a_head_file_scores_segments_alone(model_copy):
    without_context(model_copy)
    model = PromoFilter(model_copy)
    segments = ["Der Kurs stieg.", "Jetzt kaufen!"]
    assert isinstance(model.head, SegmentOnly)
    assert model.encode(segments).shape == (2, 1)
    np.testing.assert_array_equal(
        model.predict_proba_in_context(segments), model.predict_proba(segments)
    )


def test_no_texts_give_empty_results_of_the_right_shape(model_copy):
    model = PromoFilter(model_copy)
    assert model.encode([]).shape == (0, model.head.dim)
    assert model.predict_proba([]).shape == (0,)
    assert model.predict_proba_in_context([]).shape == (0,)
    without_context(model_copy)
    without_head = PromoFilter(model_copy)
    assert without_head.encode([]).shape == (0, 1)
    width = model.embed(["x"]).shape[1]
    assert without_head.embed([]).shape == model.embed([]).shape == (0, width)
    assert without_head.predict_proba([]).shape == (0,)
