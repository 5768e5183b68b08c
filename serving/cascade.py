"""The cascade: texts whose character n-grams already decide skip the encoder.

Most segments of a stock-news page are plainly factual or plainly a call to action, and the
character n-gram read-outs (:mod:`promofilter.lexical`) say so at a small fraction of the
encoder's cost. A model may ship ``cascade.json``: a gate over those read-outs, two bounds,
and two stand-in embeddings. A text whose gate score, read alone, falls below
``skip_below`` or above ``skip_above`` is not run through the encoder; its embedding
columns get the stand-in of its side (the mean train embedding of factual or of promotional
segments). The head then scores every row as before, so a skipped segment still weighs its
neighbours and they still weigh it.

The build chooses the widest bounds that do not lower dev F1 (see ``training.build``);
:class:`promofilter.PromoFilter` takes ``cascade=False`` to run the encoder on every text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from promofilter.context import ContextHead
from promofilter.jsonfiles import packed, read_kind, unpacked

CASCADE_FILE = "cascade.json"
CASCADE_KIND = "char-ngram-gate"


class Cascade:
    """Which texts skip the encoder, and what stands in for their embeddings.

    ``gate`` is a :class:`ContextHead` over the n-gram read-out columns, used alone (each
    text on its own: whether to run the encoder is decided before any neighbour is known).
    """

    def __init__(
        self,
        gate: ContextHead,
        skip_below: float,
        skip_above: float,
        factual_embedding: np.ndarray,
        promotional_embedding: np.ndarray,
    ) -> None:
        if not 0.0 <= skip_below < skip_above <= 1.0:
            raise ValueError(
                f"the bounds must satisfy 0 <= skip_below < skip_above <= 1, got "
                f"{skip_below} and {skip_above}"
            )
        stand_ins = [
            np.asarray(e, dtype=np.float32).ravel()
            for e in (factual_embedding, promotional_embedding)
        ]
        if stand_ins[0].shape != stand_ins[1].shape or not stand_ins[0].size:
            raise ValueError(
                f"the stand-in embeddings must be equally long and not empty, got "
                f"{stand_ins[0].size} and {stand_ins[1].size} values"
            )
        self.gate = gate
        self.skip_below = float(skip_below)
        self.skip_above = float(skip_above)
        self.factual_embedding, self.promotional_embedding = stand_ins

    @property
    def embedding_width(self) -> int:
        return self.factual_embedding.size

    def gate_scores(self, lexical_rows: np.ndarray) -> np.ndarray:
        """The gate's P(promotional) per text from its n-gram read-outs alone."""
        return self.gate.alone(lexical_rows)

    def skipped(self, lexical_rows: np.ndarray) -> np.ndarray:
        """A boolean mask of the texts whose encoder run the gate makes unnecessary."""
        scores = self.gate_scores(lexical_rows)
        return (scores < self.skip_below) | (scores > self.skip_above)

    def fill(self, embeddings: np.ndarray, lexical_rows: np.ndarray) -> np.ndarray:
        """``embeddings`` with each skipped text's row replaced by its side's stand-in (a
        copy; rows of skipped texts may hold anything, for example zeros never computed)."""
        scores = self.gate_scores(lexical_rows)
        filled = np.array(embeddings, dtype=np.float32, copy=True)
        filled[scores < self.skip_below] = self.factual_embedding
        filled[scores > self.skip_above] = self.promotional_embedding
        return filled

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": CASCADE_KIND,
            "gate": self.gate.to_json(),
            "skip_below": self.skip_below,
            "skip_above": self.skip_above,
            "factual_embedding": packed(self.factual_embedding),
            "promotional_embedding": packed(self.promotional_embedding),
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json()) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Cascade:
        """Read ``cascade.json``; a ValueError names the file and the field at fault."""
        raw = read_kind(path, CASCADE_KIND, "the cascade")
        try:
            try:
                gate = ContextHead.from_json(raw["gate"])
            except ValueError as error:
                raise ValueError(f"field 'gate': {error}") from error
            bounds = []
            for field in ("skip_below", "skip_above"):
                value = raw[field]
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"field {field!r} must be a number, got {value!r}")
                bounds.append(float(value))
            stand_ins = [
                unpacked(raw[field], field)
                for field in ("factual_embedding", "promotional_embedding")
            ]
            return cls(gate, *bounds, *stand_ins)
        except KeyError as error:
            raise ValueError(f"{path}: missing field {error}") from error
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from error
