"""An experiment: a small student that reads whole documents, as the teacher does.

The shipped student encodes each segment alone and a small transformer over the segment
vectors adds the context (:class:`training.document_model.HierarchicalClassifier`); it stays
about 2 points of test F1 behind the 12-layer teacher. This distils a student of the
teacher's own kind instead: a few of the teacher's layers over the whole document
(:func:`training.document_model.document_student_from_teacher`), on the build's distillation
targets, and scores it like :mod:`training.ceiling` (threshold by the build's rule on dev).
If it closed the gap, the runtime would have to encode documents as one sequence; it did not
(docs/student-choice.md), so nothing here ships.

    python -m training.document_student --work-dir ~/.cache/promofilter/runs/build-default

The work directory must hold a finished build's teacher and distillation targets
(``distill_teacher-12.json`` for the default 12 variants per document); the student goes
to ``document-reader-<layers>`` beside them, ``-epochs<n>`` added for other than 3 epochs
(3 layers, 3 epochs: 47 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from training.build import (
    TEACHER_DIR,
    BuildConfig,
    _load_tokenizer,
    blend_targets,
)
from training.ceiling import checkpoint_report, write_report
from training.corpus import read_documents


def distil_document_student(config: BuildConfig, layers: int, epochs: float) -> Path:
    """Train (or, if saved, reuse) the ``layers``-layer document-reading student of the
    work directory's teacher; returns its checkpoint directory."""
    from training.document_model import (
        DocumentClassifier,
        collate_windows,
        document_student_from_teacher,
        gold_targets,
        text_window_dataset,
        window_dataset,
    )
    from training.train import run_trainer

    # other epochs get their own directory: a saved student of other epochs is not reused
    name = f"document-reader-{layers}" + (f"-epochs{epochs:g}" if epochs != 3 else "")
    target = config.work_dir / name
    if (target / "config.json").is_file():
        return target
    teacher_dir = config.work_dir / TEACHER_DIR
    for needed in (teacher_dir / "config.json", config.distill_file):
        if not needed.is_file():
            raise FileNotFoundError(
                f"{needed} is missing: run `python -m training build-default --work-dir "
                f"{config.work_dir}` first"
            )
    teacher = DocumentClassifier.from_pretrained(teacher_dir, local_files_only=True)
    tokenizer = _load_tokenizer(teacher_dir)
    data = json.loads(config.distill_file.read_text())
    targets = blend_targets(data["gold"], data["teacher"], config.distill_gold_weight)
    train = text_window_dataset(tokenizer, data["texts"], targets)
    dev_documents = read_documents(config.dev)
    dev = window_dataset(tokenizer, dev_documents, gold_targets(dev_documents))
    args = config.fine_tune_args(name, epochs, config.student_learning_rate)
    collator = partial(collate_windows, pad_id=tokenizer.pad_token_id)
    student = document_student_from_teacher(teacher, layers)
    student = run_trainer(student, train, dev, collator, args, remove_unused_columns=False)
    student.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.document_student",
        description="Distil a few of the teacher's layers over whole documents and give its "
        "segment F1 on dev, test and the hard subset.",
    )
    defaults = BuildConfig()
    parser.add_argument("--work-dir", type=Path, default=defaults.work_dir)
    parser.add_argument("--layers", type=int, default=defaults.student_layers)
    parser.add_argument("--epochs", type=float, default=defaults.student_epochs)
    parser.add_argument("--report", type=Path, help="also write the figures here as JSON")
    parser.add_argument("--smoke", action="store_true", help="a few steps, for the tests")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = BuildConfig(work_dir=args.work_dir, progress=not args.quiet)
    if args.smoke:
        config = BuildConfig.for_smoke(args.work_dir, config.output, config.base_model)
    try:
        student = distil_document_student(config, args.layers, args.epochs)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    write_report({**checkpoint_report(student, config), "student": str(student)}, args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
