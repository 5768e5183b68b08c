"""What the shipped head makes of another encoder: the quality ceiling of a checkpoint.

The shipped model is a small student under a head fitted on its embeddings (the context
head averaged with the character n-gram head, weight and threshold chosen on dev). This
puts any PyTorch checkpoint of the build (the 12-layer teacher, a student) under the same
head, fitted the same way on the same data, and scores dev, test and the hard subset. The
teacher's figure is what distillation aims at: the gap to the shipped student is what a
larger or better distilled student could still win, the gap to the target is what it
cannot.

    python -m training.ceiling --encoder ~/.cache/promofilter/runs/build-default/teacher

The encoder runs in fp32 PyTorch (the 12-layer teacher takes about 15 minutes on 2 cores
for the train split and its generated variants).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.build import BuildConfig, _load_tokenizer, _train_documents, choose_char_ngram_weight
from training.context import DEFAULT_C, document_rows, fit_context_head_on_rows, fit_targets
from training.corpus import Document, read_documents
from training.lexical import fit_char_ngrams
from training.metrics import binary_counts
from training.train import dev_metrics


class TorchEncoder:
    """A PyTorch ``PromoClassifier`` with the runtime's ``embed``: mean-pooled embeddings,
    batches sorted by length."""

    def __init__(self, directory: str | Path, max_length: int = 128, batch_size: int = 32):
        from training.modeling import PromoClassifier

        self.model = PromoClassifier.from_pretrained(directory, local_files_only=True).eval()
        self.tokenizer = _load_tokenizer(Path(directory))
        self.max_length = max_length
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        order = np.argsort([len(text) for text in texts], kind="stable")
        rows = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chosen = order[start : start + self.batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in chosen],
                    truncation=True,
                    max_length=self.max_length,
                    padding=True,
                    return_tensors="pt",
                )
                pooled = self.model.pooled(batch["input_ids"], batch["attention_mask"])
                rows[chosen] = pooled.float().numpy()
        return rows


def _segment_targets(documents: Sequence[Document]) -> tuple[np.ndarray, np.ndarray]:
    """Over all segments: which carry a gold label, and whether each is promotional."""
    known, target = fit_targets(documents, "an evaluation")
    promotional = np.zeros(len(known), dtype=bool)
    promotional[known] = target
    return known, promotional


def head_ceiling(
    encoder,
    train: Sequence[Document],
    dev: Sequence[Document],
    evaluations: dict[str, Sequence[Document]],
    precision_target: float,
) -> dict:
    """Fit the shipped kind of head on ``encoder``'s embeddings of ``train``, choose the
    n-gram weight and the threshold on ``dev`` as the build does, and give segment F1 on
    dev and on each of ``evaluations``, every segment scored in its document."""
    embedding_head = fit_context_head_on_rows(document_rows(encoder, train), train, c=DEFAULT_C)
    lexical, lexical_head = fit_char_ngrams(train)

    def rows(documents: Sequence[Document]) -> list[np.ndarray]:
        embeddings = document_rows(encoder, documents)
        read_outs = [lexical.rows([s.text for s in d.segments]) for d in documents]
        return [np.hstack(parts) for parts in zip(embeddings, read_outs, strict=True)]

    def scores(head, rows_by_document: list[np.ndarray]) -> np.ndarray:
        # the embedding head alone (weight 0) reads the embedding columns only
        width = head.dim
        return np.concatenate([head.in_document(r[:, :width]) for r in rows_by_document])

    dev_rows = rows(dev)
    dev_known, dev_truth = _segment_targets(dev)
    dev_labels = dev_truth[dev_known].astype(float)
    head, weight, _ = choose_char_ngram_weight(
        embedding_head,
        lexical_head,
        dev_rows,
        dev_labels,
        dev_known,
        precision_target,
    )
    chosen = dev_metrics(dev_labels, scores(head, dev_rows)[dev_known], precision_target)
    report = {
        "char_ngram_weight": weight,
        "threshold": round(float(chosen["threshold"]), 6),
        "dev": {"f1": round(chosen["f1"], 4), "segments": int(dev_known.sum())},
    }
    for name, documents in evaluations.items():
        known, truth = _segment_targets(documents)
        found = scores(head, rows(documents))
        counts = binary_counts(truth[known], found[known] >= chosen["threshold"])
        report[name] = {
            "f1": round(counts.f1, 4),
            "precision": round(counts.precision, 4),
            "recall": round(counts.recall, 4),
            "segments": int(known.sum()),
        }
    return report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.ceiling",
        description="Segment F1 of the shipped kind of head over a PyTorch checkpoint.",
    )
    parser.add_argument("--encoder", type=Path, required=True, help="a build's checkpoint dir")
    parser.add_argument("--report", type=Path, help="also write the figures here as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.encoder / "config.json").is_file():
        print(f"error: {args.encoder}: no config.json, not a checkpoint directory", file=sys.stderr)
        return 2
    config = BuildConfig(progress=False)
    report = head_ceiling(
        TorchEncoder(args.encoder, config.max_length),
        _train_documents(config, config.generated_per_document, 13),
        read_documents(config.dev),
        {"test": read_documents(config.test), "test-hard": read_documents(config.test_hard)},
        config.precision_target,
    )
    report["encoder"] = str(args.encoder)
    text = json.dumps(report, indent=2)
    print(text)
    if args.report:
        args.report.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
