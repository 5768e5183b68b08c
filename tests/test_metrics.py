import numpy as np
import pytest

from training.metrics import (
    average_precision,
    best_f1_threshold,
    binary_counts,
    character_mask,
    character_scores,
    expected_calibration_error,
    threshold_for_precision,
)

# Five segments, worked out by hand in the comments below.
TRUTH = [True, False, True, True, False]
SCORES = [0.9, 0.8, 0.7, 0.3, 0.1]


def test_precision_recall_f1_at_a_threshold():
    counts = binary_counts(TRUTH, np.array(SCORES) >= 0.5)  # predicted: 1 1 1 0 0
    assert (counts.tp, counts.fp, counts.fn, counts.tn) == (2, 1, 1, 1)
    assert counts.precision == pytest.approx(2 / 3)
    assert counts.recall == pytest.approx(2 / 3)
    assert counts.f1 == pytest.approx(2 / 3)
    assert counts.accuracy == pytest.approx(3 / 5)


def test_average_precision_step_sum():
    # ranks: P@1=1 (R 1/3), P@3=2/3 (R 2/3), P@4=3/4 (R 1) -> 1/3 + 2/9 + 1/4
    assert average_precision(TRUTH, SCORES) == pytest.approx(29 / 36)


def test_average_precision_counts_ties_together():
    assert average_precision([True, False], [0.5, 0.5]) == pytest.approx(0.5)
    assert average_precision([True, False], [0.6, 0.5]) == pytest.approx(1.0)


def test_expected_calibration_error_by_hand():
    # 2 bins: [0, .5): scores .3 .1, positive rate .5, mean .2 -> .3 * 2/5 = .12
    #         [.5, 1]: scores .9 .8 .7, rate 2/3, mean .8  -> 2/15 * 3/5 = .08
    assert expected_calibration_error(TRUTH, SCORES, n_bins=2) == pytest.approx(0.20)
    assert expected_calibration_error([True, False], [1.0, 0.0]) == pytest.approx(0.0)


def test_thresholds_chosen_from_the_curve():
    threshold, f1 = best_f1_threshold(TRUTH, SCORES)
    # at .3 everything above is flagged: P 3/4, R 1 -> F1 6/7, the best
    assert threshold == pytest.approx(0.3) and f1 == pytest.approx(6 / 7)
    assert threshold_for_precision(TRUTH, SCORES, target=1.0) == pytest.approx(0.9)
    assert threshold_for_precision(TRUTH, SCORES, target=0.7) == pytest.approx(0.3)


def test_the_precision_threshold_is_the_best_f1_among_those_reaching_the_target():
    truth = [True, True, False, True, False, False, False, False, True]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    # 0.1 reaches precision 4/9 too, with F1 0.62; 0.6 reaches 3/4 with F1 0.75
    assert threshold_for_precision(truth, scores, target=0.44) == pytest.approx(0.6)
    # only 0.9 and 0.8 reach precision 1; 0.8 has the better recall
    assert threshold_for_precision(truth, scores, target=1.0) == pytest.approx(0.8)
    # nothing reaches 1.0 when the top score is wrong: the best-F1 threshold instead
    assert threshold_for_precision([False, True], [0.9, 0.1], target=1.0) == pytest.approx(0.1)


def test_character_scores_ignore_separators_and_count_factual_loss():
    # "aaaa..bbbb..cc": a promotional, b factual, c factual; '.' separators
    gold_promo = character_mask(14, [(0, 4)])
    gold_factual = character_mask(14, [(6, 10), (12, 14)])
    predicted = character_mask(14, [(0, 4), (4, 6), (12, 14)])
    scores = character_scores(gold_promo, gold_factual, predicted)
    assert (scores.counts.tp, scores.counts.fp, scores.counts.fn) == (4, 2, 0)
    assert scores.counts.f1 == pytest.approx(2 * 4 / (2 * 4 + 2))
    assert scores.factual_removed_share == pytest.approx(2 / 6)
