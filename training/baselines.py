"""The two yardsticks every promofilter model is compared with.

* :class:`KeywordBaseline`: the regular-expression list a moderator would write
  by hand on day one.
* :class:`TfidfBaseline`: character n-gram TF-IDF and logistic regression,
  fitted on the training split and tuned (C and threshold) on dev. It is saved
  as JSON, never pickled.

Both follow scikit-learn's conventions: ``predict_proba(texts)`` returns
P(promotional) per text and ``predict(texts)`` the labels at ``threshold``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from training.corpus import FACTUAL, PROMOTIONAL
from training.metrics import best_f1_threshold

# (pattern, weight): a strong cue alone flags a segment, a weak cue needs company.
# Weights combine as independent evidence: P = 1 - prod(1 - w).
_STRONG, _WEAK = 0.8, 0.4
KEYWORD_PATTERNS: tuple[tuple[str, float], ...] = (
    (r"hier weiterlesen|weiterlesen\s*(\.\.\.|…|»|>)|jetzt weiterlesen", _STRONG),
    (r"den vollständigen artikel|ganzen artikel lesen|zum (vollständigen )?artikel", _STRONG),
    (r"^\W*(anzeige|werbung|sponsored|gesponsert|advertorial)\W*$", _STRONG),
    (r"gratis[- ]?(analyse|report|studie|e-?book|webinar|depot)", _STRONG),
    (
        r"(kostenlos|gratis|unverbindlich)(en)? "
        r"(an(zu)?melden|testen|sichern|herunterladen|downloaden|abonnieren|registrieren)",
        _STRONG,
    ),
    (
        r"jetzt (kostenlos |gratis |unverbindlich )?(anmelden|registrieren|abonnieren|bestellen|"
        r"kaufen|sichern|vergleichen|testen|mitmachen|downloaden|herunterladen|traden|investieren|"
        r"zugreifen|starten|depot|konto|eintragen|buchen|zuschlagen)",
        _STRONG,
    ),
    (r"sichern sie sich|melden sie sich (jetzt|hier|kostenlos)|tragen sie sich", _STRONG),
    (r"depot (er)?öffnen|depot eroeffnen|konto eröffnen|kontoeröffnung", _STRONG),
    (r"kaufen oder verkaufen\s*\?\s*!|kaufen, halten oder verkaufen", _STRONG),
    (r"dringende[rn]? handlungsbedarf|handlungsbedarf für", _STRONG),
    (r"(news)?letter (abonnieren|bestellen)|zum newsletter|newsletter anmelden", _STRONG),
    (
        r"weiterlesen mit plus|mit plus weiterlesen|plus-abo|jetzt abo|abonnent(en|in)? lesen",
        _STRONG,
    ),
    (r"zum (angebot|deal|shop|vergleich|gewinnspiel|download)|mehr erfahren|hier klicken", _STRONG),
    (r"klicken sie|klick(en)? hier|link in (der )?bio", _STRONG),
    (
        r"click here|sign up|subscribe now|download now|learn more|get (the|your) free|act now",
        _STRONG,
    ),
    (r"app (herunterladen|laden|installieren)|im app ?store|bei google play", _STRONG),
    (r"gewinnspiel|gewinnen sie|zu gewinnen|verlosen", _WEAK),
    (r"explodier|verzehnfach|vervielfach|kursrakete|\b\d{3,}\s?%|tenbagger", _WEAK),
    (r"presale|pre-sale|vorverkauf|token-?sale", _WEAK),
    (r"sonderreport|spezialreport|börsenbrief|boersenbrief|trading-?signal", _WEAK),
    (r"nur (noch )?heute|solange (der )?vorrat|letzte chance|nicht verpassen|limitiert", _WEAK),
    (r"rabatt|gutschein|% sparen|bonus|prämie|gratis|kostenlos", _WEAK),
    (r"webinar|masterclass|coaching|online-?kurs", _WEAK),
    (r"lesen sie (auch|mehr)|mehr zum thema", _WEAK),
    (r"telegram|whatsapp-gruppe|discord", _WEAK),
    (r"\?\s*!|!!+", _WEAK),
    # second round: link arrows, shop and subscription wording, English calls
    (r"hier geht'?s (zu|zur|zum)|jetzt (shoppen|lesen|ansehen|entdecken|ausprobieren)", _STRONG),
    (
        r"(report|analyse|studie|ratgeber|e-?book|whitepaper|app) (gratis |kostenlos )?(herunterladen|downloaden|anfordern)",
        _STRONG,
    ),
    (
        r"exklusiv für (abonnent|mitglieder|plus)|probemonat|probeabo|testabo|\bfür (nur )?1 ?(€|euro)",
        _STRONG,
    ),
    (
        r"präsentiert von|sonderveröffentlichung|in kooperation mit|promotion\b|partnerangebot",
        _STRONG,
    ),
    (
        r"free shipping|don'?t miss|grab your|get started|join (now|today|our)|try .{0,20}free|limited (time|offer)",
        _STRONG,
    ),
    (r"[»›>]\s*$|→", _WEAK),
    (
        r"bestellen|shoppen|einloggen|registrier|abonnier|angebot (gilt|endet)|regulären preis",
        _WEAK,
    ),
    (
        r"ihre vorteile|ihr vorteil|auf einen blick|unser(e|en)? (experte|team|redaktion) (zeigt|verrät)",
        _WEAK,
    ),
    # third round: imperatives addressed to the reader, "jetzt ... <verb>", fear of missing out
    (
        r"\bjetzt\b.{0,40}\b(vergleichen|anfordern|sichern|bestellen|abonnieren|herunterladen|testen|buchen|anmelden|registrieren|teilnehmen|mitmachen|wechseln|eröffnen|starten|nutzen)\b",
        _STRONG,
    ),
    (
        r"\b(laden|sichern|melden|testen|starten|abonnieren|aktivieren|entdecken|bestellen|buchen|registrieren|holen) sie\b|\bhol dir\b|\bsichere dir\b|\bmelde dich\b|\blade (dir )?die\b",
        _STRONG,
    ),
    (r"nichts? (mehr )?verpassen|keine \w+ mehr verpassen", _STRONG),
    (
        r"lesen sie (auch|mehr|hier)|^zur? [\w-]*(analyse|anmeldung|seite|report|studie|übersicht)\b",
        _STRONG,
    ),
    (r"\babo\b|abo-|-abo\b|unsere(r|n)? (experten|analyse|app|newsletter|premium)", _WEAK),
)


class KeywordBaseline:
    """Flags a segment when hand-picked promotional phrases occur in it."""

    name = "keyword"

    def __init__(
        self, patterns: Sequence[tuple[str, float]] = KEYWORD_PATTERNS, threshold: float = 0.5
    ) -> None:
        self.patterns = [(re.compile(p, re.IGNORECASE | re.MULTILINE), w) for p, w in patterns]
        self.threshold = threshold

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        scores = np.empty(len(texts), dtype=float)
        for index, text in enumerate(texts):
            keep = 1.0
            for pattern, weight in self.patterns:
                if pattern.search(text):
                    keep *= 1.0 - weight
            scores[index] = 1.0 - keep
        return scores

    def predict(self, texts: Sequence[str]) -> list[str]:
        return _labels(self.predict_proba(texts), self.threshold)


def _labels(scores: np.ndarray, threshold: float) -> list[str]:
    return [PROMOTIONAL if score >= threshold else FACTUAL for score in scores]


class TfidfBaseline:
    """Character n-gram TF-IDF (``char_wb``, 2-5) with logistic regression."""

    name = "tfidf"
    format_name = "promofilter-tfidf-logreg"
    vectorizer_params: ClassVar[dict] = {
        "analyzer": "char_wb",
        "ngram_range": (2, 5),
        "lowercase": True,
        "sublinear_tf": True,
        "min_df": 2,
        "max_features": 150_000,
        "dtype": np.float32,
    }

    def __init__(self, vectorizer, classifier, threshold: float = 0.5, params: dict | None = None):
        self.vectorizer = vectorizer
        self.classifier = classifier
        self.threshold = threshold
        self.params = params or {}

    @classmethod
    def fit(
        cls,
        train_texts: Sequence[str],
        train_labels: Sequence[bool],
        dev_texts: Sequence[str],
        dev_labels: Sequence[bool],
        c_grid: Sequence[float] = (0.3, 1.0, 3.0, 10.0, 30.0),
        seed: int = 13,
    ) -> TfidfBaseline:
        """Fit on train; choose C by dev average precision and the threshold by dev F1."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        from training.metrics import average_precision

        vectorizer = TfidfVectorizer(**cls.vectorizer_params)
        train_matrix = vectorizer.fit_transform(train_texts)
        dev_matrix = vectorizer.transform(dev_texts)
        best = None
        for c in c_grid:
            classifier = LogisticRegression(
                C=c, class_weight="balanced", max_iter=3000, random_state=seed
            )
            classifier.fit(train_matrix, np.asarray(train_labels, dtype=int))
            dev_scores = classifier.predict_proba(dev_matrix)[:, 1]
            quality = average_precision(dev_labels, dev_scores)
            if best is None or quality > best[0]:
                best = (quality, c, classifier, dev_scores)
        dev_ap, c, classifier, dev_scores = best
        threshold, dev_f1 = best_f1_threshold(dev_labels, dev_scores)
        params = {"C": c, "dev_average_precision": dev_ap, "dev_f1": dev_f1}
        return cls(vectorizer, classifier, threshold=threshold, params=params)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.classifier.predict_proba(self.vectorizer.transform(texts))[:, 1]

    def predict(self, texts: Sequence[str]) -> list[str]:
        return _labels(self.predict_proba(texts), self.threshold)

    def save(self, path: str | Path) -> None:
        vocabulary = {term: int(index) for term, index in self.vectorizer.vocabulary_.items()}
        record = {
            "format": self.format_name,
            "vectorizer": {
                key: (list(value) if isinstance(value, tuple) else value)
                for key, value in self.vectorizer_params.items()
                if key != "dtype"
            },
            "vocabulary": vocabulary,
            "idf": self.vectorizer.idf_.tolist(),
            "coef": self.classifier.coef_[0].tolist(),
            "intercept": float(self.classifier.intercept_[0]),
            "threshold": self.threshold,
            "params": self.params,
        }
        Path(path).write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> TfidfBaseline:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        record = json.loads(Path(path).read_text(encoding="utf-8"))
        if record.get("format") != cls.format_name:
            raise ValueError(
                f"{path}: not a TF-IDF baseline file (format {record.get('format')!r}, "
                f"expected {cls.format_name!r})"
            )
        settings = dict(record["vectorizer"])
        settings["ngram_range"] = tuple(settings["ngram_range"])
        vectorizer = TfidfVectorizer(**settings, vocabulary=record["vocabulary"], dtype=np.float32)
        vectorizer.idf_ = np.asarray(record["idf"], dtype=np.float32)
        classifier = LogisticRegression()
        classifier.classes_ = np.array([0, 1])
        classifier.coef_ = np.asarray([record["coef"]], dtype=float)
        classifier.intercept_ = np.asarray([record["intercept"]], dtype=float)
        return cls(vectorizer, classifier, record["threshold"], record.get("params"))
