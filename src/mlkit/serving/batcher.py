"""Dynamic batching inside the server: merge concurrent requests, run the model once, split back.

One ``DynamicBatcher`` per served model version. Requests (each holding one or more instances)
queue on the event loop; when a model instance is free, the batcher takes the first request, keeps
adding requests until the batch holds ``max_batch_size`` instances or ``max_latency_ms`` have passed
since the first was queued, then runs that instance's ``run_batch`` once in the instance's own worker
thread (so one interpreter is never invoked concurrently) and hands each caller its own slice of the
results, in order. A request is never split: one larger than ``max_batch_size`` runs alone.
``max_batch_size=1`` turns batching off (every request runs as soon as an instance is free).

``submit(payload, inline=True)`` lets a lone request skip the hand-off: when the batcher is idle and no
other request is being prepared, the batch of one runs right away on the event loop's own thread (as
KServe runs a synchronous ``predict``). The hop to a worker thread and back costs a small model about
0.5 ms at concurrency 1; callers pass ``inline=True`` only when nothing else in the process is waiting for
the event loop, since it is blocked for one invoke.

Several instances (``run_batch`` given as a list, one callable per interpreter) run batches in
parallel, as Triton's ``instance_group`` does: two single-thread interpreters never wait at a
thread barrier for a core that is busy decoding requests, as one two-thread interpreter does; a
lone request then runs on one thread, so it is slower.

``max_queue`` bounds the requests waiting in the queue: one more is refused at once with ``ServerBusy``.
``queue_timeout_ms`` is a deadline on the wait: a request is refused at once when the requests ahead of it would
take longer than that to run (from the recent interpreter time per request), and one that still waited longer
is dropped before its batch runs (``mlkit.serving.overload``). Refusing at the door is what keeps a refusal fast
and the accepted requests' latency bounded under any load.

Prometheus histograms (default registry, served by KServe on ``/metrics``), label ``model``:
``mlkit_batch_queue_seconds`` (per request), ``mlkit_batch_compute_seconds`` and
``mlkit_batch_size`` (instances, per batch); the queue's depth is part of ``mlkit_queue_depth``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import Histogram

from mlkit.serving.options import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_LATENCY_MS
from mlkit.serving.overload import check_limits, past_deadline, queue_depth, queue_full

log = logging.getLogger(__name__)

Runner = Callable[[list[Any]], Sequence[Any]]

QUEUE_SECONDS = Histogram("mlkit_batch_queue_seconds", "Time a request waited before its batch ran",
                          ["model"], buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                              0.5, 1.0, 2.5, 5.0))
COMPUTE_SECONDS = Histogram("mlkit_batch_compute_seconds", "Time to run one merged batch", ["model"],
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))
BATCH_SIZE = Histogram("mlkit_batch_size", "Instances per merged batch", ["model"],
                       buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128))


@dataclasses.dataclass
class _Pending:
    payload: Any
    size: int
    future: asyncio.Future
    queued: float


class DynamicBatcher:
    """Merge concurrent ``submit`` calls into batches for ``run_batch``.

    ``run_batch(payloads)`` receives a list of request payloads and must return one result per
    payload, in order; a list of such callables gives one worker thread per callable (model
    instances); a result that is an ``Exception`` is raised to that caller only.
    ``size(payload)`` is the number of instances in a payload. ``arriving()``, when given, is the
    number of requests that are being prepared and will be submitted soon; when it is 0 and the queue
    is empty, the batch runs at once instead of waiting out ``max_latency_ms`` for requests that
    cannot come (a lone request pays no batching delay).
    """

    def __init__(self, run_batch: Runner | Sequence[Runner], *, model: str,
                 max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, max_latency_ms: float = DEFAULT_MAX_LATENCY_MS,
                 size: Callable[[Any], int] = len, arriving: Callable[[], int] | None = None,
                 max_queue: int = 0, queue_timeout_ms: float = 0.0) -> None:
        check_limits(max_queue, queue_timeout_ms)
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_latency_ms < 0:
            raise ValueError(f"max_latency_ms must be >= 0, got {max_latency_ms}")
        runners = list(run_batch) if isinstance(run_batch, Sequence) else [run_batch]
        if not runners or not all(callable(r) for r in runners):
            raise ValueError("run_batch must be a callable or a non-empty list of callables (one per instance)")
        self.runners = runners
        self.model = model
        self.max_batch_size = int(max_batch_size)
        self.max_latency = float(max_latency_ms) / 1000.0
        self.size = size
        self.arriving = arriving
        self.max_queue = int(max_queue)
        self.queue_timeout = float(queue_timeout_ms) / 1000.0
        self.seconds_per_request: float | None = None  # interpreter time per request, smoothed over recent batches
        self.batches = 0  # merged batches run so far (handy in tests and logs)
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task | None = None
        self._carry: _Pending | None = None
        self._free: asyncio.Queue[int] | None = None  # indexes of idle instances
        self._busy = 0  # instances running a batch
        self._collecting = False  # requests taken off the queue, batch not yet handed to an instance
        self._closed = False
        self._executors = [concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batch-{model}-{i}")
                           for i in range(len(runners))]
        self._metrics = (QUEUE_SECONDS.labels(model=model), COMPUTE_SECONDS.labels(model=model),
                         BATCH_SIZE.labels(model=model))
        self._depth = queue_depth(model)

    @property
    def instances(self) -> int:
        return len(self.runners)

    @property
    def idle(self) -> bool:
        return (not self._busy and not self._collecting and self._carry is None
                and (self._queue is None or self._queue.empty()))

    @property
    def queued(self) -> int:
        """Requests waiting for an instance."""
        return (0 if self._queue is None else self._queue.qsize()) + (self._carry is not None)

    def expected_wait(self, also_waiting: int = 0) -> float:
        """Seconds a request arriving now would wait for an instance (0 until a batch has been timed)."""
        ahead = self.queued + also_waiting + max(0, self._busy + 1 - self.instances)
        return ahead * (self.seconds_per_request or 0.0) / self.instances

    def check_room(self, also_waiting: int = 0) -> None:
        """Raise ``ServerBusy`` when the queue, with ``also_waiting`` requests on their way to it, is full, or when
        the requests ahead would outlast the queue deadline."""
        if self.max_queue and self.queued + also_waiting >= self.max_queue:
            raise queue_full(self.model, self.max_queue)
        if self.queue_timeout and (wait := self.expected_wait(also_waiting)) > self.queue_timeout:
            raise past_deadline(self.model, wait, self.queue_timeout, expected=True)

    async def submit(self, payload: Any, *, inline: bool = False) -> Any:
        """Queue one request and wait for its own result (``inline``: see the module's docstring)."""
        if self._closed:
            raise RuntimeError(f"the batcher of {self.model} is closed")
        if inline and self.idle and (self.arriving is None or self.arriving() == 0):
            return self._run_inline(payload)
        self.check_room()
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._free = asyncio.Queue()
            for i in range(self.instances):
                self._free.put_nowait(i)
            self._task = loop.create_task(self._loop(), name=f"batcher-{self.model}")
        fut = loop.create_future()
        self._queue.put_nowait(_Pending(payload, max(1, int(self.size(payload))), fut, time.perf_counter()))
        self._depth.inc()
        return await fut

    def _run_inline(self, payload: Any) -> Any:
        # Safe: with no batch running, no worker thread touches an interpreter, and none can start one
        # while this call holds the event loop.
        start = time.perf_counter()
        (result,) = self._execute(0, [payload])
        self._record([0.0], max(1, int(self.size(payload))), time.perf_counter() - start)
        if isinstance(result, BaseException):
            raise result
        return result

    def _execute(self, worker: int, payloads: list[Any]) -> list[Any]:
        """One result per payload from instance ``worker``; a failed batch gives every caller the exception."""
        try:
            results = self.runners[worker](payloads)
            if len(results) != len(payloads):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(payloads)} requests")
            return list(results)
        except Exception as exc:  # noqa: BLE001 - every caller of this batch gets the error
            log.exception("batch of %d requests for %s failed", len(payloads), self.model)
            return [exc] * len(payloads)

    def _record(self, waits: list[float], size: int, seconds: float) -> None:
        per_request = seconds / max(1, len(waits))
        old = self.seconds_per_request
        self.seconds_per_request = per_request if old is None else 0.8 * old + 0.2 * per_request
        q_hist, c_hist, s_hist = self._metrics
        for wait in waits:
            q_hist.observe(wait)
        s_hist.observe(size)
        c_hist.observe(seconds)
        self.batches += 1

    async def close(self) -> None:
        """Finish everything queued, then stop the loop task and the worker thread."""
        self._closed = True
        while not self.idle:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for ex in self._executors:
            ex.shutdown(wait=True)

    def close_now(self) -> None:
        """Stop without waiting (for a server that is shutting down)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        for ex in self._executors:
            ex.shutdown(wait=False, cancel_futures=True)

    async def _next(self) -> _Pending:
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        return await self._queue.get()

    async def _collect(self) -> list[_Pending]:
        first = await self._next()
        self._collecting = True  # close() must not stop the loop under these requests
        batch, n = [first], first.size
        deadline = first.queued + self.max_latency
        while n < self.max_batch_size:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                timeout = deadline - time.perf_counter()
                if timeout <= 0 or (self.arriving is not None and self.arriving() == 0):
                    break  # waiting could not grow the batch: nobody else is on the way
                try:
                    item = await asyncio.wait_for(self._queue.get(), timeout)
                except TimeoutError:
                    break
            if n + item.size > self.max_batch_size:
                self._carry = item
                break
            batch.append(item)
            n += item.size
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        running: set[asyncio.Task] = set()
        try:
            while True:
                worker = await self._free.get()  # requests pile up while every instance is busy
                batch = self._still_wanted(await self._collect())
                if not batch:
                    self._collecting = False
                    self._free.put_nowait(worker)
                    continue
                self._busy += 1
                self._collecting = False
                task = loop.create_task(self._run(worker, batch))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in running:
                task.cancel()

    def _still_wanted(self, batch: list[_Pending]) -> list[_Pending]:
        """The requests of ``batch`` to run: not those whose callers gave up, nor those past their deadline."""
        now, keep = time.perf_counter(), []
        for p in batch:
            self._depth.dec()
            if p.future.done():
                continue
            if self.queue_timeout and now - p.queued > self.queue_timeout:
                p.future.set_exception(past_deadline(self.model, now - p.queued, self.queue_timeout))
                continue
            keep.append(p)
        return keep

    async def _run(self, worker: int, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        try:
            start = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executors[worker], self._execute, worker,
                                                     [p.payload for p in batch])
            except RuntimeError as exc:  # the executor was shut down (close_now) before this batch ran
                results = [exc] * len(batch)
            self._record([start - p.queued for p in batch], sum(p.size for p in batch), time.perf_counter() - start)
            for p, r in zip(batch, results, strict=True):
                if p.future.done():
                    continue
                if isinstance(r, BaseException):
                    p.future.set_exception(r)
                else:
                    p.future.set_result(r)
        finally:
            self._busy -= 1
            self._free.put_nowait(worker)
