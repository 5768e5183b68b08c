"""Character n-gram read-outs: scikit-learn parity, file format, fitting, and loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
from promofilter.context import CONTEXT_HEAD_FILE
from promofilter.lexical import CHAR_NGRAMS_FILE, CharNgramReadout, char_wb_ngrams
from promofilter.model import ModelLoadError, PromoFilter

from training.baselines import TfidfBaseline
from training.corpus import Document, Segment, read_documents
from training.lexical import NEIGHBOUR_SCALE, fit_char_ngrams, readout_sum_head

TRICKY = [
    "Jetzt GRATIS-Analyse sichern!",
    "a b  c\td\n\ne",  # one-letter words, runs of whitespace, tabs and newlines
    "Überraschung: Ölpreis fällt – ÄÖÜ ẞ straße",
    "",
    "   ",
    "xy",
    "Hier weiterlesen… 🚀🚀 ",
]


def sklearn_vectorizer(readout: CharNgramReadout | None = None):
    from sklearn.feature_extraction.text import TfidfVectorizer

    params = dict(TfidfBaseline.vectorizer_params)
    if readout is None:
        return TfidfVectorizer(**params)
    params.update(vocabulary={g: i for i, g in enumerate(readout.ngrams)}, min_df=1)
    params.pop("max_features")
    vectorizer = TfidfVectorizer(**params).fit(["x"])
    vectorizer.idf_ = readout.idf.astype(np.float32)
    return vectorizer


@pytest.mark.parametrize("text", TRICKY)
def test_the_ngrams_are_scikit_learns_char_wb_ngrams(text):
    analyzer = sklearn_vectorizer().build_analyzer()
    assert char_wb_ngrams(text.lower(), 2, 5) == analyzer(text)


def random_readout(texts, width=3, seed=0) -> CharNgramReadout:
    vectorizer = sklearn_vectorizer().set_params(min_df=1).fit(texts)
    ngrams = [""] * len(vectorizer.vocabulary_)
    for ngram, position in vectorizer.vocabulary_.items():
        ngrams[position] = ngram
    readouts = np.random.default_rng(seed).normal(size=(len(ngrams), width))
    return CharNgramReadout(ngrams, vectorizer.idf_, readouts)


def test_rows_are_scikit_learns_tfidf_times_the_readouts(tiny_corpus):
    texts = [s.text for d in read_documents(tiny_corpus) for s in d.segments]
    readout = random_readout(texts[::2])  # the other half holds n-grams it has never seen
    expected = sklearn_vectorizer(readout).transform(texts + TRICKY) @ readout.readouts
    for _ in range(2):  # the second pass reads the word cache
        np.testing.assert_allclose(readout.rows(texts + TRICKY), expected, atol=1e-5)


def test_a_text_without_known_ngrams_gets_zeros_and_no_texts_no_rows():
    readout = CharNgramReadout(["ab", "bc"], [1.0, 2.0], [[1.0], [2.0]])
    assert readout.rows(["xyz", ""]).tolist() == [[0.0], [0.0]]
    assert readout.rows([]).shape == (0, 1)


def test_the_file_round_trips_within_float32(tmp_path):
    readout = random_readout(["Jetzt Gratis-Analyse sichern", "Der Kurs stieg um 3 Prozent"])
    readout.save(tmp_path / CHAR_NGRAMS_FILE)
    again = CharNgramReadout.load(tmp_path / CHAR_NGRAMS_FILE)
    assert again.ngrams == readout.ngrams and again.ngram_range == readout.ngram_range
    np.testing.assert_array_equal(again.idf, readout.idf.astype(np.float32))
    np.testing.assert_array_equal(again.readouts, readout.readouts.astype(np.float32))
    texts = ["Gratis sichern", "Kurs stieg"]
    np.testing.assert_allclose(again.rows(texts), readout.rows(texts), atol=1e-6)


def test_a_file_with_the_numbers_written_out_still_loads(tmp_path):
    """Model directories built before the packed form store plain lists: one per column."""
    readout = random_readout(["Jetzt Gratis-Analyse sichern", "Der Kurs stieg um 3 Prozent"])
    raw = readout.to_json()
    raw["idf"] = readout.idf.tolist()
    raw["readouts"] = readout.readouts.T.tolist()
    (tmp_path / CHAR_NGRAMS_FILE).write_text(json.dumps(raw))
    again = CharNgramReadout.load(tmp_path / CHAR_NGRAMS_FILE)
    texts = ["Gratis sichern", "Kurs stieg"]
    np.testing.assert_allclose(again.rows(texts), readout.rows(texts), atol=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda raw: raw.update(kind="tfidf"), "field 'kind'"),
        (lambda raw: raw.pop("idf"), "missing field 'idf'"),
        (lambda raw: raw.update(sublinear_tf=False), "field 'sublinear_tf'"),
        (lambda raw: raw.update(idf=[1.0]), "equally many"),
        (lambda raw: raw.update(ngrams=["ab", "ab"]), "repeats"),
        (lambda raw: raw.update(readouts=[1.0]), "field 'readouts'"),
        (lambda raw: raw["idf"].update(dtype="float64"), "field 'idf' must be"),
        (lambda raw: raw["idf"].update(base64="no base64!"), "field 'idf': 'base64' is not"),
        (lambda raw: raw["idf"].update(shape=[3]), "bytes of data for shape"),
        (lambda raw: raw["readouts"].update(shape=[2]), "'shape' must be 2"),
    ],
)
def test_a_bad_file_is_named_with_what_is_wrong(tmp_path, change, message):
    path = tmp_path / CHAR_NGRAMS_FILE
    raw = CharNgramReadout(["ab", "bc"], [1.0, 2.0], [[1.0], [2.0]]).to_json()
    change(raw)
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=message) as raised:
        CharNgramReadout.load(path)
    assert str(path) in str(raised.value)


def test_the_readout_sum_head_adds_each_neighbours_readout_for_its_position():
    rows = np.random.default_rng(3).normal(size=(4, 3))
    logits = np.full(4, -0.5) + rows[:, 0]
    logits[1:] += rows[:-1, 1]  # the previous segment's "as previous" read-out
    logits[:-1] += rows[1:, 2]  # the next segment's "as next" read-out
    head = readout_sum_head(-0.5)
    np.testing.assert_allclose(head.in_document(rows), 1 / (1 + np.exp(-logits)), rtol=1e-5)
    np.testing.assert_allclose(head.alone(rows), 1 / (1 + np.exp(0.5 - rows[:, 0])), rtol=1e-5)


def document(*segments: tuple[str, str], name: str) -> Document:
    return Document(name, "test", tuple(Segment(text, label) for text, label in segments))


def neighbour_documents() -> list[Document]:
    """A teaser is promotional only before an offer, a follow-up line only after one."""
    documents = []
    for number in range(30):
        offer = ("Gratis-Report sichern!", "promotional")
        documents += [
            document(
                ("Der Kurs stieg.", "factual"),
                (f"Was tun {number}?", "promotional"),
                offer,
                name=f"teaser-{number}",
            ),
            document(
                ("Der Kurs stieg.", "factual"),
                (f"Was tun {number}?", "factual"),
                ("Die Antwort kam am Abend.", "factual"),
                name=f"plain-{number}",
            ),
            document(offer, (f"Mehr dazu {number}", "promotional"), name=f"after-{number}"),
            document(
                ("Der Umsatz fiel.", "factual"),
                (f"Mehr dazu {number}", "factual"),
                ("Unklar.", "ambiguous"),
                name=f"quiet-{number}",
            ),
        ]
    return documents


def test_the_fitted_readouts_are_the_regression_over_a_segment_and_its_neighbours():
    from scipy.sparse import hstack
    from sklearn.linear_model import LogisticRegression

    documents = neighbour_documents()
    readout, head = fit_char_ngrams(documents, c=10.0)
    # the same regression, fitted here on explicitly built features
    vectorizer = sklearn_vectorizer()
    own = [s.text for d in documents for s in d.segments]
    previous = [t for d in documents for t in ["", *[s.text for s in d.segments][:-1]]]
    following = [t for d in documents for t in [*[s.text for s in d.segments][1:], ""]]
    features = hstack(
        [
            vectorizer.fit_transform(own),
            NEIGHBOUR_SCALE * vectorizer.transform(previous),
            NEIGHBOUR_SCALE * vectorizer.transform(following),
        ]
    ).tocsr()
    known = np.array([s.label != "ambiguous" for d in documents for s in d.segments])
    labels = np.array([s.label == "promotional" for d in documents for s in d.segments])
    regression = LogisticRegression(C=10.0, max_iter=5000).fit(features[known], labels[known])
    expected = regression.predict_proba(features)[:, 1]
    ours = np.concatenate(
        [head.in_document(readout.rows([s.text for s in d.segments])) for d in documents]
    )
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    # and it learned what only the neighbours tell
    teaser, plain, after, quiet = (
        head.in_document(readout.rows([s.text for s in d.segments]))[1] for d in documents[:4]
    )
    assert min(teaser, after) > 0.5 > max(plain, quiet)


def test_fitting_needs_both_labels():
    only_factual = [document(("Der Kurs stieg.", "factual"), name="a")]
    with pytest.raises(ValueError, match="promotional and factual"):
        fit_char_ngrams(only_factual)


def test_a_model_with_character_ngrams_adds_their_columns_to_the_rows(lexical_model):
    model = PromoFilter(lexical_model)
    segments = ["Der Kurs stieg.", "Jetzt Gratis-Analyse sichern!"]
    rows = model.encode(segments)
    width = model.embed(segments).shape[1]
    assert rows.shape == (2, width + 3) == (2, model.head.dim)
    np.testing.assert_allclose(rows[:, :width], model.embed(segments))
    np.testing.assert_allclose(rows[:, width:], model.lexical.rows(segments), rtol=1e-6)
    np.testing.assert_allclose(model.predict_proba(segments), model.head.alone(rows))
    assert model.encode([]).shape == (0, model.head.dim)


def test_character_ngrams_without_a_head_to_weigh_them_do_not_load(lexical_model):
    (lexical_model / CONTEXT_HEAD_FILE).unlink()
    with pytest.raises(ModelLoadError, match=f"{CHAR_NGRAMS_FILE} needs a {CONTEXT_HEAD_FILE}"):
        PromoFilter(lexical_model)


def test_a_head_that_does_not_count_the_ngram_columns_does_not_load(lexical_model):
    (lexical_model / CHAR_NGRAMS_FILE).unlink()
    with pytest.raises(ModelLoadError, match="reads rows of width"):
        PromoFilter(lexical_model)


def test_a_changed_or_missing_ngram_file_fails_the_integrity_check(lexical_model):
    from promofilter.model import sha256_of

    config_file = lexical_model / "config.json"
    config = json.loads(config_file.read_text())
    config["char_ngrams_sha256"] = sha256_of(lexical_model / CHAR_NGRAMS_FILE)
    config_file.write_text(json.dumps(config))
    PromoFilter(lexical_model)
    raw = json.loads((lexical_model / CHAR_NGRAMS_FILE).read_text())
    raw["ngrams"][0] += "\u0000changed"
    (lexical_model / CHAR_NGRAMS_FILE).write_text(json.dumps(raw))
    with pytest.raises(ModelLoadError, match="char_ngrams_sha256"):
        PromoFilter(lexical_model)
    PromoFilter(lexical_model, verify=False)
    (lexical_model / CHAR_NGRAMS_FILE).unlink()
    with pytest.raises(ModelLoadError, match="incomplete"):
        PromoFilter(lexical_model)
