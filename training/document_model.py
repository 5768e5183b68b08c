"""Models that judge a segment by its whole document.

A segment deep inside an advertorial ("Aktie Nr. 1: Ein Industriekonzern, ...") reads as
reporting on its own; annotators who read the whole page label it promotional without
hesitation. Two models read the page:

* :class:`DocumentClassifier`, the teacher: the whole document goes through the encoder as
  one sequence (``[CLS] segment [SEP] segment [SEP] ...``), and each segment is the mean of
  its own tokens' last hidden states. Every token attends to every other, across segments.
  Too slow to ship at 12 layers, and its sequences do not fit the runtime's per-segment
  batching.
* :class:`HierarchicalClassifier`, the student: each segment is encoded on its own, exactly
  as the runtime encodes it (:class:`training.modeling.PromoClassifier`'s encoder, pooling and
  classifier), and a small transformer over the document's pooled segment embeddings
  (:class:`SegmentContext`) adds what the page says about each segment. Encoder and context
  are trained together; the encoder ships as ONNX, the context as a
  :class:`promofilter.context.DocumentHead`.

Measured on 2 cores (dev F1 at the build's threshold rule, each model alone): the 12-layer
teacher 0.977 after two epochs, against 0.96 for the 12-layer segment classifier under the
neighbour head; a 3-layer hierarchical student distilled from it 0.964.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from promofilter.context import DocumentHead
from torch import nn
from transformers import BertConfig, BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from training.modeling import PromoClassifier, classifier_config

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

# a segment's label for the loss: P(promotional) in [0, 1]; this marks a segment that only
# serves as context (ambiguous gold label)
UNLABELED = -1.0
# the teacher's sequences: at most this many tokens (the encoder's 512 positions), and at
# most this many of one segment, so that one long paragraph cannot crowd out its neighbours
DOCUMENT_MAX_TOKENS = 512
SEGMENT_MAX_TOKENS = 128
# the student's context: width, layers, heads and learned positions (from either end)
CONTEXT_DEFAULTS = {
    "context_width": 128,
    "context_layers": 2,
    "context_heads": 4,
    "context_positions": 64,
}


def _soft_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor | None
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Two-column logits ``[0, z]`` for a segment logit ``z`` (so that a softmax gives
    sigmoid(z), as for :class:`PromoClassifier`), and the binary cross-entropy against soft
    labels, segments labelled :data:`UNLABELED` left out."""
    two = torch.stack([torch.zeros_like(logits), logits], dim=-1)
    if labels is None:
        return None, two
    labels = labels.to(logits.dtype).view(-1)
    known = labels >= 0
    if not known.any():
        return logits.sum() * 0.0, two
    loss = nn.functional.binary_cross_entropy_with_logits(logits[known], labels[known])
    return loss, two


# --- the teacher: the whole document as one sequence -----------------------------------------


@dataclass
class Window:
    """Consecutive segments of one document as one encoder sequence: ``input_ids`` with
    ``[CLS]`` first and ``[SEP]`` after each segment, and ``segment_index``, for each token,
    the position of its segment in the window (-1 for the special tokens)."""

    document: int
    first: int
    input_ids: list[int]
    segment_index: list[int]

    @property
    def segments(self) -> int:
        return max(self.segment_index) + 1


def document_windows(
    tokenizer,
    documents: Sequence[Sequence[str]],
    max_tokens: int = DOCUMENT_MAX_TOKENS,
    max_segment_tokens: int = SEGMENT_MAX_TOKENS,
) -> list[Window]:
    """Each document's segments packed in order into windows of at most ``max_tokens``
    tokens: one window for most documents (the corpus averages about 300 tokens); a longer
    one is cut between segments. Every segment is in exactly one window."""
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    windows = []
    for number, segments in enumerate(documents):
        pieces = tokenizer(list(segments), add_special_tokens=False)["input_ids"]
        pieces = [ids[: max_segment_tokens - 1] for ids in pieces]
        start = 0
        while start < len(pieces):
            input_ids, segment_index = [cls_id], [-1]
            stop = start
            while stop < len(pieces) and (
                stop == start or len(input_ids) + len(pieces[stop]) + 1 <= max_tokens
            ):
                input_ids += [*pieces[stop], sep_id]
                segment_index += [stop - start] * len(pieces[stop]) + [-1]
                stop += 1
            windows.append(Window(number, start, input_ids, segment_index))
            start = stop
    return windows


class DocumentClassifier(BertPreTrainedModel):
    """Segment classifier over whole documents (see the module docstring); ``labels`` hold
    one P(promotional) per segment of the batch, windows in order, or :data:`UNLABELED`."""

    config_class = BertConfig

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def segment_embeddings(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, segment_index: torch.Tensor
    ) -> torch.Tensor:
        """The mean last hidden state of each segment's tokens, windows in order:
        ``[segments in the batch, hidden]``."""
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        counts = segment_index.max(dim=1).values + 1
        offsets = torch.cumsum(counts, 0) - counts
        slot = torch.where(segment_index >= 0, segment_index + offsets[:, None], -1)
        inside = slot >= 0
        total = int(counts.sum())
        sums = hidden.new_zeros(total, hidden.shape[-1]).index_add_(0, slot[inside], hidden[inside])
        sizes = hidden.new_zeros(total).index_add_(
            0, slot[inside], hidden.new_ones(int(inside.sum()))
        )
        return sums / sizes.clamp(min=1.0)[:, None]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        segment_index: torch.Tensor,
        labels: torch.Tensor | None = None,
        **_: object,
    ) -> SequenceClassifierOutput:
        pooled = self.segment_embeddings(input_ids, attention_mask, segment_index)
        logits = self.classifier(self.dropout(pooled))[:, 0]
        loss, two = _soft_cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=two)


def teacher_config(base: BertConfig) -> BertConfig:
    config = classifier_config(base)
    config.architectures = [DocumentClassifier.__name__]
    return config


def _padded(sequences: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``sequences`` right-padded with ``pad`` to the longest, and the mask of real entries."""
    width = max(len(sequence) for sequence in sequences)
    values = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        values[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        mask[row, : len(sequence)] = 1
    return values, mask


def collate_windows(items: Sequence[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """A padded batch of windows (dataset rows with ``input_ids``, ``segment_index`` and
    ``labels``, one label per segment)."""
    input_ids, attention_mask = _padded([item["input_ids"] for item in items], pad_id)
    segment_index, _ = _padded([item["segment_index"] for item in items], -1)
    labels = torch.tensor([label for item in items for label in item["labels"]])
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "segment_index": segment_index,
        "labels": labels,
    }


def predict_windows(
    model: DocumentClassifier,
    windows: Sequence[Window],
    pad_id: int,
    max_batch_tokens: int = 4096,
) -> list[np.ndarray]:
    """P(promotional) per segment, one array per window, windows batched by length."""
    model.eval()
    order = sorted(range(len(windows)), key=lambda i: len(windows[i].input_ids))
    scores: list[np.ndarray] = [np.zeros(0)] * len(windows)
    batch: list[int] = []

    def run() -> None:
        rows = [
            {"input_ids": w.input_ids, "segment_index": w.segment_index, "labels": []}
            for w in (windows[i] for i in batch)
        ]
        feed = collate_windows(rows, pad_id)
        feed.pop("labels")
        with torch.inference_mode():
            probabilities = torch.softmax(model(**feed).logits.float(), dim=-1)[:, 1].numpy()
        bounds = np.cumsum([windows[i].segments for i in batch])[:-1]
        for index, part in zip(batch, np.split(probabilities, bounds), strict=True):
            scores[index] = part

    for index in order:
        width = len(windows[index].input_ids)
        if batch and width * (len(batch) + 1) > max_batch_tokens:
            run()
            batch = []
        batch.append(index)
    if batch:
        run()
    return scores


def predict_documents(
    model: DocumentClassifier, tokenizer, documents: Sequence[Sequence[str]]
) -> list[np.ndarray]:
    """P(promotional) per segment of each document (a sequence of segment texts)."""
    windows = document_windows(tokenizer, documents)
    per_window = predict_windows(model, windows, tokenizer.pad_token_id)
    scores = [np.zeros(len(segments), dtype=np.float32) for segments in documents]
    for window, part in zip(windows, per_window, strict=True):
        scores[window.document][window.first : window.first + len(part)] = part
    return scores


# --- the student: segments encoded alone, a transformer over the document -------------------


class SegmentContext(nn.Module):
    """What the document adds to each segment's logit: the torch twin of
    :class:`promofilter.context.DocumentHead` (without the segment's own read-out, which is
    the encoder's classifier)."""

    def __init__(
        self, hidden: int, width: int, layers: int, heads: int, positions: int, dropout: float
    ) -> None:
        super().__init__()
        self.heads = heads
        self.project = nn.Linear(hidden, width)
        self.from_start = nn.Embedding(positions, width)
        self.from_end = nn.Embedding(positions, width)
        layer = nn.TransformerEncoderLayer(
            width, heads, 2 * width, dropout, activation="relu", batch_first=True
        )
        # the fast path's nested tensors would drop padded positions; the head computes them
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(width, 1)

    def forward(self, embeddings: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Context logits ``(documents, slots)`` for embeddings ``(documents, slots, hidden)``;
        ``present`` marks the slots that hold a segment (each document's first ones)."""
        documents, slots, _ = embeddings.shape
        last = self.from_start.num_embeddings - 1
        steps = torch.arange(slots, device=embeddings.device).expand(documents, slots)
        counts = present.sum(dim=1, keepdim=True)
        from_end = (counts - 1 - steps).clamp(min=0, max=last)
        x = self.project(embeddings) + self.from_start(steps.clamp(max=last))
        x = self.encoder(x + self.from_end(from_end), src_key_padding_mask=~present)
        return self.out(x)[..., 0]

    def to_head(self, own: torch.Tensor, own_bias: float) -> DocumentHead:
        """The numpy head of the runtime, with the segment's own read-out ``own``."""

        def array(tensor: torch.Tensor) -> np.ndarray:
            return tensor.detach().double().numpy()

        layers = [
            {name: array(value) for name, value in layer.state_dict().items()}
            for layer in self.encoder.layers
        ]
        return DocumentHead(
            own=array(own),
            own_bias=own_bias,
            project=array(self.project.weight),
            project_bias=array(self.project.bias),
            from_start=array(self.from_start.weight),
            from_end=array(self.from_end.weight),
            layers=layers,
            out=array(self.out.weight[0]),
            out_bias=self.out.bias[0].item(),
            heads=self.heads,
        )


class HierarchicalClassifier(PromoClassifier):
    """:class:`PromoClassifier` (encoder, mean pooling, classifier: what ships as ONNX) plus a
    :class:`SegmentContext` over each document's pooled segments, trained together.

    A batch is documents flattened into segments: ``input_ids``/``attention_mask`` hold one
    row per segment, ``segment_document`` and ``segment_position`` say where each belongs.
    A segment's logit is the classifier's promotional-minus-factual logit plus its context
    logit. :meth:`encoder` gives the part that runs per segment, which the ONNX export takes;
    :meth:`document_head` the rest, for the runtime.
    """

    # encoder rows per forward pass of the encoder: segments sorted by length and run in
    # chunks, so that a short segment is not padded to its document's longest
    ENCODER_CHUNK = 32

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        settings = {key: getattr(config, key, value) for key, value in CONTEXT_DEFAULTS.items()}
        self.context = SegmentContext(
            config.hidden_size,
            settings["context_width"],
            settings["context_layers"],
            settings["context_heads"],
            settings["context_positions"],
            config.hidden_dropout_prob,
        )
        self.post_init()

    def own_readout(self) -> tuple[torch.Tensor, float]:
        """The classifier as one read-out: promotional minus factual weights and bias."""
        weight, bias = self.classifier.weight, self.classifier.bias
        return (weight[1] - weight[0]).detach(), (bias[1] - bias[0]).item()

    def segment_embeddings(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        lengths = attention_mask.sum(dim=1)
        order = torch.argsort(lengths)
        pooled = torch.zeros(len(input_ids), self.config.hidden_size)
        for start in range(0, len(order), self.ENCODER_CHUNK):
            chosen = order[start : start + self.ENCODER_CHUNK]
            width = int(lengths[chosen].max())
            part = self.pooled(input_ids[chosen, :width], attention_mask[chosen, :width])
            pooled = pooled.index_copy(0, chosen, part)
        return pooled

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        segment_document: torch.Tensor,
        segment_position: torch.Tensor,
        labels: torch.Tensor | None = None,
        **_: object,
    ) -> SequenceClassifierOutput:
        pooled = self.dropout(self.segment_embeddings(input_ids, attention_mask))
        own = self.classifier(pooled)
        documents = int(segment_document.max()) + 1
        slots = int(segment_position.max()) + 1
        grid = pooled.new_zeros(documents, slots, pooled.shape[-1])
        present = torch.zeros(documents, slots, dtype=torch.bool)
        grid[segment_document, segment_position] = pooled
        present[segment_document, segment_position] = True
        context = self.context(grid, present)[segment_document, segment_position]
        logits = own[:, 1] - own[:, 0] + context
        loss, two = _soft_cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=two)

    def document_head(self) -> DocumentHead:
        return self.context.to_head(*self.own_readout())

    def encoder(self) -> PromoClassifier:
        """The segment classifier alone (encoder, pooling, classifier; no context), sharing
        this model's weights: what the ONNX export takes."""
        config = classifier_config(self.config)
        encoder = PromoClassifier(config)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("context.")}
        encoder.load_state_dict(state)
        return encoder.eval()


def student_config(
    teacher: BertConfig,
    num_layers: int,
    intermediate_size: int | None,
    context_layers: int = CONTEXT_DEFAULTS["context_layers"],
) -> BertConfig:
    config = classifier_config(teacher, num_layers)
    config.architectures = [HierarchicalClassifier.__name__]
    config.intermediate_size = intermediate_size or teacher.intermediate_size
    for key, value in {**CONTEXT_DEFAULTS, "context_layers": context_layers}.items():
        setattr(config, key, value)
    return config


def collate_documents(items: Sequence[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """A batch of documents (dataset rows with ``segments``, a list of token id lists, and
    ``labels``, one per segment), flattened into segments."""
    rows = [(d, k, ids) for d, item in enumerate(items) for k, ids in enumerate(item["segments"])]
    input_ids, attention_mask = _padded([ids for _, _, ids in rows], pad_id)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "segment_document": torch.tensor([d for d, _, _ in rows]),
        "segment_position": torch.tensor([k for _, k, _ in rows]),
        "labels": torch.tensor([label for item in items for label in item["labels"]]),
    }


def student_from_document_teacher(
    teacher: DocumentClassifier,
    num_layers: int,
    intermediate_size: int | None = None,
    context_layers: int = CONTEXT_DEFAULTS["context_layers"],
) -> HierarchicalClassifier:
    """A :class:`HierarchicalClassifier` whose encoder starts as ``num_layers`` of the
    teacher's layers, taken evenly spread (:func:`training.modeling.student_from_teacher`),
    and whose classifier starts as the teacher's (promotional row; the factual row zero). The
    context starts from scratch."""
    from training.modeling import student_from_teacher

    encoder = student_from_teacher(_as_segment_classifier(teacher), num_layers, intermediate_size)
    student = HierarchicalClassifier(
        student_config(teacher.config, num_layers, encoder.config.intermediate_size, context_layers)
    )
    missing, unexpected = student.load_state_dict(encoder.state_dict(), strict=False)
    if unexpected or any(not name.startswith("context.") for name in missing):
        raise ValueError(f"student and teacher do not fit: {missing}, {unexpected}")
    student.config.student_of_layers = encoder.config.student_of_layers
    return student


def _as_segment_classifier(teacher: DocumentClassifier) -> PromoClassifier:
    """The teacher's encoder and classifier as a :class:`PromoClassifier` (promotional row;
    the factual row zero), the form :func:`training.modeling.student_from_teacher` takes."""
    segment_teacher = PromoClassifier(classifier_config(teacher.config))
    state = {k: v for k, v in teacher.state_dict().items() if not k.startswith("classifier.")}
    weight, bias = teacher.classifier.weight.detach(), teacher.classifier.bias.detach()
    state["classifier.weight"] = torch.cat([torch.zeros_like(weight), weight])
    state["classifier.bias"] = torch.cat([torch.zeros_like(bias), bias])
    segment_teacher.load_state_dict(state)
    return segment_teacher


def document_student_from_teacher(
    teacher: DocumentClassifier, num_layers: int
) -> DocumentClassifier:
    """A smaller :class:`DocumentClassifier`: ``num_layers`` of the teacher's layers, taken
    evenly spread, and its classifier. It reads whole documents as the teacher does, which
    the runtime does not (it encodes each segment alone); see
    :mod:`training.document_student`."""
    from training.modeling import student_from_teacher

    encoder = student_from_teacher(_as_segment_classifier(teacher), num_layers)
    config = BertConfig.from_dict(teacher.config.to_dict())
    config.num_hidden_layers = num_layers
    config.student_of_layers = encoder.config.student_of_layers
    student = DocumentClassifier(config)
    state = {k: v for k, v in encoder.state_dict().items() if k.startswith("bert.")}
    state["classifier.weight"] = teacher.classifier.weight.detach().clone()
    state["classifier.bias"] = teacher.classifier.bias.detach().clone()
    student.load_state_dict(state)
    return student


def window_dataset(
    tokenizer: PreTrainedTokenizerBase, documents: Sequence, targets: Sequence[Sequence[float]]
) -> Dataset:
    """The teacher's training rows: one per window of ``documents`` (corpus documents),
    with one label per segment from ``targets`` (:data:`UNLABELED` for none)."""
    texts = [[segment.text for segment in document.segments] for document in documents]
    return text_window_dataset(tokenizer, texts, targets)


def text_window_dataset(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[Sequence[str]],
    targets: Sequence[Sequence[float]],
) -> Dataset:
    """:func:`window_dataset` for documents given as their segment texts."""
    from datasets import Dataset

    windows = document_windows(tokenizer, texts)
    return Dataset.from_dict(
        {
            "input_ids": [w.input_ids for w in windows],
            "segment_index": [w.segment_index for w in windows],
            "labels": [
                [float(t) for t in targets[w.document][w.first : w.first + w.segments]]
                for w in windows
            ],
            "length": [len(w.input_ids) for w in windows],
        }
    )


def document_dataset(
    tokenizer: PreTrainedTokenizerBase,
    documents: Sequence[Sequence[str]],
    targets: Sequence[Sequence[float]],
    max_length: int,
) -> Dataset:
    """The student's training rows: one per document (a sequence of segment texts), its
    segments tokenized as the runtime tokenizes them, one label per segment."""
    from datasets import Dataset

    segments = [
        tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
        for texts in documents
    ]
    return Dataset.from_dict(
        {
            "segments": segments,
            "labels": [[float(t) for t in row] for row in targets],
            "length": [sum(len(ids) for ids in document) for document in segments],
        }
    )


def gold_targets(documents: Sequence) -> list[list[float]]:
    """Each corpus document's gold labels as targets: 1.0 promotional, 0.0 factual,
    :data:`UNLABELED` for ambiguous segments (context only)."""
    from training.corpus import AMBIGUOUS, PROMOTIONAL

    return [
        [
            UNLABELED if s.label == AMBIGUOUS else float(s.label == PROMOTIONAL)
            for s in document.segments
        ]
        for document in documents
    ]
