"""How far the exported graphs drift from the PyTorch model they came from.

fp32 ONNX must match PyTorch to float rounding (max |Δp| < 1e-4); int8 is compared on F1 at
the same threshold, since quantization is known to cost some German models accuracy
(onnxruntime issue 11286) and must be measured, not assumed. The int8 graph must also score a
text the same alone as inside a padded batch: the service batches strangers' texts together.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.metrics import binary_counts

FP32_TOLERANCE = 1e-4
INT8_MAX_F1_DROP = 0.01
BATCH_TOLERANCE = 1e-5
# texts scored one at a time for the batch check; enough to meet every padding length
BATCH_CHECK_TEXTS = 256


def parity_report(
    model,
    tokenizer,
    fp32: Path,
    int8: Path,
    texts: Sequence[str],
    labels: np.ndarray,
    max_length: int,
    threshold: float = 0.5,
    batch_size: int = 64,
) -> dict:
    """Torch vs fp32 ONNX vs int8 ONNX on the same padded batches of ``texts``."""
    import torch
    from promofilter.model import create_session

    from training.export import onnx_probabilities

    sessions = {"fp32": create_session(fp32, threads=2), "int8": create_session(int8, threads=2)}
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    ordered = [texts[i] for i in order]
    truth = np.asarray(labels)[order] >= 0.5
    model.eval()
    torch_scores, fp32_scores, int8_scores = [], [], []
    for start in range(0, len(ordered), batch_size):
        batch = tokenizer(
            ordered[start : start + batch_size],
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="np",
        )
        with torch.inference_mode():
            logits = model(
                input_ids=torch.from_numpy(batch["input_ids"]),
                attention_mask=torch.from_numpy(batch["attention_mask"]),
            ).logits
        torch_scores.append(torch.softmax(logits.double(), dim=-1)[:, 1].numpy())
        ids, mask = batch["input_ids"], batch["attention_mask"]
        fp32_scores.append(onnx_probabilities(sessions["fp32"], ids, mask))
        int8_scores.append(onnx_probabilities(sessions["int8"], ids, mask))
    reference, exported, quantized = (
        np.concatenate(s) for s in (torch_scores, fp32_scores, int8_scores)
    )
    alone = np.array(
        [
            onnx_probabilities(sessions["int8"], single["input_ids"], single["attention_mask"])[0]
            for single in (
                tokenizer([text], truncation=True, max_length=max_length, return_tensors="np")
                for text in ordered[:: max(1, len(ordered) // BATCH_CHECK_TEXTS)]
            )
        ]
    )
    batched = quantized[:: max(1, len(ordered) // BATCH_CHECK_TEXTS)]
    f1_fp32 = binary_counts(truth, exported >= threshold).f1
    f1_int8 = binary_counts(truth, quantized >= threshold).f1
    return {
        "segments": len(texts),
        "fp32_max_abs_diff": float(np.abs(exported - reference).max()),
        "int8_max_abs_diff": float(np.abs(quantized - exported).max()),
        "f1_torch": binary_counts(truth, reference >= threshold).f1,
        "f1_fp32": f1_fp32,
        "f1_int8": f1_int8,
        "int8_f1_drop": f1_fp32 - f1_int8,
        "int8_alone_vs_batched_max_abs_diff": float(np.abs(alone - batched).max()),
        "threshold": threshold,
    }


def parity_problems(report: dict, check_int8_f1: bool = True) -> list[str]:
    """What in a :func:`parity_report` breaks the export contract (empty when all is well).

    The int8 F1 check is skipped for random smoke-test models, whose F1 means nothing.
    """
    problems = []
    if not report["fp32_max_abs_diff"] < FP32_TOLERANCE:
        problems.append(
            f"fp32 ONNX differs from PyTorch by {report['fp32_max_abs_diff']:.2e} "
            f"(limit {FP32_TOLERANCE:.0e})"
        )
    if check_int8_f1 and report["int8_f1_drop"] > INT8_MAX_F1_DROP:
        problems.append(
            f"int8 loses {report['int8_f1_drop']:.4f} F1 against fp32 (limit {INT8_MAX_F1_DROP})"
        )
    if report["int8_alone_vs_batched_max_abs_diff"] > BATCH_TOLERANCE:
        problems.append(
            f"int8 scores depend on batch mates by up to "
            f"{report['int8_alone_vs_batched_max_abs_diff']:.2e} (limit {BATCH_TOLERANCE:.0e})"
        )
    return problems
