"""Loading a model directory and scoring texts with ONNX Runtime.

A model directory holds ``model.onnx`` (inputs ``input_ids`` and ``attention_mask``, output
``logits``), ``tokenizer.json`` and ``config.json`` (labels, ``max_length``, ``threshold``,
the sha256 of model.onnx). Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PROMOTIONAL = "promotional"
FACTUAL = "factual"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"
DEFAULT_THREADS = 2
DEFAULT_BATCH_SIZE = 32


class ModelLoadError(RuntimeError):
    """A model directory is missing, incomplete, or fails its integrity check."""


def sha256_of(path: str | Path) -> str:
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
        id2label = {int(index): str(label) for index, label in raw["id2label"].items()}
        if PROMOTIONAL not in id2label.values():
            raise ModelLoadError(f"{path}: id2label has no {PROMOTIONAL!r} label")
        return cls(
            id2label=id2label,
            max_length=int(raw["max_length"]),
            threshold=float(raw["threshold"]),
            model_sha256=raw.get("model_sha256"),
            pad_token_id=int(raw.get("pad_token_id", 0)),
            raw=raw,
        )


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


class PromoFilter:
    """A loaded promofilter model: segment scores and labels from ONNX Runtime.

    One ONNX Runtime session per instance, built with explicit thread settings. Texts are
    tokenized in one batch, sorted by length and padded per batch, so a batch of short
    segments is not padded to the longest text of the call.
    """

    def __init__(
        self,
        path: str | Path,
        threshold: float | None = None,
        threads: int = DEFAULT_THREADS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        verify: bool = True,
    ) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        self.path = Path(path)
        model_file, tokenizer_file = self.path / MODEL_FILE, self.path / TOKENIZER_FILE
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
        if batch_size < 1 or threads < 1:
            raise ValueError("batch_size and threads must be at least 1")
        self.threshold = self.config.threshold if threshold is None else float(threshold)
        self.batch_size = batch_size
        self.threads = threads
        self._promotional_index = next(
            i for i, label in self.config.id2label.items() if label == PROMOTIONAL
        )
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        self.session = onnxruntime.InferenceSession(
            str(model_file), options, providers=["CPUExecutionProvider"]
        )

    @property
    def name(self) -> str:
        return self.config.raw.get("name", self.path.name)

    def _batches(self, encoded: list[list[int]]) -> Iterator[tuple[np.ndarray, dict]]:
        order = np.argsort([len(ids) for ids in encoded], kind="stable")
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            width = max(len(encoded[i]) for i in chosen)
            input_ids = np.full((len(chosen), width), self.config.pad_token_id, dtype=np.int64)
            attention_mask = np.zeros((len(chosen), width), dtype=np.int64)
            for row, index in enumerate(chosen):
                ids = encoded[index]
                input_ids[row, : len(ids)] = ids
                attention_mask[row, : len(ids)] = 1
            yield chosen, {"input_ids": input_ids, "attention_mask": attention_mask}

    def predict_proba(self, texts: str | Sequence[str]) -> np.ndarray:
        """P(promotional) per text, shape ``(n,)``; a text longer than the model's window
        gets the highest score of its overlapping windows."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            return np.zeros(0, dtype=np.float32)
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{index}] is {type(text).__name__}, expected str")
        owners: list[int] = []
        encoded: list[list[int]] = []
        for owner, encoding in enumerate(self.tokenizer.encode_batch(texts)):
            for window in windows(encoding.ids, self.config.max_length):
                owners.append(owner)
                encoded.append(window)
        window_scores = np.zeros(len(encoded), dtype=np.float32)
        for chosen, feed in self._batches(encoded):
            logits = self.session.run(["logits"], feed)[0].astype(np.float64)
            logits -= logits.max(axis=1, keepdims=True)
            probabilities = np.exp(logits)
            probabilities /= probabilities.sum(axis=1, keepdims=True)
            window_scores[chosen] = probabilities[:, self._promotional_index]
        scores = np.zeros(len(texts), dtype=np.float32)
        np.maximum.at(scores, np.asarray(owners), window_scores)
        return scores

    def predict(self, texts: str | Sequence[str], threshold: float | None = None) -> list[str]:
        """``"promotional"`` or ``"factual"`` per text, at ``threshold`` (default: the model's)."""
        cut = self.threshold if threshold is None else float(threshold)
        return [PROMOTIONAL if p >= cut else FACTUAL for p in self.predict_proba(texts)]


def default_model_path() -> Path:
    """The model shipped inside the package (``promofilter/models/default``)."""
    from importlib import resources

    return Path(str(resources.files("promofilter.models") / "default"))


def load(path: str | Path | None = None, **options: Any) -> PromoFilter:
    """Load a model directory (default: the shipped model); options go to :class:`PromoFilter`."""
    return PromoFilter(default_model_path() if path is None else path, **options)
