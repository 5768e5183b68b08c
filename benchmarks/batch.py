"""Batch benchmark: ``promofilter score`` on a 200,000-record file, single process and Ray Data.

    python -m benchmarks.batch                  # the shipped model, 200,000 records
    python -m benchmarks.batch --records 20000 --no-write

Builds a JSONL file of short realistic records (the segment texts of the corpus splits,
cycled) and scores it twice in the same run, side by side: ``promofilter score`` in one
process (2 ONNX threads), and ``promofilter score --engine ray`` on a local Ray cluster with
2 actors of 1 CPU each. Each command runs as a subprocess under a fresh Python whose only
child it is, so the peak RSS is the scoring process's own (for Ray: the driver's; the actors
are the raylet's children, their RSS is sampled separately). Prints the figures and replaces
the batch section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.report import machine, write_section
from benchmarks.runtime import REPO, RSS_BUDGET_MB, read_split

SPLITS = sorted((REPO / "training" / "data" / "splits").glob("*.jsonl"))
RSS_PROBE = (
    "import resource, subprocess, sys\n"
    "result = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,"
    " text=True)\n"
    "sys.stderr.write(result.stderr)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)\n"
    "sys.exit(result.returncode)\n"
)


def run_measured(command: list[str], timeout: float = 7200) -> tuple[int, str, float, float]:
    """Run ``command`` as the only child of a fresh Python: (exit code, its stderr, wall
    seconds, its peak RSS in MB)."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, *command],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    seconds = time.perf_counter() - started
    return result.returncode, result.stderr, seconds, float(result.stdout.strip() or "nan")


def write_input(path: Path, records: int) -> dict:
    """``records`` JSONL records cycling through the corpus's segment texts."""
    texts = [text for split in SPLITS for text in read_split(split)[0]]
    with path.open("w", encoding="utf-8") as handle:
        for index in range(records):
            record = {"id": index, "text": texts[index % len(texts)]}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return {
        "records": records,
        "distinct_texts": len(texts),
        "mean_characters": sum(map(len, texts)) / len(texts),
        "file_mb": path.stat().st_size / 1e6,
    }


class ActorRss:
    """Sample the summed RSS of Ray's model actors (``ray::MapWorker`` processes) while a
    command runs; psutil comes with Ray."""

    def __init__(self, interval: float = 1.0) -> None:
        self.peak_mb = 0.0
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ActorRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        import psutil

        while not self._stop.wait(self.interval):
            total = 0
            for process in psutil.process_iter(["cmdline", "memory_info"]):
                command = " ".join(process.info["cmdline"] or [])
                if "MapWorker" in command and process.info["memory_info"]:
                    total += process.info["memory_info"].rss
            self.peak_mb = max(self.peak_mb, total / 2**20)


def summary_line(stderr: str) -> str:
    return next((line for line in stderr.splitlines() if "promofilter: scored" in line), "")


def measure(args: argparse.Namespace, folder: Path) -> dict:
    source = folder / "records.jsonl"
    figures = {"input": write_input(source, args.records)}
    model = ["--model", str(args.model)] if args.model else []
    base = [sys.executable, "-m", "promofilter", "score", str(source), *model, "--quiet"]
    load_average = os.getloadavg()[0]

    local_out = folder / "local.jsonl"
    code, stderr, seconds, peak = run_measured([*base, "-o", str(local_out)])
    if code != 0:
        raise SystemExit(f"the single-process run failed ({code}):\n{stderr}")
    figures["local"] = {
        "seconds": seconds,
        "records_per_second": args.records / seconds,
        "peak_rss_mb": peak,
    }
    local_out.unlink()

    ray_out = folder / "ray.jsonl"
    ray_command = [
        *base, "-o", str(ray_out), "--engine", "ray", "--ray-actors", "2",
        "--ray-cpus-per-actor", "1",
    ]  # fmt: skip
    with ActorRss() as actors:
        code, stderr, seconds, peak = run_measured(ray_command)
    if code != 0:
        raise SystemExit(f"the Ray run failed ({code}):\n{stderr[-3000:]}")
    with ray_out.open("rb") as handle:
        written = sum(1 for _ in handle)
    figures["ray"] = {
        "seconds": seconds,
        "records_per_second": args.records / seconds,
        "driver_peak_rss_mb": peak,
        "actors_peak_rss_mb": actors.peak_mb,
        "records_written": written,
    }
    ray_out.unlink()
    figures.update(
        {
            "model": str(args.model or "the shipped model (models/default)"),
            "machine": machine(),
            "load_average": load_average,
            "date": time.strftime("%Y-%m-%d"),
        }
    )
    return figures


def markdown(figures: dict) -> str:
    data, local, ray = figures["input"], figures["local"], figures["ray"]
    verdict = "within" if local["peak_rss_mb"] <= RSS_BUDGET_MB else "**over**"
    ratio = ray["records_per_second"] / local["records_per_second"]
    return f"""## Batch scoring: `python -m benchmarks.batch`

Measured {figures["date"]} on {figures["machine"]} (1-minute load average
{figures["load_average"]:.1f} when the run began; the machine is shared, so the absolute
rates are lower bounds). Model: {figures["model"]}. Input: {data["records"]:,} JSONL records
({data["file_mb"]:.0f} MB), the {data["distinct_texts"]:,} segment texts of the corpus splits
cycled (mean {data["mean_characters"]:.0f} characters). Both runs are the `promofilter score`
command, file to file, timed from start to exit (start-up, model load and, for Ray, starting
the local cluster included), one after the other in the same run.

| run | wall time | records/s | peak RSS |
|---|---|---|---|
| single process, 2 ONNX threads (`promofilter score`) | {local["seconds"]:,.0f} s | {local["records_per_second"]:,.0f} | {local["peak_rss_mb"]:.0f} MB ({verdict} the {RSS_BUDGET_MB} MB budget) |
| Ray Data, 2 actors x 1 CPU (`--engine ray --ray-actors 2 --ray-cpus-per-actor 1`) | {ray["seconds"]:,.0f} s | {ray["records_per_second"]:,.0f} ({ratio:.2f}x) | driver {ray["driver_peak_rss_mb"]:.0f} MB, actors {ray["actors_peak_rss_mb"]:.0f} MB together |

What limits both runs is the two cores: they do the same ONNX work, the Ray run as two
processes of one ONNX thread each instead of one process of two threads. That came out
{"ahead" if ratio >= 1 else "behind"} here ({ratio:.2f}x). The likely reason, not measured apart: in one process, tokenizing,
batching and the JSON work run on one core between model calls while the second ONNX thread
waits, and two intra-op threads speed up small batches of short segments by less than 2x;
two actors keep both cores busy. Against Ray: its own processes (raylet, GCS, the Ray Data
executor), a cluster start of several seconds, every batch passing through the object store
to the driver, which writes the output in input order, and memory ({ray["driver_peak_rss_mb"]:.0f} MB
driver, which also loads the model once to fail early, plus {ray["actors_peak_rss_mb"]:.0f} MB for the two actors, against {local["peak_rss_mb"]:.0f} MB). More actors
than cores would not help; across machines, throughput grows with the actors until the
driver's ordered write becomes the limit, which `score_dataset(ds).write_parquet(...)`
avoids. The machine is shared and the two runs ran one after the other under a changing
background load, so the ratio is indicative, not precise.
"""  # noqa: E501


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.batch", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model", type=Path, help="model directory (default: the shipped one)")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--report", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="promofilter-batch-") as folder:
        figures = measure(args, Path(folder))
    print(json.dumps(figures, indent=2))
    if not args.no_write:
        write_section("batch", markdown(figures), args.report)
        print(f"wrote the batch section of {args.report}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
