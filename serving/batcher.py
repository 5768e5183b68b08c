"""The dynamic batcher: segments from concurrent requests share one model call.

Requests put their texts into one queue on the event loop. A single worker task takes up to
``max_batch_size`` texts, waiting at most ``max_wait_ms`` after the oldest of them arrived for
more to come, and runs the model on them in one call (the service passes
:meth:`promofilter.PromoFilter.encode`) on an executor thread, so inference runs off the event
loop. Up to ``concurrency`` calls run at once, each on its own thread: while one call runs,
the next batch forms and starts on the other thread. On 2 cores, two calls of one ONNX
Runtime thread each scored calls of 64 test segments 1.4x faster than one call at a time
with two threads (605 against 433 segments/s), because ONNX Runtime's threads synchronise
at every operator and a service's calls are small. When a batch forms while every call is
idle and nothing else waits (one client, say), it is split over the idle calls instead, so
that a lone request still gets every core. The queue is
bounded in segments: a request that would push it past ``max_queued`` is refused with
:class:`QueueFull` (the service answers 429), unless the queue is empty, so that any request
can get through an idle service.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

# A batch is split over idle calls only into parts of at least this many texts: a call has a
# fixed cost, and a part smaller than this gains little from a core of its own.
MIN_SPLIT_TEXTS = 4

# texts in, one result per text out (a score or a row): the first axis follows the texts
BatchFunction = Callable[[list[str]], np.ndarray]
# Called once per model call with its number of texts and its wall time in seconds.
BatchObserver = Callable[[int, float], None]


class QueueFull(Exception):
    """The queue holds too many segments to take a request's texts now."""

    def __init__(self, queued: int, wanted: int, limit: int) -> None:
        super().__init__(
            f"the queue holds {queued} segments; {wanted} more would pass its limit of {limit}"
        )
        self.queued, self.wanted, self.limit = queued, wanted, limit


class BatcherStopped(Exception):
    """The batcher is not running (not started yet, or shut down)."""


@dataclass(eq=False)
class _Item:
    text: str
    future: asyncio.Future[np.ndarray]
    arrived: float = field(default_factory=time.monotonic)


class DynamicBatcher:
    """Run texts from many coroutines through the model in shared batches; see the module
    docstring."""

    def __init__(
        self,
        model_call: BatchFunction,
        max_batch_size: int = 64,
        max_wait_ms: float = 5.0,
        max_queued: int = 2048,
        observe_batch: BatchObserver | None = None,
        concurrency: int = 1,
    ) -> None:
        if max_batch_size < 1 or max_queued < 1 or max_wait_ms < 0 or concurrency < 1:
            raise ValueError(
                "max_batch_size, max_queued and concurrency must be at least 1 and max_wait_ms "
                f"at least 0, got {max_batch_size}, {max_queued}, {concurrency} and "
                f"{max_wait_ms}"
            )
        self.concurrency = concurrency
        self._model_call = model_call
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_queued = max_queued
        self._observe_batch = observe_batch
        self._queue: collections.deque[_Item] = collections.deque()
        self._arrived = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stopping = False

    @property
    def queued(self) -> int:
        """Segments waiting for a model call (the ones in the running call not counted)."""
        return len(self._queue)

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    def start(self) -> None:
        """Start the worker on the running event loop."""
        if self.running:
            return
        self._stopping = False
        self._executor = ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix="promofilter-infer"
        )
        self._worker = asyncio.get_running_loop().create_task(self._work(), name="batcher")

    async def stop(self) -> None:
        """Score what is still queued, then stop the worker and its thread.

        The service calls this after the server has drained its in-flight requests, so the
        queue is normally empty already; anything the worker cannot take is refused with
        :class:`BatcherStopped` rather than left waiting."""
        self._stopping = True
        self._arrived.set()
        if self._worker is not None:
            await self._worker
            self._worker = None
        for item in self._queue:
            if not item.future.done():
                item.future.set_exception(BatcherStopped("the service is shutting down"))
        self._queue.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def run(self, texts: Sequence[str]) -> np.ndarray:
        """The model's result per text in input order, as one call on ``texts`` gives it.

        Raises :class:`QueueFull` when the queue cannot take the texts now and
        :class:`BatcherStopped` when the batcher is not running. Cancelling the caller (a
        deadline, a client gone) takes its texts out of the queue.
        """
        if not self.running:
            raise BatcherStopped("the batcher is not running")
        if not texts:
            return np.zeros(0, dtype=np.float32)
        if self._queue and len(self._queue) + len(texts) > self.max_queued:
            raise QueueFull(len(self._queue), len(texts), self.max_queued)
        loop = asyncio.get_running_loop()
        items = [_Item(text, loop.create_future()) for text in texts]
        self._queue.extend(items)
        self._arrived.set()
        try:
            results = await asyncio.gather(*(item.future for item in items))
        except BaseException:
            self._discard(items)
            raise
        return np.asarray(results, dtype=np.float32)

    def _discard(self, items: list[_Item]) -> None:
        for item in items:
            item.future.cancel()
        gone = set(map(id, items))
        kept = [item for item in self._queue if id(item) not in gone]
        if len(kept) != len(self._queue):
            self._queue.clear()
            self._queue.extend(kept)

    async def _gather(self) -> list[_Item] | None:
        """Wait for a first item, then for a full batch or until the oldest item has waited
        ``max_wait``; skip the items whose callers have given up. None: stop, all is done."""
        while not self._queue:
            if self._stopping:
                return None
            self._arrived.clear()
            await self._arrived.wait()
        deadline = self._queue[0].arrived + self.max_wait
        # callers that give up leave the queue, and a stopping batcher waits for no one
        while self._queue and len(self._queue) < self.max_batch_size and not self._stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
                break
        batch = []
        while self._queue and len(batch) < self.max_batch_size:
            item = self._queue.popleft()
            if not item.future.done():
                batch.append(item)
        return batch

    async def _work(self) -> None:
        calls: set[asyncio.Task[None]] = set()
        try:
            while True:
                if len(calls) >= self.concurrency:
                    await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
                    continue
                batch = await self._gather()
                if batch is None:
                    return
                for part in self._parts(batch, idle=self.concurrency - len(calls)):
                    call = asyncio.get_running_loop().create_task(self._call(part))
                    calls.add(call)
                    call.add_done_callback(calls.discard)
        finally:
            if calls:  # the calls under way finish before stop() shuts their threads down
                await asyncio.wait(calls)

    def _parts(self, batch: list[_Item], idle: int) -> list[list[_Item]]:
        """The batch as one call, or, when no other text waits, split over the ``idle`` calls
        into parts of at least :data:`MIN_SPLIT_TEXTS` texts (every ``n``-th text, so that
        the parts are alike in length)."""
        if not batch:
            return []
        count = 1 if self._queue else min(idle, len(batch) // MIN_SPLIT_TEXTS)
        if count < 2:
            return [batch]
        return [batch[start::count] for start in range(count)]

    async def _call(self, batch: list[_Item]) -> None:
        texts = [item.text for item in batch]
        started = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            results = await loop.run_in_executor(self._executor, self._model_call, texts)
        except Exception as error:  # the model failed: every caller in the batch hears it
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        if self._observe_batch is not None:
            self._observe_batch(len(batch), time.perf_counter() - started)
        for item, value in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(value)
