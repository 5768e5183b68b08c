"""Export a ``PromoClassifier`` to ONNX and quantize it to int8.

The graph takes ``input_ids`` and ``attention_mask`` (int64, ``[batch, sequence]``, both axes
dynamic) and returns ``logits`` (float32, ``[batch, 2]``) and ``embeddings`` (the pooled
encoder output, ``[batch, hidden]``, which a context head reads): the contract the runtime
reads.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from promofilter.model import softmax

if TYPE_CHECKING:
    from training.modeling import PromoClassifier

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "logits"
EMBEDDINGS_NAME = "embeddings"
OPSET = 18
# the BERT feed-forward block as torch names it: ``intermediate.dense``, then ``output.dense``
FEED_FORWARD_PARTS = ("intermediate", "output")


def export_onnx(model: PromoClassifier, path: str | Path) -> Path:
    """Write ``model`` as a single-file fp32 ONNX graph with dynamic batch and sequence axes."""
    import torch

    class LogitsAndEmbeddings(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            pooled = self.inner.pooled(input_ids, attention_mask)
            return self.inner.classifier(pooled), pooled

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    vocab_size = model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    # batch 2 x length 7: distinct sizes so neither axis is specialised to a constant
    example = (
        torch.randint(4, vocab_size, (2, 7), generator=generator),
        torch.ones(2, 7, dtype=torch.int64),
    )
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    wrapper = LogitsAndEmbeddings(model).eval()
    # Eager attention through the TorchScript exporter: on the shipped 3-layer student its
    # static-int8 graph scored the test split at a median 299 segments/s against 272 for
    # SDPA through the dynamo exporter (best 396 against 348; 20 interleaved rounds, ONNX
    # Runtime only, 2 threads); eager attention through the dynamo exporter gave 288.
    # The SDPA export builds its mask with IsNaN/Where per layer.
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the tracer warns that the mask's padding check is fixed at trace time; it holds
            # for every shape because the mask always has the sequence's own length
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            # the mask's indices are never negative, the case this warning is about
            warnings.filterwarnings("ignore", "Exporting aten::index", UserWarning)
            torch.onnx.export(
                wrapper,
                example,
                str(path),
                input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME, EMBEDDINGS_NAME],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
                verbose=False,
            )
    finally:
        model.set_attn_implementation(previous)
    return path


def calibration_feeds(
    tokenizer, texts: Sequence[str], max_length: int, batch_size: int = 32
) -> list[dict[str, np.ndarray]]:
    """Padded ``input_ids``/``attention_mask`` batches of ``texts`` for static calibration."""
    feeds = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            list(texts[start : start + batch_size]),
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="np",
        )
        feeds.append({name: batch[name].astype(np.int64) for name in INPUT_NAMES})
    return feeds


def quantize_int8(
    source: str | Path,
    target: str | Path,
    calibration: Sequence[dict[str, np.ndarray]],
    float_feed_forward_layers: Sequence[int] = (0,),
) -> Path:
    """Static int8 quantization: per-channel int8 weights, uint8 activations with fixed scales.

    Static rather than dynamic: dynamic quantization derives each activation scale from the
    whole batch tensor, padding included, so a text's score moved by up to 0.17 with its batch
    mates. With scales calibrated once on ``calibration``, every row is computed on its own
    and a score no longer depends on what it is batched with.

    The feed-forward MatMuls of the encoder layers in ``float_feed_forward_layers`` stay fp32:
    the first layer's are where quantization error entered the student trained on 569
    documents (int8 lost 2.0 F1 points on test, 0.8 on dev; with its two feed-forward
    MatMuls in fp32, none on either, max |dp| 0.21 instead of 0.96, for 3.6 MB more and
    about 10% of the encoder's throughput). Its attention MatMuls in fp32 did not help.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.remaining = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.remaining, None)

    target = Path(target)
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(target),
            Feeds(),
            # QOperator ran 6% faster than QDQ here, with the same F1
            quant_format=QuantFormat.QOperator,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            # the encoder's matrices and the embedding table: the bulk of the size and time
            op_types_to_quantize=["MatMul", "Gather"],
            # percentile calibration fails on batches of different lengths; min-max does not
            calibrate_method=CalibrationMethod.MinMax,
            # attention's activation-by-activation products stay float: quantizing them too
            # moved the seed article's teaser from 0.94 (fp32) to 0.49, and was not faster
            nodes_to_exclude=_activation_matmuls(prepared)
            + _feed_forward_matmuls(prepared, float_feed_forward_layers),
        )
    return target


def _activation_matmuls(path: Path) -> list[str]:
    """Names of the MatMul nodes that multiply two activations (no weight among the inputs)."""
    import onnx

    graph = onnx.load(str(path)).graph
    weights = {initializer.name for initializer in graph.initializer}
    return [
        node.name
        for node in graph.node
        if node.op_type == "MatMul" and not weights.intersection(node.input)
    ]


def _feed_forward_matmuls(path: Path, layers: Sequence[int]) -> list[str]:
    """Names of the two feed-forward MatMuls (``intermediate`` and ``output``) of each of
    the encoder ``layers``; a layer without both is an error, so that a change in the
    exported node names cannot silently quantize them after all."""
    import onnx

    names = [node.name for node in onnx.load(str(path)).graph.node if node.op_type == "MatMul"]
    found = []
    for layer in layers:
        wanted = [f"/encoder/layer.{layer}/{part}/dense/MatMul" for part in FEED_FORWARD_PARTS]
        matches = [name for name in names if any(name.endswith(w) for w in wanted)]
        if len(matches) != len(wanted):
            raise ValueError(
                f"{path}: expected the MatMuls {wanted} of encoder layer {layer}, "
                f"found {matches}; MatMul nodes: {names}"
            )
        found += matches
    return found


def onnx_probabilities(session, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """P(promotional) from an exported graph for one padded batch."""
    feed = {
        "input_ids": input_ids.astype(np.int64),
        "attention_mask": attention_mask.astype(np.int64),
    }
    return softmax(session.run([OUTPUT_NAME], feed)[0])[:, 1]
