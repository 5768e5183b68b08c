"""Corpus files as Hugging Face ``datasets``, one row per segment.

Each file is first checked by :func:`training.corpus.read_documents`, so a
malformed file fails with ``file:line: field: reason`` instead of an Arrow
error deep inside ``datasets``. The ``label`` column is a ``ClassLabel``
(0 = factual, 1 = promotional); ambiguous segments are left out unless asked
for, in which case they carry label -1.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from training.corpus import AMBIGUOUS, LABELS, read_documents


def segment_features():
    from datasets import ClassLabel, Features, Value

    return Features(
        {
            "doc_id": Value("string"),
            "index": Value("int32"),
            "text": Value("string"),
            "label": ClassLabel(names=list(LABELS)),
            "kind": Value("string"),
            "style": Value("string"),
        }
    )


def load_segments(paths: str | Path | Sequence[str | Path], include_ambiguous: bool = False):
    """Load corpus JSONL file(s) with ``load_dataset("json", ...)`` as a segment dataset."""
    from datasets import load_dataset

    files = [str(p) for p in ([paths] if isinstance(paths, str | Path) else paths)]
    for path in files:
        read_documents(path)  # raises CorpusError naming file and line
    documents = load_dataset("json", data_files=files, split="train")

    def flatten(batch: dict) -> dict:
        rows: dict[str, list] = {name: [] for name in segment_features()}
        styles = batch.get("style") or [None] * len(batch["id"])
        for doc_id, style, segments in zip(batch["id"], styles, batch["segments"], strict=True):
            for index, segment in enumerate(segments):
                if segment["label"] == AMBIGUOUS and not include_ambiguous:
                    continue
                rows["doc_id"].append(doc_id)
                rows["index"].append(index)
                rows["text"].append(segment["text"])
                label = segment["label"]
                rows["label"].append(-1 if label == AMBIGUOUS else LABELS.index(label))
                rows["kind"].append(segment.get("kind"))
                rows["style"].append(style)
        return rows

    return documents.map(
        flatten,
        batched=True,
        remove_columns=documents.column_names,
        features=segment_features(),
        desc="segments",
    )
