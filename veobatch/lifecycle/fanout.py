"""Run a group's requests at once: up to `size` in flight, each in a thread of the fanout's own.

A row group's POSTs (and a poll group's GETs) spend their time waiting for the relay; threads
let one process keep several in flight while its database work stays in one thread. The pool
is made on first use, in the process that uses it: a Celery prefork child forked from a parent
that had one makes its own (threads do not survive a fork).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")


class Fanout:
    def __init__(self, size: int, name: str = "veo-batch-send") -> None:
        if size < 1:
            raise ValueError("a fanout needs at least one thread")
        self.size = size
        self._name = name
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def map(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        """Each call's result, in order. Every call has ended when this returns, whatever
        happened: if one raised, the first such error is raised then."""
        return self.start(calls).results()

    def start(self, calls: Sequence[Callable[[], T]]) -> Running[T]:
        """The calls started (run here at once if the fanout has one thread, or one call):
        their results later, while this thread does something else."""
        if self.size == 1 or len(calls) <= 1:
            return Running.done(calls)
        executor = self._executor()
        return Running([executor.submit(call) for call in calls])

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.shutdown(wait=True)
            self._pool = None

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = ThreadPoolExecutor(self.size, thread_name_prefix=self._name)
                self._pid = os.getpid()
            return self._pool


class Running(Generic[T]):
    """Calls a fanout started: `results()` waits for every one of them."""

    def __init__(self, futures: list[Future[T]]) -> None:
        self._futures = futures

    @classmethod
    def done(cls, calls: Sequence[Callable[[], T]]) -> Running[T]:
        """The calls made one after another, here and now."""
        futures: list[Future[T]] = []
        for call in calls:
            future: Future[T] = Future()
            try:
                future.set_result(call())
            except BaseException as exc:  # raised by results(), as from a thread
                future.set_exception(exc)
            futures.append(future)
        return cls(futures)

    def results(self) -> list[T]:
        """Each call's result, in order, once every call has ended; if one raised, the
        first such error is raised."""
        errors = [f.exception() for f in self._futures]  # waits for each
        for error in errors:
            if error is not None:
                raise error
        return [f.result() for f in self._futures]

    def wait(self, timeout: float | None = None) -> bool:
        """Until every call has ended (errors left unread), or `timeout` seconds: whether
        every call has ended."""
        return not futures.wait(self._futures, timeout).not_done

    def ended(self) -> list[int]:
        """The indices of the calls that have ended."""
        return [n for n, future in enumerate(self._futures) if future.done()]

    def result(self, index: int) -> T:
        """Call `index`'s result (it has ended), or the error it raised."""
        return self._futures[index].result()

    def __len__(self) -> int:
        return len(self._futures)
