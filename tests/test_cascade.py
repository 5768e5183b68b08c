"""The cascade: which texts skip the encoder, what stands in for them, its file, its fitting."""

from __future__ import annotations

import json

import numpy as np
import pytest
from promofilter.cascade import CASCADE_FILE, Cascade
from promofilter.context import CONTEXT_HEAD_FILE, ContextHead, MixtureHead
from promofilter.lexical import CHAR_NGRAMS_FILE
from promofilter.model import ModelLoadError, PromoFilter, sha256_of
from test_model_runtime import SessionSpy

from training.cascade import EncodedSplit, choose_cascade, stand_in_embeddings
from training.corpus import Document, Segment

FACTUAL, PROMOTIONAL = np.array([-1.0, 0.0]), np.array([1.0, 2.0])


def own_column_gate(dim: int = 1) -> ContextHead:
    """A gate whose score alone is sigmoid(first column): neighbours and bias weigh nothing."""
    weights = np.zeros(ContextHead.feature_count(dim, 1))
    weights[0] = 1.0
    return ContextHead(weights, 0.0, window=1)


def logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def test_texts_outside_the_bounds_skip_and_take_their_sides_stand_in():
    cascade = Cascade(own_column_gate(), 0.05, 0.95, FACTUAL, PROMOTIONAL)
    lexical = np.array([[logit(0.01)], [logit(0.05)], [logit(0.5)], [logit(0.96)], [logit(0.2)]])
    assert cascade.skipped(lexical).tolist() == [True, False, False, True, False]
    embeddings = np.arange(10, dtype=np.float32).reshape(5, 2)
    filled = cascade.fill(embeddings, lexical)
    np.testing.assert_array_equal(filled[0], FACTUAL)
    np.testing.assert_array_equal(filled[3], PROMOTIONAL)
    np.testing.assert_array_equal(filled[[1, 2, 4]], embeddings[[1, 2, 4]])
    assert embeddings[0, 0] == 0.0  # a copy: the caller's rows stay as they were
    assert filled.dtype == np.float32


@pytest.mark.parametrize(
    "bounds, stand_ins, message",
    [
        ((0.5, 0.5), (FACTUAL, PROMOTIONAL), "skip_below < skip_above"),
        ((-0.1, 0.9), (FACTUAL, PROMOTIONAL), "skip_below < skip_above"),
        ((0.1, 1.1), (FACTUAL, PROMOTIONAL), "skip_below < skip_above"),
        ((0.1, 0.9), (FACTUAL, np.ones(3)), "equally long"),
        ((0.1, 0.9), (np.zeros(0), np.zeros(0)), "not empty"),
    ],
)
def test_bad_bounds_or_stand_ins_are_refused(bounds, stand_ins, message):
    with pytest.raises(ValueError, match=message):
        Cascade(own_column_gate(), *bounds, *stand_ins)


def test_the_file_round_trips_within_float32(tmp_path):
    stand_ins = np.random.default_rng(0).normal(size=(2, 384))
    cascade = Cascade(own_column_gate(3), 0.02, 0.98, *stand_ins)
    cascade.save(tmp_path / CASCADE_FILE)
    loaded = Cascade.load(tmp_path / CASCADE_FILE)
    assert (loaded.skip_below, loaded.skip_above) == (0.02, 0.98)
    np.testing.assert_array_equal(loaded.gate.weights, cascade.gate.weights)
    np.testing.assert_array_equal(loaded.factual_embedding, stand_ins[0].astype(np.float32))
    np.testing.assert_array_equal(loaded.promotional_embedding, stand_ins[1].astype(np.float32))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda raw: raw.update(kind="mixture"), "field 'kind' must be 'char-ngram-gate'"),
        (lambda raw: raw.pop("skip_above"), "missing field 'skip_above'"),
        (lambda raw: raw.update(skip_below="0.1"), "field 'skip_below' must be a number"),
        (lambda raw: raw.update(skip_below=True), "field 'skip_below' must be a number"),
        (lambda raw: raw.update(skip_below=0.99), "skip_below < skip_above"),
        (lambda raw: raw["gate"].update(kind="x"), "field 'gate': field 'kind'"),
        (lambda raw: raw["gate"].update(weights=[1.0]), "field 'gate': 1 weights"),
        (
            lambda raw: raw["factual_embedding"].update(base64="!!"),
            "field 'factual_embedding': 'base64' is not valid",
        ),
        (
            lambda raw: raw["promotional_embedding"].update(shape=[3]),
            "field 'promotional_embedding': 8 bytes of data for shape",
        ),
        (lambda raw: raw.update(promotional_embedding=[1.0, 2.0]), "'promotional_embedding' must"),
    ],
)
def test_a_bad_file_is_named_with_the_field_at_fault(tmp_path, change, message):
    path = tmp_path / CASCADE_FILE
    Cascade(own_column_gate(), 0.1, 0.9, FACTUAL, PROMOTIONAL).save(path)
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=str(path)) as error:
        Cascade.load(path)
    assert message in str(error.value)


def test_a_file_that_is_not_json_is_named(tmp_path):
    path = tmp_path / CASCADE_FILE
    path.write_text("{")
    with pytest.raises(ValueError, match=f"{path}: cannot read the cascade"):
        Cascade.load(path)


# --- in the runtime ----------------------------------------------------------------------


TEXTS = [
    "Der Kurs stieg am Dienstag um zwei Prozent.",
    "Jetzt Gratis-Analyse sichern!",
    "Die Bundesbank meldete weniger Kredite.",
    "Hier weiterlesen...",
    "Kaufen oder verkaufen?",
]


def test_skipped_texts_are_not_encoded_and_get_the_stand_in(cascade_model):
    model = PromoFilter(cascade_model)
    lexical = model.lexical.rows(TEXTS)
    skipped = model.cascade.skipped(lexical)
    assert 0 < skipped.sum() < len(TEXTS), "the bounds should split these texts"
    counter = model.session = SessionSpy(model.session)
    rows = model.encode(TEXTS)
    assert counter.rows == (~skipped).sum()
    width = model.cascade.embedding_width
    exact = PromoFilter(cascade_model, cascade=False).encode(TEXTS)
    np.testing.assert_allclose(rows[~skipped], exact[~skipped], atol=1e-5)
    np.testing.assert_array_equal(rows[:, width:], exact[:, width:])
    gate = model.cascade.gate_scores(lexical)
    for row, score in zip(rows[skipped], gate[skipped], strict=True):
        np.testing.assert_array_equal(row[:width], 1.0 if score > 0.7 else -1.0)
    np.testing.assert_allclose(model.predict_proba(TEXTS), model.head.alone(rows))


def test_without_the_cascade_every_text_is_encoded_as_by_a_model_without_one(cascade_model):
    model = PromoFilter(cascade_model, cascade=False)
    assert model.cascade is None and repr(model).endswith("cascade=False)")
    assert repr(PromoFilter(cascade_model)).endswith("cascade=True)")
    counter = model.session = SessionSpy(model.session)
    rows = model.encode(TEXTS)
    assert counter.rows == len(TEXTS)
    (cascade_model / CASCADE_FILE).unlink()
    np.testing.assert_allclose(rows, PromoFilter(cascade_model).encode(TEXTS), atol=1e-6)


def test_when_every_text_skips_the_encoder_is_not_run(cascade_model):
    model = PromoFilter(cascade_model)
    model.cascade.skip_below = model.cascade.skip_above = 0.5 + 1e-9
    model.cascade.skip_below -= 2e-9
    counter = model.session = SessionSpy(model.session)
    rows = model.encode(TEXTS)
    assert counter.rows == 0 and rows.shape == (len(TEXTS), model.head.dim)
    assert model.encode([]).shape == (0, model.head.dim)


def test_a_changed_or_missing_cascade_fails_the_integrity_check(cascade_model):
    config_file = cascade_model / "config.json"
    config = json.loads(config_file.read_text())
    config["cascade_sha256"] = sha256_of(cascade_model / CASCADE_FILE)
    config_file.write_text(json.dumps(config))
    PromoFilter(cascade_model)
    raw = json.loads((cascade_model / CASCADE_FILE).read_text())
    raw["skip_below"] = 0.01
    (cascade_model / CASCADE_FILE).write_text(json.dumps(raw))
    with pytest.raises(ModelLoadError, match="cascade_sha256"):
        PromoFilter(cascade_model)
    assert PromoFilter(cascade_model, verify=False).cascade.skip_below == 0.01
    (cascade_model / CASCADE_FILE).unlink()
    with pytest.raises(ModelLoadError, match=f"{CASCADE_FILE} not found.*incomplete"):
        PromoFilter(cascade_model)


def test_a_cascade_that_does_not_fit_the_model_does_not_load(cascade_model):
    Cascade(own_column_gate(3), 0.1, 0.9, FACTUAL, PROMOTIONAL).save(cascade_model / CASCADE_FILE)
    with pytest.raises(ModelLoadError, match="stands in embeddings of width 2"):
        PromoFilter(cascade_model)
    assert PromoFilter(cascade_model, cascade=False).cascade is None
    (cascade_model / CHAR_NGRAMS_FILE).unlink()
    (cascade_model / CONTEXT_HEAD_FILE).unlink()
    with pytest.raises(ModelLoadError, match="gates on 3 n-gram column"):
        PromoFilter(cascade_model)


# --- fitting -----------------------------------------------------------------------------


def one_column_head(weight: float) -> ContextHead:
    weights = np.zeros(ContextHead.feature_count(1, 1))
    weights[0] = weight
    return ContextHead(weights, 0.0, window=1)


def encoded_split(cases: list[tuple[float, float, bool]]) -> EncodedSplit:
    """One document per case of (embedding, gate probability, promotional)."""
    return EncodedSplit(
        embedding_rows=[np.array([[embedding]]) for embedding, _, _ in cases],
        lexical_rows=[np.array([[logit(p)]]) for _, p, _ in cases],
        known=np.ones(len(cases), dtype=bool),
        truth=np.array([promotional for _, _, promotional in cases]),
    )


def test_the_bounds_widen_until_dev_f1_drops():
    # half embedding (sharp), half n-grams; a promotional segment whose n-grams say 0.03
    # is caught by its embedding, until a gate wider than 0.03 gives it the factual stand-in
    head = MixtureHead([(0.5, one_column_head(10.0)), (0.5, own_column_gate())])
    dev = encoded_split([(1.0, 0.03, True), (-1.0, 0.003, False), (1.0, 0.998, True)])
    stand_ins = (np.array([-1.0]), np.array([1.0]))
    cascade, figures = choose_cascade(own_column_gate(), stand_ins, head, 0.5, dev)
    assert figures["none"] == {"f1": 1.0, "skipped": 0.0}
    assert cascade is not None and (cascade.skip_below, cascade.skip_above) == (0.02, 0.98)
    assert figures["0.005"] == {"f1": 1.0, "skipped": pytest.approx(2 / 3)}
    assert figures["0.05"]["f1"] < 1.0
    assert "0.1" not in figures  # the widening stopped at the first loss


def test_no_cascade_when_even_the_narrowest_bound_costs_f1():
    head = MixtureHead([(0.5, one_column_head(10.0)), (0.5, own_column_gate())])
    dev = encoded_split([(1.0, 0.004, True), (-1.0, 0.5, False)])
    cascade, figures = choose_cascade(
        own_column_gate(), (np.array([-1.0]), np.array([1.0])), head, 0.5, dev
    )
    assert cascade is None and list(figures) == ["none", "0.005"]


def test_a_tolerance_keeps_a_bound_that_costs_less_than_it():
    head = MixtureHead([(0.5, one_column_head(10.0)), (0.5, own_column_gate())])
    dev = encoded_split([(1.0, 0.004, True), (-1.0, 0.5, False), (1.0, 0.6, True)])
    stand_ins = (np.array([-1.0]), np.array([1.0]))
    strict, figures = choose_cascade(own_column_gate(), stand_ins, head, 0.5, dev)
    cost = figures["none"]["f1"] - figures["0.005"]["f1"]
    assert strict is None and cost > 0
    tolerant, tried = choose_cascade(own_column_gate(), stand_ins, head, 0.5, dev, tolerance=cost)
    assert tolerant is not None
    assert tried[str(tolerant.skip_below)]["f1"] >= figures["none"]["f1"] - cost
    short, _ = choose_cascade(own_column_gate(), stand_ins, head, 0.5, dev, tolerance=cost / 2)
    assert short is None


def test_the_stand_ins_are_the_mean_factual_and_promotional_embeddings():
    documents = [
        Document("a", "test", (Segment("x", "factual"), Segment("y", "promotional"))),
        Document("b", "test", (Segment("z", "ambiguous"), Segment("w", "factual"))),
    ]
    rows = [np.array([[0.0, 2.0], [4.0, 4.0]]), np.array([[9.0, 9.0], [2.0, 0.0]])]
    factual, promotional = stand_in_embeddings(rows, documents)
    np.testing.assert_array_equal(factual, [1.0, 1.0])
    np.testing.assert_array_equal(promotional, [4.0, 4.0])
