"""Runtime benchmark: import time, load time, throughput of predict_proba and analyze, peak RSS.

    python -m benchmarks.runtime                       # the shipped model, the test split
    python -m benchmarks.runtime --model DIR --no-write

Scores the segment texts of ``training/data/splits/test.jsonl`` with ``predict_proba`` and its
documents (segments joined by blank lines, as in the corpus) with ``analyze``, prints the
figures and replaces the runtime section of ``docs/benchmarks.md``. Speed and memory are
measured here, never in unit tests. The process imports only the runtime (no training code),
so its peak RSS is what scoring costs; the budget is 250 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.report import write_section

REPO = Path(__file__).resolve().parents[1]


def shown(path: Path) -> str:
    """``path`` relative to the repository where it lies inside, for the reports."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


DEFAULT_DATA = REPO / "training" / "data" / "splits" / "test.jsonl"
DEFAULT_REPORT = REPO / "docs" / "benchmarks.md"
RSS_BUDGET_MB = 250


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def import_seconds(repeat: int = 5) -> float:
    """Median wall time of ``import promofilter`` in a fresh interpreter."""
    probe = (
        "import time; t = time.perf_counter(); import promofilter; print(time.perf_counter() - t)"
    )
    times = [
        float(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             check=True).stdout)
        for _ in range(repeat)
    ]  # fmt: skip
    return statistics.median(times)


def read_split(path: Path) -> tuple[list[str], list[str]]:
    """Segment texts and whole documents of a corpus file (the corpus layout, no training code)."""
    from promofilter import join_segments

    segments, documents = [], []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                texts = [segment["text"] for segment in json.loads(line)["segments"]]
                segments.extend(texts)
                documents.append(join_segments(texts)[0])
    return segments, documents


def timed(
    run: Callable[[], object], repeats: int, warm_up: Callable[[], object] | None = None
) -> list[float]:
    """The durations of ``repeats`` runs after one warm-up (``run`` itself by default):
    session initialisation, allocator, tokenizer caches."""
    (warm_up or run)()
    durations = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        durations.append(time.perf_counter() - started)
    return durations


def best_seconds(function: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` timed runs after one warm-up run."""
    return min(timed(function, repeat))


def measure(args: argparse.Namespace) -> dict:
    load_average = os.getloadavg()[0]
    started = time.perf_counter()
    import promofilter

    imported = time.perf_counter() - started
    started = time.perf_counter()
    model = promofilter.load(
        args.model,
        threads=args.threads,
        batch_size=args.batch_size,
        max_batch_tokens=args.max_batch_tokens,
    )
    load_seconds = time.perf_counter() - started
    rss_loaded = peak_rss_mb()

    segments, documents = read_split(args.data)
    predict = best_seconds(lambda: model.predict_proba(segments), args.repeat)
    analyze = best_seconds(lambda: model.analyze_many(documents), args.repeat)
    one_by_one = best_seconds(lambda: [model.analyze(d) for d in documents], 1)
    import onnxruntime

    config = model.config.raw
    return {
        "model": config.get("name", model.path.name),
        "model_path": str(model.path),
        "model_sha256": config.get("model_sha256", "")[:12],
        "model_mb": (model.path / "model.onnx").stat().st_size / 1e6,
        "architecture": config.get("architecture", {}),
        "threshold": model.threshold,
        "data": shown(args.data),
        "segments": len(segments),
        "documents": len(documents),
        "characters": sum(map(len, segments)),
        "threads": model.threads,
        "batch_size": model.batch_size,
        "max_batch_tokens": model.max_batch_tokens,
        "import_seconds_in_process": imported,
        "import_seconds": import_seconds(),
        "load_seconds": load_seconds,
        "predict_seconds": predict,
        "segments_per_second": len(segments) / predict,
        "characters_per_second": sum(map(len, segments)) / predict,
        "analyze_seconds": analyze,
        "documents_per_second": len(documents) / analyze,
        "documents_per_second_one_by_one": len(documents) / one_by_one,
        "rss_after_load_mb": rss_loaded,
        "peak_rss_mb": peak_rss_mb(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "cpus": os.cpu_count(),
        "load_average": load_average,
        "date": time.strftime("%Y-%m-%d"),
    }


def markdown(figures: dict) -> str:
    architecture = figures["architecture"]
    shape = (
        f"{architecture.get('layers', '?')} layers, hidden size "
        f"{architecture.get('hidden_size', '?')}, "
        if architecture
        else ""
    )
    verdict = "within" if figures["peak_rss_mb"] <= RSS_BUDGET_MB else "**over**"
    smoke = (
        "\n> These figures come from the tiny random smoke-test model, not the shipped one: "
        "rerun the script once `models/default` holds the real model.\n"
        if figures.get("smoke")
        else ""
    )
    return f"""## Runtime: `python -m benchmarks.runtime`

Measured {figures["date"]} on {figures["cpus"]} CPU cores (1-minute load average
{figures["load_average"]:.1f} when the run began), Python {figures["python"]},
onnxruntime {figures["onnxruntime"]}, {figures["threads"]} threads, batch size
{figures["batch_size"]} (at most {figures["max_batch_tokens"]} tokens). Model `{figures["model"]}` ({shape}{figures["model_mb"]:.1f} MB
`model.onnx`, sha256 `{figures["model_sha256"]}…`), data `{figures["data"]}`:
{figures["segments"]} segments ({figures["characters"]:,} characters) in
{figures["documents"]} documents. Throughput is the best of the timed runs after a warm-up.
{smoke}
| figure | value |
|---|---|
| `import promofilter` (fresh interpreter, median of 5) | {figures["import_seconds"]:.3f} s |
| `promofilter.load()` (sha256 check, session, tokenizer) | {figures["load_seconds"]:.2f} s |
| `predict_proba`, all segments in one call | {figures["segments_per_second"]:,.0f} segments/s ({figures["characters_per_second"]:,.0f} characters/s) |
| `analyze_many`, all documents in one call | {figures["documents_per_second"]:,.1f} documents/s |
| `analyze`, one document at a time | {figures["documents_per_second_one_by_one"]:,.1f} documents/s |
| peak RSS of the scoring process | {figures["peak_rss_mb"]:.0f} MB ({verdict} the {RSS_BUDGET_MB} MB budget) |
| RSS after loading the model | {figures["rss_after_load_mb"]:.0f} MB |
"""  # noqa: E501


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.runtime", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model", type=Path, help="model directory (default: the shipped one)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="corpus JSONL file")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per figure")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-batch-tokens", type=int, default=1024)
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT, help="Markdown file")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--smoke", action="store_true", help="label the figures as the smoke-test model's"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    figures = measure(args)
    figures["smoke"] = args.smoke
    print(json.dumps(figures, indent=2))
    if not args.no_write:
        write_section("runtime", markdown(figures), args.report)
        print(f"wrote the runtime section of {args.report}", file=sys.stderr)
    if figures["peak_rss_mb"] > RSS_BUDGET_MB:
        print(
            f"peak RSS {figures['peak_rss_mb']:.0f} MB is over {RSS_BUDGET_MB} MB", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
