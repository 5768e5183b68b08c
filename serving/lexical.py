"""Character n-grams: what a text spells out, read beside the encoder's embedding.

Calls to action repeat stock spellings ("Gratis-Analyse", "Hier weiterlesen", "jetzt
sichern") that a few-layer encoder blurs. A model may ship ``char_ngrams.json``: a TF-IDF
over word-bounded character n-grams with a few linear read-outs. Each text gets one number
per read-out; those columns follow the embedding in the rows a head reads
(:mod:`promofilter.context`). The shipped model's read-outs are a logistic regression's
weights for the segment itself, its previous and its next segment, so a
:class:`~promofilter.context.ContextHead` over the three columns is that regression.

The features are exactly scikit-learn's ``TfidfVectorizer(analyzer="char_wb",
lowercase=True, sublinear_tf=True, norm="l2")``, computed here with the standard library
and numpy so that the runtime needs no scikit-learn (a test holds the two together).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from promofilter.jsonfiles import packed, read_kind, unpacked

CHAR_NGRAMS_FILE = "char_ngrams.json"
CHAR_NGRAMS_KIND = "char-wb-tfidf"
# words whose n-gram columns are remembered before the cache is emptied: 50,000 words of
# the German word list take about 21 MB there, which bounds what the cache adds to RSS
_WORD_CACHE_SIZE = 50_000


def char_wb_ngrams(text: str, min_n: int, max_n: int) -> list[str]:
    """scikit-learn's ``char_wb`` n-grams of an already lowercased text: each
    whitespace-separated word padded with one space either side; a word shorter than ``n``
    counts once, whole, and ends the longer sizes for that word."""
    ngrams: list[str] = []
    for word in text.split():
        padded = f" {word} "
        length = len(padded)
        for n in range(min_n, max_n + 1):
            if length <= n:
                ngrams.append(padded)
                break
            ngrams.extend(padded[start : start + n] for start in range(length - n + 1))
    return ngrams


class CharNgramReadout:
    """L2-normalised sublinear TF-IDF of character n-grams, times ``readouts``.

    ``readouts`` has one row per n-gram and one column per output: :meth:`rows` gives
    ``tfidf(text) @ readouts`` for each text, shape ``(n, width)``. N-grams not in the
    vocabulary are ignored, as scikit-learn does; a text without any known n-gram gets zeros.
    """

    def __init__(
        self,
        ngrams: Sequence[str],
        idf: np.ndarray,
        readouts: np.ndarray,
        ngram_range: tuple[int, int] = (2, 5),
    ) -> None:
        idf = np.asarray(idf, dtype=np.float64)
        readouts = np.asarray(readouts, dtype=np.float64)
        if readouts.ndim == 1:
            readouts = readouts[:, None]
        if not len(ngrams) == len(idf) == len(readouts):
            raise ValueError(
                f"{len(ngrams)} n-grams, {len(idf)} idf values and {len(readouts)} read-out "
                "rows: they must be equally many"
            )
        min_n, max_n = (int(n) for n in ngram_range)
        if not 1 <= min_n <= max_n:
            raise ValueError(
                f"ngram_range must be (min, max) with 1 <= min <= max, got {ngram_range}"
            )
        self.index = {ngram: position for position, ngram in enumerate(ngrams)}
        if len(self.index) != len(ngrams):
            raise ValueError("the n-gram list repeats an entry")
        self.ngrams = list(ngrams)
        self.idf = idf
        self.readouts = readouts
        self.ngram_range = (min_n, max_n)
        self._word_cache: dict[str, tuple[int, ...]] = {}

    @property
    def width(self) -> int:
        """Columns per text: one per read-out."""
        return self.readouts.shape[1]

    def _word_columns(self, word: str) -> tuple[int, ...]:
        """The vocabulary columns of one lowercased word's n-grams (with repeats), cached:
        a text's words mostly recur, and looking n-grams up is what costs."""
        columns = self._word_cache.get(word)
        if columns is None:
            lookup = self.index.get
            found = (lookup(g) for g in char_wb_ngrams(word, *self.ngram_range))
            columns = tuple(column for column in found if column is not None)
            if len(self._word_cache) >= _WORD_CACHE_SIZE:
                self._word_cache.clear()
            self._word_cache[word] = columns
        return columns

    def rows(self, texts: Sequence[str]) -> np.ndarray:
        """``tfidf(text) @ readouts`` per text, float32, shape ``(len(texts), width)``."""
        owners: list[int] = []
        columns: list[int] = []
        for owner, text in enumerate(texts):
            before = len(columns)
            for word in text.lower().split():
                columns.extend(self._word_columns(word))
            owners.extend([owner] * (len(columns) - before))
        result = np.zeros((len(texts), self.width), dtype=np.float64)
        if columns:
            size = len(self.ngrams)
            # one key per (text, n-gram): its count is the term frequency
            keys, counts = np.unique(
                np.asarray(owners, dtype=np.int64) * size + np.asarray(columns), return_counts=True
            )
            owner_of, where = np.divmod(keys, size)
            weights = (1.0 + np.log(counts)) * self.idf[where]
            norms = np.sqrt(np.bincount(owner_of, weights * weights, minlength=len(texts)))
            weights /= norms[owner_of]
            for output in range(self.width):  # bincount sums per text far faster than add.at
                result[:, output] = np.bincount(
                    owner_of, weights * self.readouts[where, output], minlength=len(texts)
                )
        return result.astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": CHAR_NGRAMS_KIND,
            "ngram_range": list(self.ngram_range),
            "lowercase": True,
            "sublinear_tf": True,
            "ngrams": self.ngrams,
            # packed rather than as JSON numbers, which cost RSS (see promofilter.jsonfiles)
            "idf": packed(self.idf),
            "readouts": packed(self.readouts),  # one row per n-gram
        }

    def save(self, path: str | Path) -> None:
        text = json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":"))
        Path(path).write_text(text + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> CharNgramReadout:
        """Read ``char_ngrams.json``; a ValueError names the file and what is wrong."""
        raw = read_kind(path, CHAR_NGRAMS_KIND, "the character n-gram model")
        for field, expected in (("lowercase", True), ("sublinear_tf", True)):
            if raw.get(field) is not expected:
                raise ValueError(f"{path}: field {field!r} must be {expected}")
        try:
            readouts = raw["readouts"]
            if isinstance(readouts, list):  # written before the packed form: one list per column
                readouts = np.asarray(readouts, dtype=np.float64)
                if readouts.ndim != 2:
                    raise ValueError("field 'readouts' must be a list of equally long lists")
                readouts = readouts.T
            else:
                readouts = unpacked(readouts, "readouts", ndim=2)
            idf = raw["idf"]
            idf = np.asarray(idf, np.float64) if isinstance(idf, list) else unpacked(idf, "idf")
            return cls(raw["ngrams"], idf, readouts, tuple(raw["ngram_range"]))
        except KeyError as error:
            raise ValueError(f"{path}: missing field {error}") from error
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from error
