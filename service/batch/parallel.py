"""The threads of a local scoring run: read ahead, score several chunks at once, keep the input order.

numpy, pandas and pyarrow release the GIL in their kernels, so threads overlap the parsing, scoring and
writing of consecutive chunks; each kernel runs on one thread (:func:`one_thread_per_kernel`).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from threadpoolctl import threadpool_limits


def one_thread_per_kernel() -> threadpool_limits:
    """Single-threaded BLAS (a process-wide setting) and OpenMP (the calling thread's) while chunks are scored
    in parallel: BLAS's own threads would only compete for the same cores (and OpenBLAS's spin-waiting
    multiplies the CPU time of a run; docs/batch.md)."""
    return threadpool_limits(limits=1)


def in_order[T, R](function: Callable[[T], R], items: Iterator[T], workers: int) -> Iterator[R]:
    """``map(function, items)`` on ``workers`` threads, in order, with at most ``workers`` items in flight."""
    with ThreadPoolExecutor(workers, thread_name_prefix="lenrisk-score") as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) >= workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def prefetched[T](items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``items`` produced by a background thread at most ``depth`` ahead (pyarrow parsing releases the GIL).

    An error in the producer is raised here; closing this iterator stops the producer.
    """
    slots: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[bool, Any]) -> None:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.05)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for item in items:
                put((False, item))
                if stop.is_set():
                    return
            put((True, None))
        except BaseException as err:  # handed to the consumer
            put((True, err))

    thread = threading.Thread(target=produce, name="lenrisk-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            done, value = slots.get()
            if done:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()
        thread.join()
