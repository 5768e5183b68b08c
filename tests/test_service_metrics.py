"""The Prometheus text exposition of the service's metrics."""

from __future__ import annotations

from promofilter.metrics import Counter, Histogram, ServiceMetrics


def test_a_counter_renders_one_line_per_label_set_with_escaped_values():
    counter = Counter("hits_total", "Hits.", ("endpoint", "status"))
    counter.inc("/a", "200")
    counter.inc("/a", "200")
    counter.inc('/b"\n', "500", amount=0.5)
    assert counter.header() == ["# HELP hits_total Hits.", "# TYPE hits_total counter"]
    assert counter.samples() == [
        'hits_total{endpoint="/a",status="200"} 2',
        'hits_total{endpoint="/b\\"\\n",status="500"} 0.5',
    ]


def test_a_histogram_counts_cumulatively_with_an_inclusive_upper_bound():
    histogram = Histogram("size", "Sizes.", (1, 4, 16))
    for value in (1, 2, 4, 5, 100):
        histogram.observe(value)
    assert histogram.samples() == [
        'size_bucket{le="1"} 1',
        'size_bucket{le="4"} 3',
        'size_bucket{le="16"} 4',
        'size_bucket{le="+Inf"} 5',
        "size_sum 112",
        "size_count 5",
    ]


def test_the_service_metrics_render_every_family_and_read_gauges_when_scraped():
    depth = [3]
    metrics = ServiceMetrics(queue_depth=lambda: depth[0], ready=lambda: 1.0)
    metrics.requests.inc("/v1/classify", "429")
    metrics.latency.observe(0.02, "/v1/classify")
    metrics.observe_batch(12, 0.03)
    depth[0] = 7
    text = metrics.render()
    assert text.endswith("\n")
    for family, kind in [
        ("promofilter_requests_total", "counter"),
        ("promofilter_request_duration_seconds", "histogram"),
        ("promofilter_batch_size", "histogram"),
        ("promofilter_inference_duration_seconds", "histogram"),
        ("promofilter_segments_scored_total", "counter"),
        ("promofilter_segments_skipped_total", "counter"),
        ("promofilter_queue_depth", "gauge"),
        ("promofilter_ready", "gauge"),
    ]:
        assert f"# TYPE {family} {kind}\n" in text
    assert 'promofilter_requests_total{endpoint="/v1/classify",status="429"} 1\n' in text
    assert 'promofilter_batch_size_bucket{le="8"} 0\n' in text
    assert 'promofilter_batch_size_bucket{le="16"} 1\n' in text
    assert "promofilter_segments_scored_total 12\n" in text
    assert "promofilter_segments_skipped_total 0\n" in text  # shown before any increment
    assert "promofilter_queue_depth 7\n" in text
    assert "promofilter_ready 1\n" in text
