"""Heads: from what the encoder says about each segment to P(promotional), alone or in context.

A call to action often reads as plain reporting on its own ("Alibaba: Kaufen oder
verkaufen?") and gives itself away only by what stands next to it. So a model may ship a
context head (``context_head.json``): a logistic regression over a segment's pooled embedding
and those of its neighbours within ``window`` segments, each neighbour with a flag saying
whether it exists. The encoder still runs once per segment; the head costs a few dot products.

A text scored on its own is a document of one segment: its neighbours are absent, exactly as
for the first and last segment of a document, which the head saw in training.

A :class:`MixtureHead` averages several such heads, each over its own columns of the rows (the
shipped model: one over the embedding, one over the character n-gram read-outs of
:mod:`promofilter.lexical`).

Models without a context head keep working: their rows are the segment scores themselves.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

CONTEXT_HEAD_FILE = "context_head.json"
CONTEXT_HEAD_KIND = "neighbour-logistic"
MIXTURE_KIND = "mixture"


class Head(Protocol):
    """Turns the encoder's rows (one per segment, ``dim`` wide) into P(promotional)."""

    dim: int

    def alone(self, rows: np.ndarray) -> np.ndarray:
        """Each row as a document of one segment."""
        ...

    def in_document(self, rows: np.ndarray) -> np.ndarray:
        """The rows of one document's segments, in reading order, each beside its neighbours."""
        ...


class SegmentOnly:
    """The head of a model without context: each row already is the segment's score."""

    dim = 1

    def alone(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float32)
        return rows if rows.ndim == 1 else rows[:, 0]

    in_document = alone


class ContextHead:
    """Logistic regression over ``[e_i, e_{i-1}, has_{i-1}, e_{i+1}, has_{i+1}, ...]``.

    ``e_j`` is segment ``j``'s pooled embedding (zeros where there is no such segment) and
    ``has_j`` is 1.0 where there is; the offsets run 1..``window``, previous before next.
    """

    def __init__(self, weights: np.ndarray, bias: float, window: int = 1) -> None:
        weights = np.asarray(weights, dtype=np.float64).ravel()
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        blocks = 1 + 2 * window
        dim, extra = divmod(weights.size - 2 * window, blocks)
        if extra or dim < 1:
            raise ValueError(
                f"{weights.size} weights do not fit window {window}: expected "
                f"{blocks} x dim + {2 * window}"
            )
        self.window = window
        self.dim = dim
        self.weights = weights
        self.bias = float(bias)
        # per block: the dot product's weights (dim each) and, for neighbours, the flag's weight
        self._matrix = np.empty((dim, blocks))
        self._flags = np.zeros(blocks)
        position = 0
        for block in range(blocks):
            self._matrix[:, block] = weights[position : position + dim]
            position += dim
            if block:
                self._flags[block] = weights[position]
                position += 1

    @classmethod
    def feature_count(cls, dim: int, window: int) -> int:
        return (1 + 2 * window) * dim + 2 * window

    def _logits_in_document(self, rows: np.ndarray) -> np.ndarray:
        rows = _rows_of_width(rows, self.dim)
        dots = rows.astype(np.float64) @ self._matrix  # (n, blocks): one product per row and block
        logits = dots[:, 0] + self.bias
        block = 1
        for offset in range(1, self.window + 1):
            for neighbour in (-offset, offset):
                shifted, present = _shift(dots[:, block : block + 1], neighbour)
                logits += shifted[:, 0] + present * self._flags[block]
                block += 1
        return logits

    def in_document(self, rows: np.ndarray) -> np.ndarray:
        return _sigmoid(self._logits_in_document(rows))

    def alone(self, rows: np.ndarray) -> np.ndarray:
        rows = _rows_of_width(rows, self.dim)
        return _sigmoid(rows.astype(np.float64) @ self._matrix[:, 0] + self.bias)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": CONTEXT_HEAD_KIND,
            "window": self.window,
            "dim": self.dim,
            "bias": self.bias,
            "weights": [float(w) for w in self.weights],
        }

    def save(self, path: str | Path) -> None:
        _write_json(path, self.to_json())

    @classmethod
    def from_json(cls, raw: Any) -> ContextHead:
        """A head from its JSON form; a ValueError says which field is wrong."""
        if not isinstance(raw, dict) or raw.get("kind") != CONTEXT_HEAD_KIND:
            raise ValueError(f"field 'kind' must be {CONTEXT_HEAD_KIND!r}")
        try:
            head = cls(np.asarray(raw["weights"], dtype=np.float64), raw["bias"], raw["window"])
        except KeyError as error:
            raise ValueError(f"missing field {error}") from error
        except TypeError as error:
            raise ValueError(str(error)) from error
        if raw.get("dim", head.dim) != head.dim:
            raise ValueError(f"field 'dim' is {raw['dim']}, the weights give {head.dim}")
        return head

    @classmethod
    def load(cls, path: str | Path) -> ContextHead:
        """Read a ``neighbour-logistic`` head file; a ValueError names the file and the fault."""
        head = load_head(path)
        if not isinstance(head, cls):
            raise ValueError(f"{path}: field 'kind' must be {CONTEXT_HEAD_KIND!r}")
        return head


class MixtureHead:
    """The weighted average of :class:`ContextHead` probabilities, each head reading its own
    columns of the rows: for example one over the embedding and one over the character
    n-gram read-outs (:mod:`promofilter.lexical`) that follow it.

    Probabilities rather than logits are averaged: in a sweep over the 3-layer student's fp32
    embeddings (equal weights, the threshold for precision 0.90 on dev) that gave dev F1
    0.947 against 0.939 for the logit average of the same two heads.
    """

    def __init__(self, members: Sequence[tuple[float, ContextHead]]) -> None:
        if not members:
            raise ValueError("a mixture needs at least one member")
        weights = np.asarray([weight for weight, _ in members], dtype=np.float64)
        if (weights < 0).any() or not np.isclose(weights.sum(), 1.0):
            raise ValueError(f"member weights must be non-negative and sum to 1, got {weights}")
        self.members = [(float(weight), head) for weight, head in members]
        bounds = np.cumsum([0] + [head.dim for _, head in members])
        self._columns = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        self.dim = int(bounds[-1])

    def _average(self, rows: np.ndarray, score: str) -> np.ndarray:
        rows = _rows_of_width(rows, self.dim)
        total = np.zeros(len(rows))
        for (weight, head), columns in zip(self.members, self._columns, strict=True):
            total += weight * getattr(head, score)(rows[:, columns])
        return total.astype(np.float32)

    def alone(self, rows: np.ndarray) -> np.ndarray:
        return self._average(rows, "alone")

    def in_document(self, rows: np.ndarray) -> np.ndarray:
        return self._average(rows, "in_document")

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": MIXTURE_KIND,
            "members": [
                {"weight": weight, "head": head.to_json()} for weight, head in self.members
            ],
        }

    def save(self, path: str | Path) -> None:
        _write_json(path, self.to_json())

    @classmethod
    def from_json(cls, raw: Any) -> MixtureHead:
        members = raw.get("members") if isinstance(raw, dict) else None
        if not isinstance(members, list):
            raise ValueError("field 'members' must be a list")
        parsed = []
        for position, member in enumerate(members):
            where = f"members[{position}]"
            if not isinstance(member, dict) or "weight" not in member or "head" not in member:
                raise ValueError(f"field '{where}' needs 'weight' and 'head'")
            try:
                parsed.append((float(member["weight"]), ContextHead.from_json(member["head"])))
            except (TypeError, ValueError) as error:
                raise ValueError(f"field '{where}': {error}") from error
        return cls(parsed)


def load_head(path: str | Path) -> ContextHead | MixtureHead:
    """Read ``context_head.json`` of either kind; a ValueError names the file and the fault."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot read the context head: {error}") from error
    kind = raw.get("kind") if isinstance(raw, dict) else None
    readers = {CONTEXT_HEAD_KIND: ContextHead.from_json, MIXTURE_KIND: MixtureHead.from_json}
    if kind not in readers:
        raise ValueError(f"{path}: field 'kind' must be one of {sorted(readers)}, got {kind!r}")
    try:
        return readers[kind](raw)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error


def neighbour_features(rows: np.ndarray, window: int) -> np.ndarray:
    """``[e_i, e_{i-1}, has_{i-1}, e_{i+1}, has_{i+1}, ...]`` for each row of one document,
    shape ``(n, (1 + 2 * window) * dim + 2 * window)``: what a :class:`ContextHead` weighs."""
    rows = np.asarray(rows)
    parts = [rows.astype(np.float64)]
    for offset in range(1, window + 1):
        for neighbour in (-offset, offset):
            shifted, present = _shift(rows, neighbour)
            parts += [shifted, present[:, None]]
    return np.hstack(parts)


def _shift(values: np.ndarray, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """``values`` moved so row ``i`` holds row ``i + offset`` (zeros past either end), and a
    float mask of the rows that have such a neighbour."""
    count = len(values)
    shifted = np.zeros_like(values, dtype=np.float64)
    present = np.zeros(count)
    if abs(offset) < count:
        if offset > 0:
            shifted[:-offset] = values[offset:]
            present[:-offset] = 1.0
        else:
            shifted[-offset:] = values[:offset]
            present[-offset:] = 1.0
    return shifted, present


def _rows_of_width(rows: np.ndarray, dim: int) -> np.ndarray:
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] != dim:
        raise ValueError(f"expected rows of shape (n, {dim}), got {rows.shape}")
    return rows


def _write_json(path: str | Path, content: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(content) + "\n", encoding="utf-8")


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * logits))).astype(np.float32)
