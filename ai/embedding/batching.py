"""Dynamic batching of question embeddings: questions that arrive together share one model call.

A batch of 16 questions costs about a third of the CPU per question of 16 single calls
(all-MiniLM-L6-v2's float graph, one thread), which is what lets hundreds of chats at once share two
cores. (The int8 graph questions use by default embeds each text alone, 1.2 ms a short question:
there the batcher keeps model calls on its one thread, off the event loop, and sheds load.)
One worker thread of the batcher's own (started on first use, never on import) runs the model;
the event loop and the database threads only wait on futures. The rule:

* The worker takes the oldest question and everything queued behind it, up to ``max_batch_size``.
* It waits for more only when there is evidence of company (more than one question queued, or
  the previous batch had several), and never past ``max_wait_ms`` after the oldest question
  arrived: a lone question on an idle server is embedded at once, with no added latency.
* While a batch runs, new questions queue up and form the next one.

At most ``max_pending`` questions wait; past that ``submit`` fails at once (load shedding, never a
blocked event loop). A failing batch fails the future of each of its questions. A cancelled
future (the client went away) is skipped. Safe after ``os.fork()``: the child starts its own worker.

Built on the research helper's prototype (scratch-embed/query_batcher.py), trimmed.
"""

from __future__ import annotations

import collections
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

EmbedBatch = Callable[[list[str]], Sequence[Sequence[float]]]


class QueryFuture(Future[list[float]]):
    """A question's vector to come; ``batch_size`` is the size of the batch computing it (0 while
    it waits in the queue), so a caller can tell a result due in a few milliseconds."""

    batch_size = 0


class BatcherOverloaded(RuntimeError):
    """Too many questions already wait for an embedding."""


@dataclass
class BatcherStats:
    batches: int = 0
    items: int = 0
    largest: int = 0
    sizes: collections.Counter[int] = field(default_factory=collections.Counter)


class _Item:
    __slots__ = ("enqueued", "future", "text")

    def __init__(self, text: str, future: QueryFuture, enqueued: float) -> None:
        self.text = text
        self.future = future
        self.enqueued = enqueued


class QueryBatcher:
    def __init__(
        self,
        embed_batch: EmbedBatch,
        *,
        max_batch_size: int = 16,
        max_wait_ms: float = 3.0,
        max_pending: int = 1024,
        name: str = "strata-query-embed",
        on_start: Callable[[], None] | None = None,
    ) -> None:
        if max_batch_size < 1 or max_pending < 1 or max_wait_ms < 0:
            raise ValueError("max_batch_size and max_pending must be at least 1, max_wait_ms at least 0")
        self._embed_batch = embed_batch
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_pending = max_pending
        self.name = name
        self._on_start = on_start  # run first on the worker thread (its priority, say)
        self.stats = BatcherStats()
        self._reset()
        _batchers.add(self)

    def _reset(self) -> None:
        self._ready = threading.Condition(threading.Lock())
        self._pending: collections.deque[_Item] = collections.deque()
        self._thread: threading.Thread | None = None
        self._last_batch = 0

    def submit(self, text: str) -> QueryFuture:
        """Queue one question; the future's result is its vector."""
        future = QueryFuture()
        with self._ready:
            if len(self._pending) >= self.max_pending:
                raise BatcherOverloaded(f"{len(self._pending)} questions already wait for an embedding")
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._pending.append(_Item(text, future, time.monotonic()))
            # Wake the worker when it may sleep on an empty queue, or on a batch that is now full.
            if len(self._pending) == 1 or len(self._pending) >= self.max_batch_size:
                self._ready.notify()
        return future

    def _run(self) -> None:
        if self._on_start is not None:
            self._on_start()
        while True:
            self._process(self._next_batch())

    def _next_batch(self) -> list[_Item]:
        with self._ready:
            while not self._pending:
                self._ready.wait()
            if self.max_wait > 0 and (len(self._pending) > 1 or self._last_batch > 1):
                deadline = self._pending[0].enqueued + self.max_wait
                while len(self._pending) < self.max_batch_size:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._ready.wait(remaining)
            count = min(len(self._pending), self.max_batch_size)
            self._last_batch = count
            return [self._pending.popleft() for _ in range(count)]

    def _process(self, batch: list[_Item]) -> None:
        live = [item for item in batch if item.future.set_running_or_notify_cancel()]
        if not live:
            return
        for item in live:
            item.future.batch_size = len(live)
        try:
            rows = self._embed_batch([item.text for item in live])
            if len(rows) != len(live):
                raise RuntimeError(f"embed_batch returned {len(rows)} vectors for {len(live)} texts")
        except Exception as exc:  # every waiter must hear of it, and the worker goes on
            for item in live:
                item.future.set_exception(exc)
            return
        self.stats.batches += 1
        self.stats.items += len(live)
        self.stats.largest = max(self.stats.largest, len(live))
        self.stats.sizes[len(live)] += 1
        for item, row in zip(live, rows, strict=True):
            item.future.set_result(list(row))


_batchers: weakref.WeakSet[QueryBatcher] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A forked child has no worker thread and may have copied a held lock: start afresh.
    for batcher in list(_batchers):
        batcher._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
