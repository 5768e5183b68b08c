"""Export a ``PromoClassifier`` to ONNX and quantize it to int8.

The graph takes ``input_ids`` and ``attention_mask`` (int64, ``[batch, sequence]``, both axes
dynamic) and returns ``logits`` (float32, ``[batch, 2]``): the contract the runtime reads.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from promofilter.model import softmax

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "logits"
OPSET = 18


def export_onnx(model, path: str | Path, vocab_size: int | None = None) -> Path:
    """Write ``model`` as a single-file fp32 ONNX graph with dynamic batch and sequence axes."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    vocab_size = vocab_size or model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    # batch 2 x length 7: distinct sizes so neither axis is specialised to a constant
    example = (
        torch.randint(4, vocab_size, (2, 7), generator=generator),
        torch.ones(2, 7, dtype=torch.int64),
    )
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    axes = {"input_ids": {0: batch, 1: sequence}, "attention_mask": {0: batch, 1: sequence}}
    # the exporter logs each pass at INFO; keep the build output readable
    logging.getLogger("torch.onnx").setLevel(logging.WARNING)
    wrapper = LogitsOnly(model).eval()
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            example,
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_shapes=axes,
            opset_version=OPSET,
            dynamo=True,
            external_data=False,  # one self-contained file
            verbose=False,
        )
    return path


def quantize_int8(source: str | Path, target: str | Path, per_channel: bool = True) -> Path:
    """Dynamic int8 quantization of the weights (activations stay float, scaled per batch)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = Path(target)
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=per_channel)
    return target


def onnx_probabilities(session, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """P(promotional) from an exported graph for one padded batch."""
    feed = {
        "input_ids": input_ids.astype(np.int64),
        "attention_mask": attention_mask.astype(np.int64),
    }
    return softmax(session.run([OUTPUT_NAME], feed)[0])[:, 1]
