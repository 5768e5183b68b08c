"""Regenerate the committed baseline reports under ``training/reports/``.

    python -m training.baseline_reports

Evaluates the keyword and TF-IDF baselines on the test split, the hard test
subset and the seed article (``../shared/seed-article.txt``, lines 16-18
promotional), writes one report directory per pair, and an index with the
headline figures. The TF-IDF model is fitted once (train plus generated
variants, tuned on dev); refitting is deterministic and takes seconds.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

from training.baselines import KeywordBaseline
from training.corpus import document_from_text, read_documents, sha256_file, write_documents
from training.evaluate import SPLITS_DIR, evaluate, fit_tfidf, write_report

REPORTS_DIR = Path(__file__).parent / "reports"
SEED_ARTICLE = Path(__file__).resolve().parents[1].parent / "shared" / "seed-article.txt"
SEED_PROMOTIONAL_LINES = {16, 17, 18}


def evaluation_sets(seed_article: Path, scratch: Path) -> dict[str, tuple[Path, str, Path]]:
    """name -> (corpus file to evaluate, label for the report, file whose sha256 is reported)."""
    seed = document_from_text(
        seed_article.read_text(encoding="utf-8"),
        SEED_PROMOTIONAL_LINES,
        doc_id="seed-article",
        source="../shared/seed-article.txt",
    )
    seed_file = scratch / "seed-article.jsonl"
    write_documents(seed_file, [seed])
    test, hard = SPLITS_DIR / "test.jsonl", SPLITS_DIR / "test-hard.jsonl"
    return {
        "test": (test, "training/data/splits/test.jsonl", test),
        "test-hard": (hard, "training/data/splits/test-hard.jsonl", hard),
        "seed": (seed_file, "../shared/seed-article.txt (lines 16-18 promotional)", seed_article),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.baseline_reports", description=__doc__
    )
    parser.add_argument("--seed-article", type=Path, default=SEED_ARTICLE)
    parser.add_argument("--output", type=Path, default=REPORTS_DIR)
    args = parser.parse_args(argv)

    tfidf = fit_tfidf(SPLITS_DIR / "train.jsonl", SPLITS_DIR / "dev.jsonl")
    args.output.mkdir(parents=True, exist_ok=True)
    models = {"keyword": KeywordBaseline(), "tfidf": tfidf}
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for data_name, (path, label, origin) in evaluation_sets(
            args.seed_article, Path(scratch)
        ).items():
            documents = read_documents(path)
            for model_name, model in models.items():
                report, scored = evaluate(model, documents)
                report.update(model=model_name, data=label, data_sha256=sha256_file(origin))
                write_report(report, scored, args.output / f"{model_name}-{data_name}")
                rows.append((model_name, data_name, report))
    (args.output / "README.md").write_text(_index(rows, tfidf.params), encoding="utf-8")
    for model_name, data_name, report in rows:
        segment = report["segment"]
        print(
            f"{model_name:8} {data_name:10} F1 {segment['f1']:.3f}  PR-AUC {segment['pr_auc']:.3f}"
        )
    return 0


def _index(rows: list[tuple[str, str, dict]], tfidf_params: dict) -> str:
    lines = [
        "# Baseline reports",
        "",
        "Made by `python -m training.baseline_reports` (keyword list and TF-IDF + logistic "
        "regression; see `training/baselines.py`). Each directory holds report.md, report.json, "
        "a PR curve and a confusion matrix. Headline figures leave out ambiguous segments.",
        "",
        f"TF-IDF: C = {tfidf_params['C']}, threshold tuned on dev "
        f"(dev F1 {tfidf_params['dev_f1']:.3f}, dev PR-AUC "
        f"{tfidf_params['dev_average_precision']:.3f}).",
        "",
        "| model | data | segments | precision | recall | F1 | PR-AUC | ECE | doc acc. "
        "| char F1 | factual chars removed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model_name, data_name, report in rows:
        s, c = report["segment"], report["characters"]
        lines.append(
            f"| [{model_name}]({model_name}-{data_name}/report.md) | {data_name} | {s['segments']} "
            f"| {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['pr_auc']:.3f} "
            f"| {s['ece']:.3f} | {report['document']['accuracy']:.3f} | {c['f1']:.3f} "
            f"| {c['factual_removed_share']:.2%} |"
        )
    lines += ["", "Data sha256:", ""]
    seen = set()
    for _, _, report in rows:
        if report["data"] not in seen:
            seen.add(report["data"])
            lines.append(f"- `{report['data']}`: `{report['data_sha256']}`")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
