"""Evaluation gate for the shipped default model (models/default).

A later change to the model or to the data must not quietly lower quality: the test data is
pinned by sha256, the figures by floors set just below what the shipped model measured
(see its model card), and the seed article must come out exactly right.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import promofilter
import pytest

from training.baseline_reports import SEED_PROMOTIONAL_LINES
from training.corpus import read_documents, sha256_file
from training.evaluate import SPLITS_DIR, evaluate, fit_tfidf

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "default"
TEST_SHA256 = "770ef32676b32c202a57d4fd48b3c0d232b2ef4f2504292954a73c25c4ba2f7e"
HARD_SHA256 = "1fd1fa4a7e6c14ca38438b4f5554bb9f7c4552435751d235af6511ab94861ab0"
# Regression floors, just below what the shipped model measured (its model card): test F1
# 0.953, hard-subset F1 0.953, character F1 0.943. The model before it (test 0.952, hard
# 0.957, character 0.934) had the same floors for test and hard; the character floor rose.
# Earlier floors were 0.955, 0.955 and 0.95, for a model whose threshold a dev split of 93
# documents had chosen (docs/student-choice.md, "A dev split twice as large").
F1_FLOOR_TEST = 0.945
F1_FLOOR_HARD = 0.95
CHAR_F1_FLOOR = 0.935
# The hard subset must stay this far ahead of the TF-IDF baseline fitted on the same train
# split (0.953 vs 0.920). It was 0.04 until the 80 train documents of 2026-12-08 lifted
# TF-IDF there from 0.911 to 0.920 while the model went from 0.957 to 0.953; issue 3 asks
# for 5 points, a target below
MARGIN_FLOOR_OVER_TFIDF_HARD = 0.03
# What a shipped cascade may cost against the encoder run on every segment (a model of
# 2026-12-07 gained: test F1 0.959 -> 0.961; the model before the current one shipped
# none, because its narrowest bound cost dev F1)
CASCADE_COST = 0.005
# The targets of issue 3, not reached yet: strict xfail, so reaching them fails the run
# until the floors above are raised to them.
F1_TARGET_TEST = 0.97
CHAR_F1_TARGET = 0.97
MARGIN_TARGET_OVER_TFIDF_HARD = 0.05
NOT_YET = "issue 3 target, not reached by the shipped model (see its model card)"
MAX_MODEL_MB = 30


@pytest.fixture(scope="module")
def model() -> promofilter.PromoFilter:
    return promofilter.load(MODEL_DIR)


def _reports(model: promofilter.PromoFilter) -> dict[str, dict]:
    return {
        name: evaluate(model, read_documents(SPLITS_DIR / f"{name}.jsonl"))[0]
        for name in ("test", "test-hard")
    }


@pytest.fixture(scope="module")
def reports(model) -> dict[str, dict]:
    return _reports(model)


def test_evaluation_data_is_the_pinned_data() -> None:
    assert sha256_file(SPLITS_DIR / "test.jsonl") == TEST_SHA256
    assert sha256_file(SPLITS_DIR / "test-hard.jsonl") == HARD_SHA256


def test_the_default_model_is_what_load_finds_and_is_small() -> None:
    assert promofilter.model.default_model_path().resolve() == MODEL_DIR.resolve()
    files = sorted(
        p.name for p in MODEL_DIR.iterdir() if p.name not in ("__pycache__", "cascade.json")
    )
    assert files == [
        "README.md",
        "char_ngrams.json",
        "config.json",
        "context_head.json",
        "model.onnx",
        "tokenizer.json",
    ]
    assert sum(p.stat().st_size for p in MODEL_DIR.iterdir()) <= MAX_MODEL_MB * 1024 * 1024


def test_config_records_provenance_of_the_shipped_files() -> None:
    config = json.loads((MODEL_DIR / "config.json").read_text())
    assert config["model_sha256"] == sha256_file(MODEL_DIR / "model.onnx")
    assert config["tokenizer_sha256"] == sha256_file(MODEL_DIR / "tokenizer.json")
    assert config["context_head_sha256"] == sha256_file(MODEL_DIR / "context_head.json")
    assert config["char_ngrams_sha256"] == sha256_file(MODEL_DIR / "char_ngrams.json")
    # the build ships a cascade only where it keeps dev F1
    if (MODEL_DIR / "cascade.json").exists():
        assert config["cascade_sha256"] == sha256_file(MODEL_DIR / "cascade.json")
    else:
        assert "cascade_sha256" not in config
    assert config["training"]["train_split_sha256"] == sha256_file(SPLITS_DIR / "train.jsonl")
    assert config["training"]["documents"] == {
        split: len(read_documents(SPLITS_DIR / f"{split}.jsonl"))
        for split in ("train", "dev", "test")
    }
    assert config["metrics"]["test"]["data_sha256"] == TEST_SHA256
    assert config["base_model"].startswith("intfloat/multilingual-e5-small")
    card = (MODEL_DIR / "README.md").read_text()
    assert card.startswith("---\nlanguage: de\n") and config["model_sha256"] in card


def test_f1_on_the_test_split_stays_above_the_floor(reports) -> None:
    assert reports["test"]["segment"]["f1"] >= F1_FLOOR_TEST
    assert reports["test"]["characters"]["f1"] >= CHAR_F1_FLOOR


def test_hard_subset_stays_above_the_floor(reports) -> None:
    assert reports["test-hard"]["segment"]["f1"] >= F1_FLOOR_HARD


# One test per target: a model that reaches one target and not the other must still fail
# the run, so that the floor of the target it reached is raised.
@pytest.mark.xfail(strict=True, reason=NOT_YET)
def test_target_f1_on_the_test_split(reports) -> None:
    assert reports["test"]["segment"]["f1"] >= F1_TARGET_TEST


@pytest.mark.xfail(strict=True, reason=NOT_YET)
def test_target_character_f1_on_the_test_split(reports) -> None:
    assert reports["test"]["characters"]["f1"] >= CHAR_F1_TARGET


@pytest.fixture(scope="module")
def tfidf_hard_f1() -> float:
    tfidf = fit_tfidf(SPLITS_DIR / "train.jsonl", SPLITS_DIR / "dev.jsonl")
    return evaluate(tfidf, read_documents(SPLITS_DIR / "test-hard.jsonl"))[0]["segment"]["f1"]


def test_hard_subset_stays_ahead_of_tfidf(reports, tfidf_hard_f1) -> None:
    hard = reports["test-hard"]["segment"]["f1"]
    assert hard >= tfidf_hard_f1 + MARGIN_FLOOR_OVER_TFIDF_HARD


@pytest.mark.xfail(strict=True, reason=NOT_YET)
def test_target_margin_over_tfidf_on_the_hard_subset(reports, tfidf_hard_f1) -> None:
    hard = reports["test-hard"]["segment"]["f1"]
    assert hard >= tfidf_hard_f1 + MARGIN_TARGET_OVER_TFIDF_HARD


def test_the_cascade_skips_the_encoder_often_and_costs_next_to_nothing(model, reports):
    if model.cascade is None:
        pytest.skip(
            "the shipped model has no cascade.json: no bound kept dev F1 within the build's "
            "--cascade-f1-tolerance"
        )
    texts = [s.text for d in read_documents(SPLITS_DIR / "test.jsonl") for s in d.segments]
    assert model.cascade.skipped(model.lexical.rows(texts)).mean() >= 0.25
    exact = _reports(promofilter.load(MODEL_DIR, cascade=False))
    for name in ("test", "test-hard"):
        for level in ("segment", "characters"):
            cost = exact[name][level]["f1"] - reports[name][level]["f1"]
            assert cost <= CASCADE_COST, (name, level, cost)


def test_a_score_does_not_depend_on_batch_mates_or_padding(model) -> None:
    texts = [
        segment.text
        for document in read_documents(SPLITS_DIR / "test.jsonl")[:12]
        for segment in document.segments
    ]
    batched = model.predict_proba(texts)  # length-sorted, padded batches of 32
    alone = np.array([model.predict_proba(text)[0] for text in texts])
    assert len(set(map(len, texts))) > 10  # many padding lengths met
    np.testing.assert_allclose(alone, batched, rtol=0, atol=1e-6)


def test_no_factual_line_of_the_seed_article_is_flagged(model, seed_article) -> None:
    text = seed_article.read_text(encoding="utf-8")
    flagged = [s for s in model.analyze(text).segments if s.label == "promotional"]
    assert flagged
    assert {text.count("\n", 0, s.start) + 1 for s in flagged} <= SEED_PROMOTIONAL_LINES


def test_the_seed_article_has_exactly_its_three_promotional_lines_flagged(model, seed_article):
    text = seed_article.read_text(encoding="utf-8")
    analysis = model.analyze(text)
    flagged = [s for s in analysis.segments if s.label == "promotional"]
    lines = text.splitlines(keepends=True)
    whole_lines = {lines[n - 1].strip() for n in SEED_PROMOTIONAL_LINES}
    assert {s.text for s in flagged} == whole_lines
    assert {text.count("\n", 0, s.start) + 1 for s in flagged} == SEED_PROMOTIONAL_LINES
