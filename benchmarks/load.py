"""Load benchmark of the HTTP service: 1, 4 and 16 concurrent clients against a real uvicorn.

    python -m benchmarks.load                         # 30 s per client count, shipped model
    python -m benchmarks.load --duration 5 --no-write # a quick look

Starts ``promofilter serve`` on 127.0.0.1 (a free port) and drives it with asyncio + httpx
clients that each send one ``POST /v1/classify`` after the other, every request made of
``--segments-per-request`` consecutive segments of ``training/data/splits/test.jsonl``.
Each run is bounded in time (``--duration``) and in requests (``--max-requests``). It reports
requests/s, segments/s, p50/p99 latency and the errors, next to the offline throughput of
``pf.predict_proba`` on the same segments measured in the same run, and then overloads a
second server with a small queue limit to show that above it the only errors are 429s.
The figures go to the "load" section of docs/benchmarks.md. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promofilter.settings import (
    DEFAULT_MODEL_BATCH_SIZE,
    DEFAULT_MODEL_CALLS,
    DEFAULT_SERVICE_THREADS,
)

from benchmarks.report import write_section
from benchmarks.runtime import (
    DEFAULT_DATA,
    DEFAULT_REPORT,
    best_seconds,
    read_split,
    shown,
)

GOAL_SHARE = 0.8  # of the offline throughput, at 16 clients
GOAL_TAIL = 5.0  # p99 at most this many times p50
TABLE_COLUMNS = (
    "clients",
    "req/s",
    "segments/s",
    "p50 ms",
    "p99 ms",
    "p99/p50",
    "per call",
    "errors",
    "server",
    "clients",
    "offline",
    "share",
)


@dataclass
class Phase:
    name: str
    clients: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # of the 200s, in seconds
    statuses: Counter = field(default_factory=Counter)  # status code or exception name
    segments: int = 0
    batch_sizes: tuple[float, float] = (0.0, 0.0)  # model calls, segments, from /metrics
    client_cpu: float = 0.0  # CPU seconds of this process (the clients) during the phase
    server_cpu: float | None = None  # CPU seconds of the server process, where /proc has it
    # offline predict_proba segments/s right before and right after this phase
    offline: tuple[float, float] | None = None

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status != 200)

    def percentile(self, share: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    def summary(self) -> dict:
        calls, segments = self.batch_sizes
        return {
            "phase": self.name,
            "clients": self.clients,
            "seconds": round(self.seconds, 2),
            "requests": sum(self.statuses.values()),
            "requests_per_second": self.ok / self.seconds if self.seconds else 0.0,
            "segments_per_second": self.segments / self.seconds if self.seconds else 0.0,
            "p50_ms": self.percentile(0.50) * 1000,
            "p99_ms": self.percentile(0.99) * 1000,
            "mean_batch": segments / calls if calls else 0.0,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items(), key=str)},
            "errors": self.errors,
            # in cores: 2.0 is both cores of the machine, all the time
            "client_cores": self.client_cpu / self.seconds if self.seconds else 0.0,
            "server_cores": (
                self.server_cpu / self.seconds
                if self.seconds and self.server_cpu is not None
                else None
            ),
            "offline_around": list(self.offline) if self.offline else None,
            "share_of_offline": self.share_of_offline,
        }

    @property
    def share_of_offline(self) -> float | None:
        """Segments/s over the mean offline throughput measured right around the phase."""
        if not self.offline or not self.seconds:
            return None
        return (self.segments / self.seconds) / (sum(self.offline) / 2)


@dataclass
class Server:
    url: str
    pid: int


def process_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of a running process, from /proc (Linux); None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serving(args: argparse.Namespace, *options: str) -> Iterator[Server]:
    """A ``promofilter serve`` process on loopback, ready. Stopped with SIGTERM."""
    import httpx

    port = free_port()
    command = [sys.executable, "-m", "promofilter", "serve", "--port", str(port)]
    command += ["--log-level", "warning", "--threads", str(args.threads)]
    command += ["--model-calls", str(args.model_calls)]
    if args.model:
        command += ["--model", str(args.model)]
    process = subprocess.Popen([*command, *options])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the server exited with {process.returncode}")
            if time.monotonic() > deadline:
                raise SystemExit("the server was not ready within 120 s")
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield Server(url, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def batch_figures(url: str) -> tuple[float, float]:
    """(model calls, segments scored) so far, from the server's /metrics."""
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text
    count = re.search(r"^promofilter_batch_size_count (\S+)$", text, re.M)
    total = re.search(r"^promofilter_batch_size_sum (\S+)$", text, re.M)
    return (float(count.group(1)) if count else 0.0, float(total.group(1)) if total else 0.0)


def request_bodies(segments: list[str], per_request: int) -> list[tuple[bytes, int]]:
    """Consecutive runs of ``per_request`` segments as ready-made JSON bodies."""
    bodies = []
    for start in range(0, len(segments) - per_request + 1, per_request):
        texts = segments[start : start + per_request]
        bodies.append((json.dumps({"texts": texts}, ensure_ascii=False).encode(), len(texts)))
    return bodies


async def drive(
    url: str,
    phase: Phase,
    bodies: list[tuple[bytes, int]],
    duration: float,
    max_requests: int,
    backoff: float,
) -> None:
    """``phase.clients`` clients, each sending requests one after the other until
    ``duration`` has passed or ``max_requests`` have been sent in all."""
    import httpx

    headers = {"content-type": "application/json"}
    sent = 0
    stop_at = time.monotonic() + duration

    async def client(index: int) -> None:
        nonlocal sent
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
            position = index * 7919  # each client starts elsewhere in the segments
            while time.monotonic() < stop_at and sent < max_requests:
                sent += 1
                body, count = bodies[position % len(bodies)]
                position += 1
                started = time.perf_counter()
                try:
                    response = await http.post("/v1/classify", content=body, headers=headers)
                except httpx.HTTPError as error:
                    phase.statuses[type(error).__name__] += 1
                    continue
                phase.statuses[response.status_code] += 1
                if response.status_code == 200:
                    phase.latencies.append(time.perf_counter() - started)
                    phase.segments += count
                elif response.status_code == 429 and backoff:
                    await asyncio.sleep(backoff)

    started = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(phase.clients)))
    phase.seconds = time.monotonic() - started


def run_phase(
    server: Server, phase: Phase, bodies, args: argparse.Namespace, duration: float
) -> Phase:
    before = batch_figures(server.url)
    server_before, client_before = process_cpu_seconds(server.pid), time.process_time()
    asyncio.run(
        drive(server.url, phase, bodies, duration, args.max_requests, args.backoff_ms / 1000)
    )
    server_after, phase.client_cpu = process_cpu_seconds(server.pid), time.process_time()
    phase.client_cpu -= client_before
    if server_before is not None and server_after is not None:
        phase.server_cpu = server_after - server_before
    after = batch_figures(server.url)
    phase.batch_sizes = (after[0] - before[0], after[1] - before[1])
    print(json.dumps(phase.summary()), file=sys.stderr)
    return phase


def offline_throughput(model: Any, segments: list[str]) -> float:
    """Segments/s of ``pf.predict_proba`` over all the segments in one call (best of 3)."""
    return len(segments) / best_seconds(lambda: model.predict_proba(segments), 3)


def measure(args: argparse.Namespace) -> dict:
    load_average = os.getloadavg()[0]
    segments, _ = read_split(args.data)
    bodies = request_bodies(segments, args.segments_per_request)
    # The machine is shared and its speed drifts by 10-20% within minutes: each load phase
    # is compared with the offline throughput measured right before and right after it
    # (the server idle meanwhile), not with a figure taken minutes away.
    import promofilter

    # the library's defaults (2 ONNX Runtime threads, one call at a time)
    offline_model = promofilter.load(args.model)

    def offline() -> float:
        rate = offline_throughput(offline_model, segments)
        print(f"offline predict_proba: {rate:.1f} segments/s", file=sys.stderr)
        return rate

    server_options = [
        "--max-batch-size",
        str(args.max_batch_size),
        "--max-wait-ms",
        str(args.max_wait_ms),
        "--model-batch-size",
        str(args.model_batch_size),
    ]
    phases = []
    with serving(args, *server_options) as server:
        run_phase(server, Phase("warm-up", 4), bodies, args, min(3.0, args.duration))
        before = offline()
        for clients in args.clients:
            phase = run_phase(server, Phase("load", clients), bodies, args, args.duration)
            after = offline()
            phase.offline, before = (before, after), after
            phases.append(phase)
    overload_options = [*server_options, "--max-queued-segments", str(args.overload_queue)]
    with serving(args, *overload_options) as server:
        overload = Phase("over the queue limit", args.overload_clients)
        run_phase(server, overload, bodies, args, args.duration)
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "load_average": load_average,
        "load_average_after": os.getloadavg()[0],
        "model": str(args.model or "models/default (shipped)"),
        "model_name": offline_model.name,
        "data": shown(args.data),
        "segments": len(segments),
        "segments_per_request": args.segments_per_request,
        "duration": args.duration,
        "threads": args.threads,
        "model_calls": args.model_calls,
        "offline_threads": offline_model.threads,
        "max_batch_size": args.max_batch_size,
        "model_batch_size": args.model_batch_size,
        "offline_batch_size": offline_model.batch_size,
        "max_wait_ms": args.max_wait_ms,
        "overload_queue": args.overload_queue,
        "backoff_ms": args.backoff_ms,
        "phases": [phase.summary() for phase in phases],
        "overload": overload.summary(),
    }


def verdicts(figures: dict) -> dict[str, bool]:
    phases = figures["phases"]
    top = max(phases, key=lambda p: p["clients"])
    overload = figures["overload"]
    return {
        "throughput": top["share_of_offline"] >= GOAL_SHARE,
        "tail": all(p["p99_ms"] <= GOAL_TAIL * p["p50_ms"] for p in phases),
        "no_errors": all(p["errors"] == 0 for p in phases),
        "only_429": set(overload["statuses"]) <= {"200", "429"}
        and overload["statuses"].get("429", 0) > 0,
    }


def markdown(figures: dict) -> str:
    rows = []
    for p in figures["phases"]:
        rows.append(
            f"| {p['clients']} | {p['requests_per_second']:,.1f} | {p['segments_per_second']:,.1f}"
            f" | {p['p50_ms']:.1f} | {p['p99_ms']:.1f} | {p['p99_ms'] / p['p50_ms']:.1f}x"
            f" | {p['mean_batch']:.1f} | {p['errors']} | {_cores(p['server_cores'])}"
            f" | {_cores(p['client_cores'])} | {_offline(p['offline_around'])}"
            f" | {p['share_of_offline']:.0%} |"
        )
    o = figures["overload"]
    checks = verdicts(figures)
    top = max(figures["phases"], key=lambda p: p["clients"])

    def mark(ok: bool) -> str:
        return "met" if ok else "**MISSED**"

    statuses = ", ".join(f"{count} x {status}" for status, count in o["statuses"].items())
    return f"""## Load: `python -m benchmarks.load`

Measured {figures["date"]} on {figures["machine"]}, Python {figures["python"]}; 1-minute load
average {figures["load_average"]:.1f} before and {figures["load_average_after"]:.1f} after the
run (the machine is shared; the clients run on the same two cores as the server). Server:
`promofilter serve` (one uvicorn worker, up to {figures["model_calls"]} model calls at once
with {figures["threads"]} ONNX Runtime thread(s) each, model `{figures["model_name"]}`), max
batch size {figures["max_batch_size"]}, ONNX Runtime runs of at most
{figures["model_batch_size"]} rows, max wait {figures["max_wait_ms"]:g} ms. Each client
sends `POST /v1/classify` requests one after the other, {figures["segments_per_request"]}
segments of `{figures["data"]}` per request, for {figures["duration"]:g} s per row;
latencies are of the 200 answers; "per call" is segments per model call; "server" and
"clients" are the CPU cores used (of 2) by the server process and by the clients' process.
"Offline" is the throughput of `pf.predict_proba` (library defaults:
{figures["offline_threads"]} ONNX Runtime threads, runs of at most
{figures["offline_batch_size"]} rows) on the same {figures["segments"]} segments in one call,
in the same process as the clients, measured right before and right after the row (best of
3 each, the server idle); "share" is the row's segments/s over their mean.

| {" | ".join(TABLE_COLUMNS)} |
|{"---|" * len(TABLE_COLUMNS)}
{chr(10).join(rows)}

- At {top["clients"]} clients the service reaches {top["share_of_offline"]:.0%} of the
  offline throughput (goal 80%): {mark(checks["throughput"])}.
- p99 at most 5x p50 at every client count: {mark(checks["tail"])}.
- No errors below the queue limit: {mark(checks["no_errors"])}.
- Above it ({o["clients"]} clients against `--max-queued-segments {figures["overload_queue"]}`,
  {o["seconds"]:g} s, clients pause {figures["backoff_ms"]:g} ms after a 429): {statuses};
  only 200 and 429: {mark(checks["only_429"])}.
"""


def _cores(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _offline(around: list[float]) -> str:
    return " / ".join(f"{rate:,.0f}" for rate in around)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.load", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model", type=Path, help="model directory (default: the shipped one)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="corpus JSONL file")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per client count")
    parser.add_argument(
        "--clients", type=int, nargs="+", default=[1, 4, 16], help="client counts to run"
    )
    parser.add_argument(
        "--segments-per-request",
        type=int,
        default=8,
        help="segments per request (default 8: a test-split document has 7.6 on average)",
    )
    parser.add_argument("--max-requests", type=int, default=200_000, help="cap per run")
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_SERVICE_THREADS,
        help="server setting: ONNX Runtime threads per model call",
    )
    parser.add_argument(
        "--model-calls",
        type=int,
        default=DEFAULT_MODEL_CALLS,
        help="server setting: model calls at once",
    )
    parser.add_argument("--max-batch-size", type=int, default=128, help="server setting")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="server setting")
    parser.add_argument(
        "--model-batch-size",
        type=int,
        default=DEFAULT_MODEL_BATCH_SIZE,
        help="server setting: rows per ONNX Runtime run",
    )
    parser.add_argument("--overload-clients", type=int, default=64)
    parser.add_argument("--overload-queue", type=int, default=32, help="its queue limit")
    parser.add_argument("--backoff-ms", type=float, default=50.0, help="pause after a 429")
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT, help="Markdown file")
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    figures = measure(args)
    figures["verdicts"] = verdicts(figures)
    print(json.dumps(figures, indent=2))
    if not args.no_write:
        write_section("load", markdown(figures), args.report)
        print(f"wrote the load section of {args.report}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
