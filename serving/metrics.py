"""Prometheus metrics of the service in the text exposition format (version 0.0.4).

Hand-written to keep the ``serve`` extra small: counters and gauges with labels, and
histograms with fixed buckets. Each process (each uvicorn worker) keeps its own figures.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

LabelValues = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    pairs = [f'{name}="{_escape(value)}"' for name, value in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)
        self._lock = threading.Lock()

    def _key(self, labels: Sequence[str]) -> LabelValues:
        if len(labels) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {tuple(labels)}")
        return tuple(str(value) for value in labels)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, label_names)
        # a counter without labels shows 0 before its first increment, as Prometheus expects
        self._values: dict[LabelValues, float] = {} if self.label_names else {(): 0.0}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [
            f"{self.name}{_labels(self.label_names, key)} {_number(value)}" for key, value in items
        ]


class Gauge(_Metric):
    """A value read when the metrics are scraped (a queue length, a flag)."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        super().__init__(name, help_text)
        self._read = read

    def samples(self) -> list[str]:
        return [f"{self.name} {_number(self._read())}"]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        buckets: Sequence[float],
        label_names: Sequence[str] = (),
    ) -> None:
        super().__init__(name, help_text, label_names)
        self.buckets = tuple(sorted(buckets))
        # per label set: counts per bucket (the last one is +Inf), the sum
        self._series: dict[LabelValues, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, *labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            counts, total = self._series.setdefault(key, ([0] * (len(self.buckets) + 1), [0.0]))
            counts[bisect.bisect_left(self.buckets, value)] += 1
            total[0] += value

    def count(self, *labels: str) -> int:
        series = self._series.get(self._key(labels))
        return sum(series[0]) if series else 0

    def samples(self) -> list[str]:
        lines = []
        with self._lock:
            items = sorted((key, (list(c), t[0])) for key, (c, t) in self._series.items())
        for key, (counts, total) in items:
            cumulative = 0
            for bound, count in zip([*self.buckets, math.inf], counts, strict=True):
                cumulative += count
                le = f'le="{_number(bound)}"'
                lines.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {cumulative}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_number(total)}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {cumulative}")
        return lines


class ServiceMetrics:
    """The service's metrics; :meth:`render` is the body of ``GET /metrics``."""

    def __init__(self, queue_depth: Callable[[], float], ready: Callable[[], float]) -> None:
        self.requests = Counter(
            "promofilter_requests_total",
            "HTTP requests answered, by endpoint and status code.",
            ("endpoint", "status"),
        )
        self.latency = Histogram(
            "promofilter_request_duration_seconds",
            "Time from receiving a request to sending its response, by endpoint.",
            LATENCY_BUCKETS,
            ("endpoint",),
        )
        self.batch_size = Histogram(
            "promofilter_batch_size",
            "Segments per model call of the dynamic batcher.",
            BATCH_SIZE_BUCKETS,
        )
        self.inference = Histogram(
            "promofilter_inference_duration_seconds",
            "Wall time of one model call of the dynamic batcher.",
            LATENCY_BUCKETS,
        )
        self.segments = Counter(
            "promofilter_segments_scored_total", "Segments scored by the model."
        )
        self.skipped = Counter(
            "promofilter_segments_skipped_total",
            "Segments the cascade scored without the encoder (their character n-grams decided).",
        )
        self.queue_depth = Gauge(
            "promofilter_queue_depth", "Segments waiting in the batcher's queue.", queue_depth
        )
        self.ready = Gauge(
            "promofilter_ready", "1 once the model is loaded and warmed up, else 0.", ready
        )

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(seconds)
        self.segments.inc(amount=size)

    def render(self) -> str:
        metrics: list[_Metric] = [
            self.requests,
            self.latency,
            self.batch_size,
            self.inference,
            self.segments,
            self.skipped,
            self.queue_depth,
            self.ready,
        ]
        lines = []
        for metric in metrics:
            lines.extend(metric.header())
            lines.extend(metric.samples())
        return "\n".join(lines) + "\n"
