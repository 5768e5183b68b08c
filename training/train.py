"""Fine-tuning and distillation with the transformers ``Trainer`` on CPU.

Targets are P(promotional): gold labels (0/1) for fine-tuning a teacher, a blend of gold
labels and the teacher's probabilities for distilling a student. Each run keeps its
checkpoints in a run directory outside the repository and resumes from the last one when
started again with the same directory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.metrics import (
    average_precision,
    best_f1_threshold,
    binary_counts,
    threshold_for_precision,
)

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel

DEFAULT_RUNS_DIR = Path("~/.cache/promofilter/runs").expanduser()
# parameters whose names start with this take FineTuneArgs.head_learning_rate
HEAD_PREFIX = "context."


@dataclass
class FineTuneArgs:
    """Settings of one Trainer run; the build's stages set theirs
    (:meth:`training.build.BuildConfig.fine_tune_args`)."""

    run_dir: Path
    epochs: float = 3.0
    batch_size: int = 32
    eval_batch_size: int = 64
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.06
    max_length: int = 128
    seed: int = 13
    patience: int = 1
    freeze_word_embeddings: bool = False  # about 2x faster steps; keeps pretrained pieces
    # a learning rate of its own for the parameters under ``context.`` (a head trained from
    # scratch beside a pretrained encoder); None: the one learning rate for all
    head_learning_rate: float | None = None
    max_steps: int = -1  # > 0 caps the run (smoke tests)
    progress: bool = True

    def to_json(self) -> dict:
        return {**asdict(self), "run_dir": str(self.run_dir)}


def dev_metrics(labels: np.ndarray, scores: np.ndarray, precision_target: float) -> dict:
    truth = labels >= 0.5
    threshold = threshold_for_precision(truth, scores, precision_target)
    counts = binary_counts(truth, scores >= threshold)
    return {
        "pr_auc": average_precision(truth, scores),
        "best_f1": best_f1_threshold(truth, scores)[1],
        "threshold": threshold,
        "precision": counts.precision,
        "recall": counts.recall,
        "f1": counts.f1,
    }


class TrainingCollapsed(RuntimeError):
    """The training loss stayed at the entropy of the base rate: the model learned to guess
    the share of promotional segments and nothing else (see :class:`CollapseGuard`)."""


def base_rate_loss(targets: Sequence[Sequence[float]]) -> float:
    """The binary cross-entropy of always predicting the share of promotional labels among
    ``targets`` (per document, negative for unlabelled segments)."""
    known = [label for labels in targets for label in labels if label >= 0]
    share = min(max(float(np.mean(known)), 1e-6), 1 - 1e-6)
    return -(share * math.log(share) + (1 - share) * math.log(1 - share))


class CollapseGuard:
    """Raises :class:`TrainingCollapsed` (:meth:`observe`) at the first training loss logged
    from ``check_at`` epochs on if the mean loss logged since ``since`` epochs is still at
    least ``share`` of ``base_loss`` (:func:`base_rate_loss`). Healthy teacher runs were at
    0.39-0.47 there against a base-rate loss of 0.65, collapsed ones at 0.61-0.67
    (docs/student-choice.md), so a collapse costs a third of an epoch instead of two."""

    def __init__(
        self, base_loss: float, since: float = 0.2, check_at: float = 0.4, share: float = 0.85
    ) -> None:
        self.base_loss, self.since, self.check_at, self.share = base_loss, since, check_at, share
        self.losses: list[float] = []
        self.checked = False

    def observe(self, epoch: float, loss: float) -> None:
        if self.checked:
            return
        if epoch >= self.since:
            self.losses.append(float(loss))
        if epoch >= self.check_at and self.losses:
            self.checked = True
            mean = float(np.mean(self.losses))
            if mean >= self.share * self.base_loss:
                raise TrainingCollapsed(
                    f"mean training loss {mean:.3f} from epoch {self.since} to {epoch:.2f}, "
                    f"against {self.base_loss:.3f} for guessing the base rate"
                )


def run_trainer(
    model: PreTrainedModel,
    train: Dataset,
    dev: Dataset,
    collator: Callable[[list[dict]], dict],
    args: FineTuneArgs,
    remove_unused_columns: bool = True,
    collapse_guard: CollapseGuard | None = None,
) -> PreTrainedModel:
    """The Trainer run behind the document models' training (teacher and student; see
    :mod:`training.document_model`): ``train`` and ``dev`` are datasets with a ``length``
    column (tokens, for batches of like length) that ``collator`` turns into the model's
    inputs, ``labels`` among them (P(promotional), or below 0 for a segment that is not
    scored). Early stopping on dev PR-AUC; returns the best model."""
    from promofilter.model import softmax
    from transformers import (
        EarlyStoppingCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    class _GuardCallback(TrainerCallback):
        def __init__(self, guard: CollapseGuard) -> None:
            self.guard = guard

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs and state.epoch is not None:
                self.guard.observe(state.epoch, logs["loss"])

    from transformers.trainer_utils import get_last_checkpoint

    set_seed(args.seed)
    if args.freeze_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    args.run_dir.mkdir(parents=True, exist_ok=True)
    (args.run_dir / "fine_tune_args.json").write_text(json.dumps(args.to_json(), indent=2))

    def compute_metrics(prediction) -> dict:
        probabilities = softmax(prediction.predictions)
        # label_ids, not the dataset's labels: the evaluation loop need not keep its order
        labels = np.asarray(prediction.label_ids).reshape(-1)
        scored = labels >= 0
        return {"pr_auc": average_precision(labels[scored] >= 0.5, probabilities[scored, 1])}

    steps_per_epoch = math.ceil(len(train) / args.batch_size)
    training_args = TrainingArguments(
        output_dir=str(args.run_dir),
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup,
        eval_strategy="epoch" if args.max_steps <= 0 else "steps",
        save_strategy="epoch" if args.max_steps <= 0 else "steps",
        eval_steps=max(args.max_steps, 1) if args.max_steps > 0 else None,
        save_steps=max(args.max_steps, 1) if args.max_steps > 0 else None,
        load_best_model_at_end=True,
        metric_for_best_model="pr_auc",
        greater_is_better=True,
        save_total_limit=2,
        train_sampling_strategy="group_by_length",
        logging_steps=max(1, min(50, steps_per_epoch // 4)),
        seed=args.seed,
        data_seed=args.seed,
        use_cpu=True,
        report_to="none",
        disable_tqdm=not args.progress,
        dataloader_num_workers=0,
        remove_unused_columns=remove_unused_columns,
    )

    class _Trainer(Trainer):
        def create_optimizer(self, model=None):
            if args.head_learning_rate is None:
                return super().create_optimizer()
            import torch

            decayed = set(self.get_decay_parameter_names(self.model))
            groups = []
            for in_head in (False, True):
                for decay in (True, False):
                    chosen = [
                        parameter
                        for name, parameter in self.model.named_parameters()
                        if parameter.requires_grad
                        and name.startswith(HEAD_PREFIX) == in_head
                        and (name in decayed) == decay
                    ]
                    rate = args.head_learning_rate if in_head else args.learning_rate
                    weight_decay = args.weight_decay if decay else 0.0
                    groups.append({"params": chosen, "lr": rate, "weight_decay": weight_decay})
            self.optimizer = torch.optim.AdamW(groups, lr=args.learning_rate)
            return self.optimizer

    trainer = _Trainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=dev,
        data_collator=collator,
        compute_metrics=compute_metrics,
        callbacks=[
            EarlyStoppingCallback(early_stopping_patience=args.patience),
            *([_GuardCallback(collapse_guard)] if collapse_guard else []),
        ],
    )
    trainer.train(resume_from_checkpoint=get_last_checkpoint(str(args.run_dir)))
    return trainer.model
