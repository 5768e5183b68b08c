"""Fit the character n-gram read-outs (:mod:`promofilter.lexical`) and their context head.

A logistic regression reads the TF-IDF vector of a segment, and half the vectors of its
previous and next segments (zeros where there is none): ``[x_i, x_{i-1} / 2, x_{i+1} / 2]``.
Its weights split into three read-outs per n-gram, one for each position, so that the
runtime computes three numbers per segment; a :class:`~promofilter.context.ContextHead` that
adds a segment's own read-out to its neighbours' "as previous" and "as next" read-outs is
then that regression, exactly. The vectorizer is the TF-IDF baseline's.

In a sweep over the 3-layer student's fp32 embeddings (F1 on dev / test / hard subset at
the lowest dev threshold reaching precision 0.90): this model alone 0.920 / 0.923 / 0.917,
the embedding head alone 0.938 / 0.912 / 0.908, their equal average 0.947 / 0.934 / 0.941.
The shipped mix (weight 0.6, int8 embeddings, threshold rule of
:func:`training.metrics.threshold_for_precision`): 0.949 / 0.942 / 0.957 as first built,
0.949 / 0.940 / 0.953 after the re-export with eager attention (commit 80007ad).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from promofilter.context import ContextHead
from promofilter.lexical import CharNgramReadout

from training.baselines import TfidfBaseline
from training.context import fit_targets
from training.corpus import Document

# how much a neighbour's n-grams count beside the segment's own
NEIGHBOUR_SCALE = 0.5
# inverse L2 strength; the TF-IDF baseline's dev search picks from the same range
DEFAULT_C = 10.0


def _neighbour_texts(documents: Sequence[Document]) -> tuple[list[str], list[str], list[str]]:
    own, previous, following = [], [], []
    for document in documents:
        texts = [segment.text for segment in document.segments]
        own += texts
        previous += ["", *texts[:-1]]
        following += [*texts[1:], ""]
    return own, previous, following


def fit_char_ngrams(
    documents: Sequence[Document], c: float = DEFAULT_C, seed: int = 13
) -> tuple[CharNgramReadout, ContextHead]:
    """The read-outs and the head that turns them into P(promotional) in context, fitted on
    ``documents``' gold labels; ambiguous segments serve as neighbours only."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    known, target = fit_targets(documents, "character n-grams")
    own, previous, following = _neighbour_texts(documents)
    vectorizer = TfidfVectorizer(**TfidfBaseline.vectorizer_params)
    features = hstack(
        [
            vectorizer.fit_transform(own),
            NEIGHBOUR_SCALE * vectorizer.transform(previous),
            NEIGHBOUR_SCALE * vectorizer.transform(following),
        ]
    ).tocsr()
    regression = LogisticRegression(C=c, max_iter=5000, random_state=seed)
    regression.fit(features[known], target)
    size = len(vectorizer.vocabulary_)
    weights = regression.coef_[0]
    readouts = np.stack(
        [
            weights[:size],
            NEIGHBOUR_SCALE * weights[size : 2 * size],
            NEIGHBOUR_SCALE * weights[2 * size :],
        ],
        axis=1,
    )
    ngrams = [""] * size
    for ngram, position in vectorizer.vocabulary_.items():
        ngrams[position] = ngram
    lower, upper = vectorizer.ngram_range
    lexical = CharNgramReadout(ngrams, vectorizer.idf_, readouts, (lower, upper))
    return lexical, readout_sum_head(float(regression.intercept_[0]))


def readout_sum_head(bias: float) -> ContextHead:
    """The head over ``[own, as previous, as next]`` read-out columns that sums a segment's
    own read-out with its previous neighbour's "as previous" and its next neighbour's "as
    next" read-out: the fitted regression's logit."""
    own, as_previous, as_next = np.eye(3)
    # blocks: own row, then (previous row, its flag), then (next row, its flag)
    weights = np.concatenate([own, as_previous, [0.0], as_next, [0.0]])
    return ContextHead(weights, bias, window=1)
