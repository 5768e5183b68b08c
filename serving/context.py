"""Heads: from what the encoder says about each segment to P(promotional), alone or in context.

A call to action often reads as plain reporting on its own ("Alibaba: Kaufen oder
verkaufen?") and gives itself away only by what stands next to it. So a model may ship a
context head (``context_head.json``): a logistic regression over a segment's pooled embedding
and those of its neighbours within ``window`` segments, each neighbour with a flag saying
whether it exists. The encoder still runs once per segment; the head costs a few dot products.

A text scored on its own is a document of one segment: its neighbours are absent, exactly as
for the first and last segment of a document, which the head saw in training.

A :class:`DocumentHead` reads the whole document instead: a small transformer over the
segments' embeddings, trained together with the encoder, so that a segment deep inside an
advertorial is judged by what the whole page is (``segment-transformer`` files).

A :class:`MixtureHead` averages several such heads, each over its own columns of the rows (the
shipped model: one over the embedding, one over the character n-gram read-outs of
:mod:`promofilter.lexical`).

Models without a context head keep working: their rows are the segment scores themselves.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
from promofilter.jsonfiles import packed, unpacked, write_json

CONTEXT_HEAD_FILE = "context_head.json"
CONTEXT_HEAD_KIND = "neighbour-logistic"
DOCUMENT_HEAD_KIND = "segment-transformer"
MIXTURE_KIND = "mixture"

HeadT = TypeVar("HeadT", "ContextHead", "DocumentHead")


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
        write_json(path, self.to_json())

    @classmethod
    def from_json(cls, raw: Any) -> ContextHead:
        """A head from its JSON form; a ValueError says which field is wrong."""
        return _head_from_json(
            raw,
            CONTEXT_HEAD_KIND,
            lambda fields: cls(
                np.asarray(fields["weights"], dtype=np.float64), fields["bias"], fields["window"]
            ),
        )

    @classmethod
    def load(cls, path: str | Path) -> ContextHead:
        """Read a ``neighbour-logistic`` head file; a ValueError names the file and the fault."""
        head = load_head(path)
        if not isinstance(head, cls):
            raise ValueError(f"{path}: field 'kind' must be {CONTEXT_HEAD_KIND!r}")
        return head


# the parameters of one layer of a DocumentHead, with their shapes: w is the width, f the
# feed-forward size
_DOCUMENT_LAYER_SHAPES: dict[str, tuple[str, ...]] = {
    "self_attn.in_proj_weight": ("3w", "w"),
    "self_attn.in_proj_bias": ("3w",),
    "self_attn.out_proj.weight": ("w", "w"),
    "self_attn.out_proj.bias": ("w",),
    "linear1.weight": ("f", "w"),
    "linear1.bias": ("f",),
    "linear2.weight": ("w", "f"),
    "linear2.bias": ("w",),
    "norm1.weight": ("w",),
    "norm1.bias": ("w",),
    "norm2.weight": ("w",),
    "norm2.bias": ("w",),
}


class DocumentHead:
    """A transformer over one document's segment embeddings: each segment's logit is its own
    read-out (``own``, the encoder's classifier) plus what the transformer makes of it among
    all the document's segments.

    The embeddings are projected to ``width``; each row gets a learned vector for its position
    from the start and one for its position from the end (both capped at
    ``positions - 1``, so a longer document reuses the last); then come post-norm encoder
    layers with ReLU (PyTorch's ``nn.TransformerEncoderLayer``, whose parameter names the
    ``layers`` entries keep) and a linear read-out. A text scored on its own is a document of
    one segment.
    """

    LAYER_NORM_EPS = 1e-5

    def __init__(
        self,
        own: np.ndarray,
        own_bias: float,
        project: np.ndarray,
        project_bias: np.ndarray,
        from_start: np.ndarray,
        from_end: np.ndarray,
        layers: Sequence[dict[str, np.ndarray]],
        out: np.ndarray,
        out_bias: float,
        heads: int,
    ) -> None:
        self.project = np.asarray(project, dtype=np.float64)
        if self.project.ndim != 2:
            raise ValueError(f"'project' must be a matrix, got shape {self.project.shape}")
        width, self.dim = self.project.shape
        self.own = _of_shape(own, (self.dim,), "own")
        self.own_bias = float(own_bias)
        self.project_bias = _of_shape(project_bias, (width,), "project_bias")
        self.from_start = np.asarray(from_start, dtype=np.float64)
        if (
            self.from_start.ndim != 2
            or self.from_start.shape[1] != width
            or not len(self.from_start)
        ):
            raise ValueError(f"'from_start' must have shape (positions, {width})")
        self.from_end = _of_shape(from_end, self.from_start.shape, "from_end")
        if heads < 1 or width % heads:
            raise ValueError(f"{heads} heads do not divide the width {width}")
        self.heads = heads
        if not layers:
            raise ValueError("a document head needs at least one layer")
        feed_forward = np.shape(layers[0].get("linear1.weight", ()))[:1] or (0,)
        sizes = {"w": width, "3w": 3 * width, "f": feed_forward[0]}
        self.layers = []
        for index, layer in enumerate(layers):
            checked = {}
            for name, shape in _DOCUMENT_LAYER_SHAPES.items():
                if name not in layer:
                    raise ValueError(f"layers[{index}] lacks {name!r}")
                wanted = tuple(sizes[axis] for axis in shape)
                checked[name] = _of_shape(layer[name], wanted, f"layers[{index}].{name}")
            self.layers.append(checked)
        self.out = _of_shape(out, (width,), "out")
        self.out_bias = float(out_bias)

    @property
    def positions(self) -> int:
        return len(self.from_start)

    def _logits(self, rows: np.ndarray, documents: int) -> np.ndarray:
        """Logits of ``rows`` laid out as ``documents`` documents of equal length, in order."""
        rows = _rows_of_width(rows, self.dim).astype(np.float64)
        if not len(rows):
            return np.zeros(0)
        length = len(rows) // documents
        steps = np.minimum(np.arange(length), self.positions - 1)
        x = rows @ self.project.T + self.project_bias
        x = x.reshape(documents, length, -1) + self.from_start[steps] + self.from_end[steps[::-1]]
        for layer in self.layers:
            x = _layer_norm(
                x + self._attention(x, layer), layer["norm1.weight"], layer["norm1.bias"]
            )
            hidden = np.maximum(x @ layer["linear1.weight"].T + layer["linear1.bias"], 0.0)
            x = _layer_norm(
                x + hidden @ layer["linear2.weight"].T + layer["linear2.bias"],
                layer["norm2.weight"],
                layer["norm2.bias"],
            )
        context = (x @ self.out).reshape(-1) + self.out_bias
        return context + rows @ self.own + self.own_bias

    def _attention(self, x: np.ndarray, layer: dict[str, np.ndarray]) -> np.ndarray:
        """Multi-head self-attention over the segments of each document in ``x``
        (documents, segments, width)."""
        documents, length, width = x.shape
        size = width // self.heads
        qkv = x @ layer["self_attn.in_proj_weight"].T + layer["self_attn.in_proj_bias"]
        # (3, documents, heads, segments, size)
        qkv = qkv.reshape(documents, length, 3, self.heads, size).transpose(2, 0, 3, 1, 4)
        query, key, value = qkv
        weights = query @ key.transpose(0, 1, 3, 2) / np.sqrt(size)
        weights = np.exp(weights - weights.max(axis=-1, keepdims=True))
        weights /= weights.sum(axis=-1, keepdims=True)
        mixed = (weights @ value).transpose(0, 2, 1, 3).reshape(documents, length, width)
        return mixed @ layer["self_attn.out_proj.weight"].T + layer["self_attn.out_proj.bias"]

    def in_document(self, rows: np.ndarray) -> np.ndarray:
        return _sigmoid(self._logits(rows, 1))

    def alone(self, rows: np.ndarray) -> np.ndarray:
        return _sigmoid(self._logits(rows, len(rows)))

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": DOCUMENT_HEAD_KIND,
            "dim": self.dim,
            "heads": self.heads,
            "own": packed(self.own),
            "own_bias": self.own_bias,
            "project": packed(self.project),
            "project_bias": packed(self.project_bias),
            "from_start": packed(self.from_start),
            "from_end": packed(self.from_end),
            "layers": [
                {name: packed(value) for name, value in layer.items()} for layer in self.layers
            ],
            "out": packed(self.out),
            "out_bias": self.out_bias,
        }

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def from_json(cls, raw: Any) -> DocumentHead:
        """A head from its JSON form; a ValueError says which field is wrong."""
        return _head_from_json(raw, DOCUMENT_HEAD_KIND, cls._parse)

    @classmethod
    def _parse(cls, raw: dict) -> DocumentHead:
        matrices = {
            name: unpacked(raw[name], name, ndim)
            for name, ndim in (
                ("own", 1),
                ("project", 2),
                ("project_bias", 1),
                ("from_start", 2),
                ("from_end", 2),
                ("out", 1),
            )
        }
        if not isinstance(raw["layers"], list):
            raise ValueError("field 'layers' must be a list")
        layers = []
        for index, layer in enumerate(raw["layers"]):
            if not isinstance(layer, dict):
                raise ValueError(f"field 'layers[{index}]' must be an object")
            unknown = sorted(set(layer) - set(_DOCUMENT_LAYER_SHAPES))
            if unknown:
                raise ValueError(f"field 'layers[{index}]' has unknown entries {unknown}")
            layers.append(
                {
                    name: unpacked(layer[name], f"layers[{index}].{name}", len(shape))
                    for name, shape in _DOCUMENT_LAYER_SHAPES.items()
                    if name in layer
                }
            )
        return cls(
            own_bias=_number(raw["own_bias"], "own_bias"),
            out_bias=_number(raw["out_bias"], "out_bias"),
            heads=raw["heads"],
            layers=layers,
            **matrices,
        )


class MixtureHead:
    """The weighted average of member heads' probabilities (:class:`ContextHead` or
    :class:`DocumentHead`), each head reading its own columns of the rows: for example one
    over the embedding and one over the character n-gram read-outs
    (:mod:`promofilter.lexical`) that follow it.

    Probabilities rather than logits are averaged: in a sweep over the 3-layer student's fp32
    embeddings (equal weights, the threshold for precision 0.90 on dev) that gave dev F1
    0.947 against 0.939 for the logit average of the same two heads.
    """

    def __init__(self, members: Sequence[tuple[float, ContextHead | DocumentHead]]) -> None:
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
        write_json(path, self.to_json())

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
                parsed.append((float(member["weight"]), _member_from_json(member["head"])))
            except (TypeError, ValueError) as error:
                raise ValueError(f"field '{where}': {error}") from error
        return cls(parsed)


def _head_from_json(raw: Any, kind: str, build: Callable[[dict], HeadT]) -> HeadT:
    """``build(raw)`` after checking ``raw``'s kind; a missing field or a wrong type becomes a
    ValueError that names it, and a stated ``dim`` must match the weights."""
    if not isinstance(raw, dict) or raw.get("kind") != kind:
        raise ValueError(f"field 'kind' must be {kind!r}")
    try:
        head = build(raw)
    except KeyError as error:
        raise ValueError(f"missing field {error}") from error
    except TypeError as error:
        raise ValueError(str(error)) from error
    if raw.get("dim", head.dim) != head.dim:
        raise ValueError(f"field 'dim' is {raw['dim']}, the weights give {head.dim}")
    return head


# the heads a mixture may hold, by kind; a file of another kind reads as a ContextHead,
# whose error names the kind it wants
_MEMBER_READERS: dict[str, Callable[[Any], ContextHead | DocumentHead]] = {
    CONTEXT_HEAD_KIND: ContextHead.from_json,
    DOCUMENT_HEAD_KIND: DocumentHead.from_json,
}


def _member_from_json(raw: Any) -> ContextHead | DocumentHead:
    kind = raw.get("kind") if isinstance(raw, dict) else None
    return _MEMBER_READERS.get(kind, ContextHead.from_json)(raw)


def load_head(path: str | Path) -> ContextHead | DocumentHead | MixtureHead:
    """Read ``context_head.json`` of any kind; a ValueError names the file and the fault."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot read the context head: {error}") from error
    kind = raw.get("kind") if isinstance(raw, dict) else None
    readers = {**_MEMBER_READERS, MIXTURE_KIND: MixtureHead.from_json}
    if kind not in readers:
        raise ValueError(f"{path}: field 'kind' must be one of {sorted(readers)}, got {kind!r}")
    try:
        return readers[kind](raw)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error


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


def _of_shape(values: Any, shape: tuple[int, ...], field: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != tuple(shape):
        raise ValueError(f"field {field!r} has shape {array.shape}, expected {tuple(shape)}")
    return array


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"field {field!r} must be a number, got {value!r}")
    return float(value)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=-1, keepdims=True)
    variance = (centred**2).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(variance + DocumentHead.LAYER_NORM_EPS) * weight + bias


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * logits))).astype(np.float32)
