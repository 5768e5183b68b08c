"""Loading a model directory and scoring texts with ONNX Runtime.

A model directory holds ``model.onnx`` (inputs ``input_ids`` and ``attention_mask``, output
``logits``, and ``embeddings`` when there is a context head), ``tokenizer.json``,
``config.json`` (labels, ``max_length``, ``threshold``, the sha256 of model.onnx) and
optionally ``context_head.json`` (:mod:`promofilter.context`) and ``char_ngrams.json``
(:mod:`promofilter.lexical`). Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from promofilter.analyze import PROMOTIONAL, Analysis, analyze_documents, label_of
from promofilter.cascade import CASCADE_FILE, Cascade
from promofilter.context import CONTEXT_HEAD_FILE, Head, SegmentOnly, load_head
from promofilter.lexical import CHAR_NGRAMS_FILE, CharNgramReadout

_Part = TypeVar("_Part")  # an optional part of a model directory, as its reader returns it

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"
# Two intra-op threads use both cores of the target machine; one more thread per session
# only adds contention. Batches of up to 32 windows, cut where the sorted lengths jump (see
# padded_runs), keep padding waste low; the token cap (rows x padded width) keeps a batch of
# full 128-token windows at 8 rows, which holds the peak RSS of the shipped model's process
# under 250 MB (benchmarks/runtime.py) at no measurable cost in throughput.
DEFAULT_THREADS = max(1, min(2, os.cpu_count() or 1))
DEFAULT_BATCH_SIZE = 32
DEFAULT_MAX_BATCH_TOKENS = 1024
# Texts are tokenized and length-sorted in chunks of this many batches, so memory stays
# bounded on a long list while short and long texts still land in separate batches.
_BATCHES_PER_CHUNK = 32
# What one ONNX Runtime call costs beyond its tokens, counted in tokens. On the shipped model
# (2 threads) throughput was 15-18k tokens/s from 2 x 32 to 32 x 64 tokens, and 12k for a
# single row of 16 tokens: a call's fixed cost is a few tokens' worth. 16 is on the safe side,
# so that runs are not split to save a token or two of padding.
RUN_OVERHEAD_TOKENS = 16


def padded_runs(
    sorted_lengths: np.ndarray,
    max_rows: int,
    max_tokens: int,
    run_overhead_tokens: int = RUN_OVERHEAD_TOKENS,
) -> list[tuple[int, int]]:
    """Split lengths sorted ascending into consecutive runs ``[start, stop)`` that cost the
    least: each run is padded to its longest, so it costs rows x that length, plus a fixed
    ``run_overhead_tokens`` per ONNX Runtime call. Runs have at most ``max_rows`` rows and at
    most ``max_tokens`` padded tokens, except that a single row is always allowed.

    Cutting a run where lengths jump, rather than every ``max_rows`` rows, matters for small
    mixed batches such as the service's: random calls of 65 test segments carried 19% padding
    in runs cut every 16 rows and 4% with this cut (the whole sorted test split: 3% and 1%).
    """
    count = len(sorted_lengths)
    cost = np.full(count + 1, np.inf)
    cost[0] = 0.0
    cut = np.zeros(count + 1, dtype=np.intp)
    for stop in range(1, count + 1):
        width = int(sorted_lengths[stop - 1])
        rows_allowed = max(1, min(max_rows, max_tokens // max(width, 1)))
        starts = np.arange(max(0, stop - rows_allowed), stop)
        candidates = cost[starts] + run_overhead_tokens + (stop - starts) * width
        best = int(np.argmin(candidates))
        cost[stop], cut[stop] = candidates[best], starts[best]
    runs = []
    stop = count
    while stop > 0:
        runs.append((int(cut[stop]), stop))
        stop = int(cut[stop])
    return runs[::-1]


class ModelLoadError(RuntimeError):
    """A model directory is missing, incomplete, or fails its integrity check."""


def sha256_of(path: str | Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks (model files run to tens of MB)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelConfig:
    """What the runtime needs from ``config.json``; the rest of the file is provenance."""

    id2label: dict[int, str]
    max_length: int
    threshold: float
    model_sha256: str | None
    context_head_sha256: str | None
    char_ngrams_sha256: str | None
    cascade_sha256: str | None
    split_confidence: float
    pad_token_id: int
    raw: dict[str, Any]

    @classmethod
    def read(cls, path: Path) -> ModelConfig:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"{path}: cannot read the model config: {error}") from error
        missing = [key for key in ("id2label", "max_length", "threshold") if key not in raw]
        if missing:
            raise ModelLoadError(f"{path}: missing field(s) {', '.join(missing)}")
        try:
            id2label = {int(index): str(label) for index, label in raw["id2label"].items()}
        except (AttributeError, TypeError, ValueError):
            raise ModelLoadError(
                f"{path}: id2label must map class indices to labels, got {raw['id2label']!r}"
            ) from None
        if PROMOTIONAL not in id2label.values():
            raise ModelLoadError(f"{path}: id2label has no {PROMOTIONAL!r} label")
        max_length = _config_number(path, raw, "max_length", int, low=3)
        return cls(
            id2label=id2label,
            max_length=int(max_length),
            threshold=_config_number(path, raw, "threshold", float, low=0.0, high=1.0),
            model_sha256=raw.get("model_sha256"),
            context_head_sha256=raw.get("context_head_sha256"),
            char_ngrams_sha256=raw.get("char_ngrams_sha256"),
            cascade_sha256=raw.get("cascade_sha256"),
            split_confidence=_config_number(
                path, raw, "split_confidence", float, default=0.0, low=0.0, high=1.0
            ),
            pad_token_id=int(_config_number(path, raw, "pad_token_id", int, default=0, low=0)),
            raw=raw,
        )


def _config_number(
    path: Path,
    raw: dict[str, Any],
    key: str,
    kind: type[int] | type[float],
    default: float | None = None,
    low: float = -math.inf,
    high: float = math.inf,
) -> float:
    """``raw[key]`` (or ``default``) as ``kind``, or a :class:`ModelLoadError` naming the field."""
    value = raw.get(key, default)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not low <= number <= high:
        bounds = f"at least {low:g}" if high == math.inf else f"between {low:g} and {high:g}"
        raise ModelLoadError(
            f"{path}: field {key!r} must be a number {bounds}, got {value!r}; the config is "
            "damaged: reinstall promofilter or rebuild the model"
        )
    return number


def windows(ids: Sequence[int], max_length: int) -> list[list[int]]:
    """Split one encoding (with its first and last special token) into windows that fit.

    Windows overlap by half their content, so text cut at one window's edge is seen whole in
    the next; each keeps the leading and trailing special tokens.
    """
    if len(ids) <= max_length:
        return [list(ids)]
    first, body, last = ids[0], list(ids[1:-1]), ids[-1]
    size = max_length - 2
    stride = max(1, size // 2)
    starts = [*range(0, len(body) - size, stride), len(body) - size]
    return [[first, *body[start : start + size], last] for start in starts]


@dataclass(frozen=True)
class _Runtime:
    session: Any
    tokenizer: Any


# One ONNX Runtime session per model file and thread count in a process: every PromoFilter
# loaded from the same directory shares it (a session holds the weights and thread pools).
_RUNTIMES: dict[tuple[str, int, int, int], _Runtime] = {}
_RUNTIMES_LOCK = threading.Lock()


def _runtime(model_file: Path, tokenizer_file: Path, threads: int) -> _Runtime:
    stat = model_file.stat()
    key = (str(model_file.resolve()), stat.st_size, stat.st_mtime_ns, threads)
    with _RUNTIMES_LOCK:
        if key not in _RUNTIMES:
            _RUNTIMES[key] = _Runtime(
                create_session(model_file, threads), _create_tokenizer(tokenizer_file)
            )
        return _RUNTIMES[key]


def create_session(model_file: Path, threads: int) -> Any:
    """An ONNX Runtime session with explicit threads, checked against the graph contract."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    try:
        session = onnxruntime.InferenceSession(
            str(model_file), options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # onnxruntime raises its own, version-dependent classes
        raise ModelLoadError(
            f"{model_file}: onnxruntime {onnxruntime.__version__} cannot load it ({error}). "
            "Rebuild the model with `python -m training build-default` or upgrade onnxruntime."
        ) from error
    inputs = {i.name for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    if not {"input_ids", "attention_mask"} <= inputs or "logits" not in outputs:
        raise ModelLoadError(
            f"{model_file}: expected inputs input_ids and attention_mask and an output logits, "
            f"found inputs {sorted(inputs)} and outputs {sorted(outputs)}"
        )
    return session


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise class probabilities (float64) from a ``[batch, classes]`` logits array."""
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted)
    return probabilities / probabilities.sum(axis=1, keepdims=True)


def _create_tokenizer(tokenizer_file: Path) -> Any:
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
    except Exception as error:
        raise ModelLoadError(f"{tokenizer_file}: not a readable tokenizer ({error})") from error
    tokenizer.no_padding()
    tokenizer.no_truncation()  # long texts are windowed, never cut
    return tokenizer


def _check_threshold(threshold: float) -> float:
    value = float(threshold)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold!r}")
    return value


def _as_texts(texts: str | Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    texts = list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{index}] is {type(text).__name__}, expected str")
    return texts


class PromoFilter:
    """A loaded promofilter model: P(promotional) per text, labels, whole-document analysis.

    Texts are tokenized in batches, sorted by length and padded per batch, so a batch of
    short segments is not padded to the longest text of the call. Texts longer than the
    model's window are scored in overlapping windows, never truncated. The ONNX Runtime
    session (explicit thread settings) is shared by every instance loaded from the same
    model file with the same ``threads`` in this process; ``threshold`` and ``batch_size``
    belong to the instance.
    A model with a ``cascade.json`` skips the encoder for texts its character n-grams
    already decide, unless loaded with ``cascade=False`` (see :mod:`promofilter.cascade`).
    """

    def __init__(
        self,
        path: str | Path,
        threshold: float | None = None,
        threads: int = DEFAULT_THREADS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        verify: bool = True,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        cascade: bool = True,
    ) -> None:
        self.path = Path(path).expanduser()
        model_file, tokenizer_file = self.path / MODEL_FILE, self.path / TOKENIZER_FILE
        if not self.path.is_dir():
            raise ModelLoadError(
                f"{self.path}: no such model directory; pass a directory holding "
                f"{MODEL_FILE}, {TOKENIZER_FILE} and {CONFIG_FILE}"
            )
        for required in (model_file, tokenizer_file, self.path / CONFIG_FILE):
            if not required.is_file():
                raise ModelLoadError(
                    f"{required} not found: a model directory needs {MODEL_FILE}, "
                    f"{TOKENIZER_FILE} and {CONFIG_FILE}"
                )
        self.config = ModelConfig.read(self.path / CONFIG_FILE)
        if verify and self.config.model_sha256:
            actual = sha256_of(model_file)
            if actual != self.config.model_sha256:
                raise ModelLoadError(
                    f"{model_file}: sha256 {actual} does not match {self.config.model_sha256} "
                    f"in {CONFIG_FILE}; the file was changed or damaged. Reinstall promofilter "
                    "or rebuild the model with `python -m training build-default`."
                )
        if int(threads) < 1:
            raise ValueError(f"threads must be at least 1, got {threads!r}")
        self.threads = int(threads)
        self.threshold = self.config.threshold if threshold is None else threshold
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self._promotional_index = next(
            i for i, label in self.config.id2label.items() if label == PROMOTIONAL
        )
        runtime = _runtime(model_file, tokenizer_file, self.threads)
        self.session, self.tokenizer = runtime.session, runtime.tokenizer
        self.head: Head = self._load_head(verify)
        self.lexical: CharNgramReadout | None = self._load_optional(
            CHAR_NGRAMS_FILE, "char_ngrams_sha256", CharNgramReadout.load, verify
        )
        # None where the model has no cascade.json or the caller asked for every text to be
        # encoded; see promofilter.cascade
        self.cascade: Cascade | None = (
            self._load_optional(CASCADE_FILE, "cascade_sha256", Cascade.load, verify)
            if cascade
            else None
        )
        # how sure a paragraph's trailing sentences must be, read alone, to be split off
        # (see promofilter.analyze.analyze_documents); chosen on dev by the build
        self.split_confidence = self.config.split_confidence
        shapes = {o.name: o.shape for o in self.session.get_outputs()}
        lexical_width = self.lexical.width if self.lexical else 0
        # the width of the pooled embeddings, None for a graph without that output (an int,
        # or what the head leaves for it where the graph leaves the axis symbolic)
        self._embedding_width: int | None = None
        if "embeddings" in shapes:
            width = shapes["embeddings"][-1]
            self._embedding_width = (
                width if isinstance(width, int) else self.head.dim - lexical_width
            )
        if self.lexical and isinstance(self.head, SegmentOnly):
            raise ModelLoadError(
                f"{self.path / CHAR_NGRAMS_FILE} needs a {CONTEXT_HEAD_FILE} to weigh its "
                "columns; rebuild the model with `python -m training build-default`."
            )
        if not isinstance(self.head, SegmentOnly) and (
            self._embedding_width is None or self._embedding_width + lexical_width != self.head.dim
        ):
            raise ModelLoadError(
                f"{self.path / CONTEXT_HEAD_FILE} reads rows of width {self.head.dim}; the "
                f"graph's outputs are {shapes} and {CHAR_NGRAMS_FILE} adds {lexical_width} "
                "column(s). Rebuild the model with `python -m training build-default`."
            )
        if self.cascade and (
            not self.lexical
            or self.cascade.gate.dim != lexical_width
            or self.cascade.embedding_width != self._embedding_width
        ):
            raise ModelLoadError(
                f"{self.path / CASCADE_FILE} gates on {self.cascade.gate.dim} n-gram column(s) "
                f"and stands in embeddings of width {self.cascade.embedding_width}; the model "
                f"has {lexical_width} and {self._embedding_width}. Rebuild the model with "
                "`python -m training build-default`."
            )

    def _verified(self, path: Path, expected: str | None, field: str, verify: bool) -> None:
        if verify and expected and sha256_of(path) != expected:
            raise ModelLoadError(
                f"{path}: sha256 does not match {field} in {CONFIG_FILE}; the file was changed "
                "or damaged. Reinstall promofilter or rebuild the model."
            )

    def _load_head(self, verify: bool) -> Head:
        head_file = self.path / CONTEXT_HEAD_FILE
        if not head_file.is_file():
            return SegmentOnly()
        self._verified(head_file, self.config.context_head_sha256, "context_head_sha256", verify)
        try:
            return load_head(head_file)
        except ValueError as error:
            raise ModelLoadError(str(error)) from error

    def _load_optional(
        self, name: str, sha_field: str, read: Callable[[Path], _Part], verify: bool
    ) -> _Part | None:
        """A part of the model that older directories lack (n-grams, cascade): None where the
        file is absent and config.json does not name it, else read and checked."""
        part_file = self.path / name
        if not part_file.is_file():
            if getattr(self.config, sha_field):
                raise ModelLoadError(
                    f"{part_file} not found, but {CONFIG_FILE} names its sha256; the model "
                    "directory is incomplete. Reinstall promofilter or rebuild the model."
                )
            return None
        self._verified(part_file, getattr(self.config, sha_field), sha_field, verify)
        try:
            return read(part_file)
        except ValueError as error:
            raise ModelLoadError(str(error)) from error

    @property
    def threshold(self) -> float:
        """P(promotional) at or above which a text is labelled promotional (per instance)."""
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self._threshold = _check_threshold(value)

    @property
    def batch_size(self) -> int:
        """Windows per ONNX Runtime call; larger batches trade memory for a little speed."""
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        if int(value) < 1:
            raise ValueError(f"batch_size must be at least 1, got {value!r}")
        self._batch_size = int(value)

    @property
    def max_batch_tokens(self) -> int:
        """Cap on rows x padded width per ONNX Runtime call: what bounds peak memory."""
        return self._max_batch_tokens

    @max_batch_tokens.setter
    def max_batch_tokens(self, value: int) -> None:
        if int(value) < 1:
            raise ValueError(f"max_batch_tokens must be at least 1, got {value!r}")
        self._max_batch_tokens = int(value)

    @property
    def name(self) -> str:
        return self.config.raw.get("name", self.path.name)

    def __repr__(self) -> str:
        return (
            f"PromoFilter({str(self.path)!r}, threshold={self.threshold:g}, "
            f"threads={self.threads}, batch_size={self.batch_size}, "
            f"cascade={self.cascade is not None})"
        )

    def _batches(self, encoded: list[list[int]]) -> Iterator[tuple[np.ndarray, dict]]:
        """Padded batches of windows, shortest first (see :func:`padded_runs`): at most
        ``batch_size`` rows and at most ``max_batch_tokens`` tokens (rows x padded width)."""
        lengths = np.array([len(ids) for ids in encoded], dtype=np.int64)
        order = np.argsort(lengths, kind="stable")
        for start, stop in padded_runs(lengths[order], self.batch_size, self.max_batch_tokens):
            chosen = order[start:stop]
            width = int(lengths[chosen[-1]])
            input_ids = np.full((len(chosen), width), self.config.pad_token_id, dtype=np.int64)
            attention_mask = np.zeros((len(chosen), width), dtype=np.int64)
            for row, index in enumerate(chosen):
                ids = encoded[index]
                input_ids[row, : len(ids)] = ids
                attention_mask[row, : len(ids)] = 1
            yield chosen, {"input_ids": input_ids, "attention_mask": attention_mask}

    def _rows_of_chunk(self, texts: list[str], embeddings: bool) -> np.ndarray:
        owners: list[int] = []
        encoded: list[list[int]] = []
        for owner, encoding in enumerate(self.tokenizer.encode_batch(texts)):
            for window in windows(encoding.ids, self.config.max_length):
                owners.append(owner)
                encoded.append(window)
        outputs = ["logits", "embeddings"] if embeddings else ["logits"]
        window_scores = np.zeros(len(encoded), dtype=np.float32)
        window_rows: np.ndarray | None = None
        for chosen, feed in self._batches(encoded):
            results = self.session.run(outputs, feed)
            window_scores[chosen] = softmax(results[0])[:, self._promotional_index]
            if embeddings:
                if window_rows is None:
                    window_rows = np.zeros((len(encoded), results[1].shape[1]), np.float32)
                window_rows[chosen] = results[1]
        if window_rows is None:
            window_rows = window_scores[:, None]
        # a long text is represented by its most promotional window, so that a call to action
        # at the end of a long text is not averaged away
        best = np.zeros(len(texts), dtype=np.intp)
        best_score = np.full(len(texts), -np.inf, dtype=np.float32)
        for index, (owner, score) in enumerate(zip(owners, window_scores, strict=True)):
            if score > best_score[owner]:
                best[owner], best_score[owner] = index, score
        return window_rows[best]

    def encode(self, texts: str | Sequence[str]) -> np.ndarray:
        """What the model's head needs of each text, shape ``(n, k)``: the pooled embedding,
        followed by the character n-gram read-outs where the model has them (models with a
        context head, see :mod:`promofilter.context`), or P(promotional) as a single column
        (models without). Where :attr:`cascade` skips a text, its embedding columns hold a
        stand-in. :attr:`head` turns rows into scores, alone or in context; the HTTP service
        batches this call across requests."""
        texts = _as_texts(texts)  # read once: an iterator would be spent by the encoder
        if isinstance(self.head, SegmentOnly):
            return self._rows(texts, embeddings=False)
        if self.lexical is None:
            return self._rows(texts, embeddings=True)
        lexical_rows = self.lexical.rows(texts)
        if self.cascade is None:
            return np.hstack([self._rows(texts, embeddings=True), lexical_rows])
        encoded = ~self.cascade.skipped(lexical_rows)
        rows = np.zeros((len(texts), self.cascade.embedding_width), dtype=np.float32)
        if encoded.any():
            kept = [text for text, run in zip(texts, encoded, strict=True) if run]
            rows[encoded] = self._rows(kept, embeddings=True)
        return np.hstack([self.cascade.fill(rows, lexical_rows), lexical_rows])

    def embed(self, texts: str | Sequence[str]) -> np.ndarray:
        """The encoder's pooled embedding per text, shape ``(n, hidden)``; needs a graph with
        an ``embeddings`` output (every model built since the context head was added)."""
        if self._embedding_width is None:
            raise ModelLoadError(
                f"{self.path / MODEL_FILE} has no 'embeddings' output; rebuild the model with "
                "`python -m training build-default`"
            )
        return self._rows(texts, embeddings=True)

    def _rows(self, texts: str | Sequence[str], embeddings: bool) -> np.ndarray:
        texts = _as_texts(texts)
        chunk = self.batch_size * _BATCHES_PER_CHUNK
        parts = [
            self._rows_of_chunk(texts[i : i + chunk], embeddings)
            for i in range(0, len(texts), chunk)
        ]
        if parts:
            return np.concatenate(parts)
        return np.zeros((0, self._embedding_width if embeddings else 1), dtype=np.float32)

    def predict_proba(self, texts: str | Sequence[str]) -> np.ndarray:
        """P(promotional) per text as float32, shape ``(n,)``; one string counts as a list of
        one. Each text is scored on its own, as a document of one segment. A text longer than
        the model's window is scored by its most promotional window, never truncated."""
        return self.head.alone(self.encode(texts))

    def predict_proba_in_context(self, segments: Sequence[str]) -> np.ndarray:
        """P(promotional) for the segments of one document, given in reading order: each is
        scored beside its neighbours (for a model with a context head; otherwise exactly as
        :meth:`predict_proba`). :meth:`analyze` scores its segments this way."""
        if isinstance(segments, str):
            raise TypeError("predict_proba_in_context takes a document's segments as a list")
        return self.head.in_document(self.encode(segments))

    def predict(self, texts: str | Sequence[str], threshold: float | None = None) -> list[str]:
        """``"promotional"`` or ``"factual"`` per text, at ``threshold`` (default: the
        instance's); one string counts as a list of one."""
        cut = self.threshold if threshold is None else _check_threshold(threshold)
        return [label_of(p, cut) for p in self.predict_proba(texts)]

    def score_fields(
        self, texts: Sequence[str], threshold: float | None = None
    ) -> list[dict[str, Any]]:
        """``{"promo_score": P(promotional) rounded to 6 places, "label": ...}`` per text: the
        fields that ``promofilter score`` and ``promofilter.ray.score_dataset`` add."""
        cut = self.threshold if threshold is None else _check_threshold(threshold)
        return [
            {"promo_score": round(float(p), 6), "label": label_of(p, cut)}
            for p in self.predict_proba(texts)
        ]

    def analyze_many(
        self, documents: Sequence[str], threshold: float | None = None
    ) -> list[Analysis]:
        """:meth:`analyze` for several documents, scored together in a few batched calls."""
        if isinstance(documents, str):
            raise TypeError("analyze_many takes a list of documents; use analyze for one")
        cut = self.threshold if threshold is None else _check_threshold(threshold)
        return analyze_documents(
            list(documents), self.encode, self.head, cut, self.split_confidence
        )

    def analyze(self, document: str, threshold: float | None = None) -> Analysis:
        """Label each segment (paragraph, stand-alone line, or a trailing call to action split
        off a factual paragraph) of one document; offsets index ``document`` exactly."""
        if not isinstance(document, str):
            raise TypeError(
                f"analyze takes one document as str, got {type(document).__name__}; "
                "use analyze_many for several"
            )
        return self.analyze_many([document], threshold)[0]

    def clean(self, document: str, threshold: float | None = None) -> str:
        """``document`` with its promotional segments removed; factual text stays byte for
        byte, only the whitespace at the seams is tidied."""
        return self.analyze(document, threshold).clean()


def default_model_path() -> Path:
    """The model shipped inside the package (``promofilter/models/default``)."""
    from importlib import resources

    return Path(str(resources.files("promofilter.models") / "default"))


def load(
    path: str | Path | None = None,
    *,
    threshold: float | None = None,
    threads: int = DEFAULT_THREADS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    verify: bool = True,
    cascade: bool = True,
) -> PromoFilter:
    """Load a model directory (default: the model shipped with the package).

    ``threshold`` defaults to the model's own (chosen on the dev split); ``threads`` is
    ONNX Runtime's intra-op thread count; ``batch_size`` and ``max_batch_tokens`` cap the rows
    and the padded tokens per model call; ``verify`` checks model.onnx against the sha256 in
    config.json; ``cascade=False`` runs the encoder on every text, even those whose
    character n-grams already decide (slower, and the scores of the model without its
    ``cascade.json``; see :mod:`promofilter.cascade`). Loading twice from the same directory
    reuses the ONNX Runtime session.
    """
    if path is None:
        path = default_model_path()
        if not (path / MODEL_FILE).is_file():
            raise ModelLoadError(
                f"the default model is missing ({path / MODEL_FILE} not found). Reinstall "
                "promofilter from a release or a checkout that has models/default, or pass a "
                "model directory: promofilter.load('path/to/model')."
            )
    return PromoFilter(
        path,
        threshold=threshold,
        threads=threads,
        batch_size=batch_size,
        max_batch_tokens=max_batch_tokens,
        verify=verify,
        cascade=cascade,
    )
