"""The dynamic batcher, with a recording stand-in for the model."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from promofilter.batcher import MIN_SPLIT_TEXTS, BatcherStopped, DynamicBatcher, QueueFull


class RecordingScorer:
    """Scores a text as len(text) / 1000; records each call and the thread it ran on. With
    ``gate`` set, each call waits for it (a slow model)."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls: list[list[str]] = []
        self.threads: set[int] = set()
        self.gate = gate

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.threads.add(threading.get_ident())
        if self.gate is not None:
            assert self.gate.wait(10), "the test never opened the gate"
        self.calls.append(list(texts))
        return np.array([len(t) / 1000 for t in texts], dtype=np.float32)


def run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_requests_share_one_model_call_off_the_event_loop():
    scorer = RecordingScorer()

    async def main():
        batcher = DynamicBatcher(scorer, max_batch_size=64, max_wait_ms=200)
        batcher.start()
        results = await asyncio.gather(
            batcher.run(["a", "bb"]), batcher.run(["ccc"]), batcher.run(["dddd", "e"])
        )
        await batcher.stop()
        return results, threading.get_ident()

    results, loop_thread = run(main())
    assert scorer.calls == [["a", "bb", "ccc", "dddd", "e"]]
    assert [r.tolist() for r in results] == [
        pytest.approx([0.001, 0.002]),
        pytest.approx([0.003]),
        pytest.approx([0.004, 0.001]),
    ]
    assert all(r.dtype == np.float32 for r in results)
    assert loop_thread not in scorer.threads


def test_a_batch_holds_at_most_max_batch_size_texts():
    scorer = RecordingScorer()

    async def main():
        batcher = DynamicBatcher(scorer, max_batch_size=3, max_wait_ms=50)
        batcher.start()
        scores = await batcher.run([f"t{i}" for i in range(8)])
        await batcher.stop()
        return scores

    assert len(run(main())) == 8
    assert [len(call) for call in scorer.calls] == [3, 3, 2]


def test_a_lone_text_waits_at_most_max_wait():
    scorer = RecordingScorer()

    async def main():
        batcher = DynamicBatcher(scorer, max_batch_size=64, max_wait_ms=100)
        batcher.start()
        started = time.monotonic()
        await batcher.run(["allein"])
        waited = time.monotonic() - started
        await batcher.stop()
        return waited

    waited = run(main())
    assert 0.09 <= waited < 2.0  # generous upper bound: the machine is shared
    assert scorer.calls == [["allein"]]


def test_a_full_queue_refuses_more_segments_but_an_empty_one_takes_any_request():
    gate = threading.Event()
    scorer = RecordingScorer(gate)

    async def main():
        batcher = DynamicBatcher(scorer, max_batch_size=1, max_wait_ms=0, max_queued=3)
        batcher.start()
        # larger than the limit, but the queue is empty: taken
        first = asyncio.ensure_future(batcher.run(["a", "b", "c", "d"]))
        while batcher.queued != 3:  # one text went into the (blocked) model call
            await asyncio.sleep(0.01)
        with pytest.raises(QueueFull) as refused:
            await batcher.run(["e"])
        gate.set()
        scores = await first
        await batcher.stop()
        return refused.value, scores

    refused, scores = run(main())
    assert (refused.queued, refused.wanted, refused.limit) == (3, 1, 3)
    assert "limit of 3" in str(refused)
    assert len(scores) == 4


def test_a_cancelled_request_leaves_the_queue():
    gate = threading.Event()
    scorer = RecordingScorer(gate)

    async def main():
        batcher = DynamicBatcher(scorer, max_batch_size=1, max_wait_ms=0)
        batcher.start()
        blocker = asyncio.ensure_future(batcher.run(["im Modell"]))
        while not scorer.threads:
            await asyncio.sleep(0.01)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(batcher.run(["x", "y"]), 0.05)
        queued_after_timeout = batcher.queued
        gate.set()
        await blocker
        await batcher.stop()
        return queued_after_timeout

    assert run(main()) == 0
    assert ["x"] not in scorer.calls and ["y"] not in scorer.calls


def test_a_model_error_reaches_every_caller_of_the_batch_and_the_batcher_goes_on():
    calls = []

    def flaky(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return np.zeros(len(texts), dtype=np.float32)

    async def main():
        batcher = DynamicBatcher(flaky, max_batch_size=8, max_wait_ms=50)
        batcher.start()
        failed = await asyncio.gather(
            batcher.run(["a"]), batcher.run(["b"]), return_exceptions=True
        )
        after = await batcher.run(["c"])
        await batcher.stop()
        return failed, after

    failed, after = run(main())
    assert [str(error) for error in failed] == ["model exploded", "model exploded"]
    assert after.tolist() == [0.0]


def test_stop_scores_what_is_queued_then_refuses():
    scorer = RecordingScorer()

    async def main():
        batcher = DynamicBatcher(scorer, max_batch_size=64, max_wait_ms=300)
        batcher.start()
        pending = asyncio.ensure_future(batcher.run(["noch da"]))
        await asyncio.sleep(0.01)
        await batcher.stop()
        with pytest.raises(BatcherStopped):
            await batcher.run(["zu spät"])
        return await pending

    assert run(main()).tolist() == pytest.approx([0.007])


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="max_batch_size"):
        DynamicBatcher(RecordingScorer(), max_batch_size=0)


def test_stop_does_not_wait_out_max_wait():
    scorer = RecordingScorer()

    async def main():
        batcher = DynamicBatcher(scorer, max_batch_size=64, max_wait_ms=10_000)
        batcher.start()
        pending = asyncio.ensure_future(batcher.run(["wartet"]))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await batcher.stop()
        return await pending, time.monotonic() - started

    scores, took = run(main())
    assert scores.tolist() == pytest.approx([0.006])
    assert took < 5


def test_rows_go_back_to_the_text_they_belong_to():
    """The service batches ``encode``, whose result is a row per text, not a number."""

    def rows(texts: list[str]) -> np.ndarray:
        return np.array([[len(t), len(t) * 10] for t in texts], dtype=np.float32)

    async def main():
        batcher = DynamicBatcher(rows, max_batch_size=64, max_wait_ms=100)
        batcher.start()
        results = await asyncio.gather(batcher.run(["a", "bbb"]), batcher.run(["cc"]))
        await batcher.stop()
        return results

    first, second = run(main())
    assert first.tolist() == [[1, 10], [3, 30]]
    assert second.tolist() == [[2, 20]]


class OverlapScorer(RecordingScorer):
    """A slow model that records how many of its calls ran at the same time."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.running = self.most_at_once = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(0.05)
        try:
            return super().__call__(texts)
        finally:
            with self.lock:
                self.running -= 1


@pytest.mark.parametrize("concurrency", [1, 2, 3])
def test_at_most_concurrency_calls_run_at_once_each_on_its_thread(concurrency):
    scorer = OverlapScorer()

    async def main():
        batcher = DynamicBatcher(scorer, max_batch_size=2, max_wait_ms=0, concurrency=concurrency)
        batcher.start()
        texts = [[f"text {i}", f"text {i}{'x' * i}"] for i in range(12)]
        results = await asyncio.gather(*(batcher.run(pair) for pair in texts))
        await batcher.stop()
        return texts, results

    texts, results = run(main())
    for pair, scores in zip(texts, results, strict=True):
        assert scores.tolist() == pytest.approx([len(t) / 1000 for t in pair])
    assert scorer.most_at_once == concurrency
    assert len(scorer.threads) == concurrency
    scored = sorted(t for call in scorer.calls for t in call)
    assert scored == sorted(t for pair in texts for t in pair)


def test_stop_waits_for_every_call_under_way():
    scorer = OverlapScorer()

    async def main():
        batcher = DynamicBatcher(scorer, max_batch_size=1, max_wait_ms=0, concurrency=2)
        batcher.start()
        pending = [asyncio.ensure_future(batcher.run([f"t{i}"])) for i in range(5)]
        await asyncio.sleep(0.01)  # two calls under way, three texts queued
        await batcher.stop()
        return await asyncio.gather(*pending)

    assert [r.tolist() for r in run(main())] == [[pytest.approx(0.002)]] * 5
    assert scorer.most_at_once == 2


def test_concurrency_below_one_is_refused():
    with pytest.raises(ValueError, match=r"got 64, 2048, 0 and 5\.0"):
        DynamicBatcher(RecordingScorer(), concurrency=0)


def test_a_lone_batch_is_split_over_the_idle_calls():
    scorer = OverlapScorer()
    texts = [f"text {'x' * i}" for i in range(10)]

    async def main():
        batcher = DynamicBatcher(scorer, max_batch_size=64, max_wait_ms=0, concurrency=2)
        batcher.start()
        result = await batcher.run(texts)
        await batcher.stop()
        return result

    assert run(main()).tolist() == pytest.approx([len(t) / 1000 for t in texts])
    # every other text in each part, both parts at once, each on its own thread
    assert sorted(scorer.calls) == sorted([texts[0::2], texts[1::2]])
    assert scorer.most_at_once == 2 and len(scorer.threads) == 2


@pytest.mark.parametrize(
    ("texts", "max_batch_size", "concurrency", "sizes"),
    [
        (2 * MIN_SPLIT_TEXTS - 1, 64, 2, [2 * MIN_SPLIT_TEXTS - 1]),  # a part would be too small
        (3 * MIN_SPLIT_TEXTS, 64, 1, [3 * MIN_SPLIT_TEXTS]),  # no second call to split over
        (3 * MIN_SPLIT_TEXTS, 64, 3, [MIN_SPLIT_TEXTS] * 3),
        # texts still queued: the batch stays whole, and the next one takes the other call
        (
            5 * MIN_SPLIT_TEXTS,
            2 * MIN_SPLIT_TEXTS,
            2,
            [2 * MIN_SPLIT_TEXTS] * 2 + [MIN_SPLIT_TEXTS],
        ),
    ],
)
def test_a_batch_is_split_only_when_nothing_waits_and_each_part_is_large_enough(
    texts, max_batch_size, concurrency, sizes
):
    scorer = OverlapScorer()

    async def main():
        batcher = DynamicBatcher(
            scorer, max_batch_size=max_batch_size, max_wait_ms=0, concurrency=concurrency
        )
        batcher.start()
        await batcher.run([f"t{i}" for i in range(texts)])
        await batcher.stop()

    run(main())
    assert sorted(len(call) for call in scorer.calls) == sorted(sizes)
