"""training.ceiling: the teacher's own figures, at the build's dev threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="needs the 'train' extra")

from training.ceiling import ceiling, main, teacher_scorer
from training.corpus import PROMOTIONAL, read_documents
from training.evaluate import SPLITS_DIR


@pytest.fixture(scope="module")
def splits():
    return {name: read_documents(SPLITS_DIR / f"{name}.jsonl")[:25] for name in ("dev", "test")}


def oracle(noise: float):
    """Scores each segment by its gold label, blurred by ``noise``."""
    random = np.random.default_rng(0)

    def score(documents):
        return [
            np.array(
                [
                    (1 - noise) * (s.label == PROMOTIONAL) + noise * random.random()
                    for s in d.segments
                ]
            )
            for d in documents
        ]

    return score


def test_a_teacher_that_knows_the_labels_reaches_f1_one(splits) -> None:
    report = ceiling(oracle(0.0), splits["dev"], {"test": splits["test"]}, 0.9)
    assert report["dev"]["f1"] == report["test"]["f1"] == 1.0
    labelled = sum(s.label != "ambiguous" for d in splits["test"] for s in d.segments)
    assert report["test"]["segments"] == labelled


def test_a_teacher_of_noise_scores_lower(splits) -> None:
    informed = ceiling(oracle(0.2), splits["dev"], {"test": splits["test"]}, 0.9)
    blind = ceiling(oracle(1.0), splits["dev"], {"test": splits["test"]}, 0.9)
    assert blind["test"]["f1"] < informed["test"]["f1"]
    assert 0.0 <= blind["threshold"] <= 1.0


def test_the_smoke_builds_teacher_scores_every_segment(smoke_build: Path, splits) -> None:
    score = teacher_scorer(smoke_build / "work" / "document-teacher")
    scores = score(splits["test"][:3])
    assert [len(s) for s in scores] == [len(d.segments) for d in splits["test"][:3]]
    assert all(((s >= 0) & (s <= 1)).all() for s in scores)


def test_main_refuses_a_directory_without_a_checkpoint(tmp_path: Path, capsys) -> None:
    assert main(["--teacher", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err
