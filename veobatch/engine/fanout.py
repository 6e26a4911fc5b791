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
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

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
        if self.size == 1 or len(calls) <= 1:
            return [call() for call in calls]
        futures: list[Future[T]] = [self._executor().submit(call) for call in calls]
        errors = [f.exception() for f in futures]  # waits for each
        for error in errors:
            if error is not None:
                raise error
        return [f.result() for f in futures]

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
