"""A whole deadline for each request (connect, send, answer headers and body together), and
requests given up at once when their process stops.

A per-read timeout lets a server that sends one byte a second hold a request for ever. Here
one thread per process (`WATCHDOG`, started on first use, made again in a forked child) keeps
a heap of the deadlines of requests in flight; when one passes, it shuts down that request's
socket, so the read or write blocked on it returns at once and the request ends with
`ticket.failure()`: `httpx.ReadTimeout` (the same class a read timeout gives, so a POST is
still "ambiguous"). A request costs one heap push and two uncontended lock acquisitions, not a
thread.

`abandon(owner)` ends the GETs (polls, downloads) of `owner` in flight the same way, and makes
its later GETs fail at once, with `Abandoned`: they can be asked again later. POSTs are never
abandoned: one already sent may have made a task, and its answer says which.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import os
import socket
import threading
import time
import weakref
from contextvars import ContextVar
from typing import Final

import httpx

from veobatch.errors import Abandoned

RUNNING: Final = 0
DONE: Final = 1
EXPIRED: Final = 2
ABANDONED: Final = 3


class Ticket:
    """One request watched: its deadline, its socket once it has one, how it ended."""

    __slots__ = ("abandonable", "due", "owner", "seconds", "sock", "state")

    def __init__(self, seconds: float | None, owner: object, abandonable: bool) -> None:
        self.seconds = seconds
        self.due = math.inf if seconds is None else time.monotonic() + seconds
        self.owner = owner
        self.abandonable = abandonable
        self.sock: socket.socket | None = None
        self.state = RUNNING

    def failure(self) -> Exception | None:
        """What the request ends with, if the watchdog ended it."""
        if self.state == EXPIRED:
            return httpx.ReadTimeout(
                f"the whole deadline of {self.seconds:g} s (connect, send, answer) passed"
            )
        if self.state == ABANDONED:
            return Abandoned("given up: the process is stopping")
        return None

    def check(self) -> None:
        """Between the chunks of an answer read where no socket is known (a proxy, a
        caller's transport): raise if the deadline passed or the request was abandoned."""
        if self.state == RUNNING and time.monotonic() >= self.due:
            self.state = EXPIRED
        failure = self.failure()
        if failure is not None:
            raise failure


class Watchdog:
    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Ticket]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._abandoned: weakref.WeakSet[object] = weakref.WeakSet()

    def start(self, seconds: float | None, owner: object, abandonable: bool) -> Ticket:
        """A request begins: it must end within `seconds` (None: no deadline, not watched).
        Raises Abandoned if it is a GET of an owner that is stopping."""
        ticket = Ticket(seconds, owner, abandonable)
        with self._cond:
            if abandonable and owner in self._abandoned:
                raise Abandoned("given up: the process is stopping")
            if seconds is not None:
                heapq.heappush(self._heap, (ticket.due, next(self._order), ticket))
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="veo-batch-deadlines", daemon=True
                    )
                    self._thread.start()
                elif self._heap[0][2] is ticket:
                    self._cond.notify()  # sooner than what the thread waits for
        return ticket

    def attach(self, ticket: Ticket, sock: socket.socket) -> None:
        """The socket the request now uses (shut down at once if its time is already over)."""
        with self._cond:
            if ticket.state == RUNNING:
                ticket.sock = sock
            elif ticket.state != DONE:
                _shut(sock)

    def stop(self, ticket: Ticket) -> int:
        """The request is over (its socket is left alone from now on); how it ended."""
        with self._cond:
            if ticket.state == RUNNING:
                ticket.state = DONE
            ticket.sock = None
            return ticket.state

    def abandon(self, owner: object) -> None:
        """End `owner`'s GETs in flight, and fail its later ones at once."""
        with self._cond:
            self._abandoned.add(owner)
            for _, _, ticket in self._heap:
                if ticket.owner is owner and ticket.abandonable:
                    self._end(ticket, ABANDONED)

    def _end(self, ticket: Ticket, state: int) -> None:
        if ticket.state == RUNNING:
            ticket.state = state
            if ticket.sock is not None:
                _shut(ticket.sock)

    def _run(self) -> None:
        heap = self._heap
        with self._cond:
            while True:
                now = time.monotonic()
                # Requests that ended leave their entry: dropped when it comes to the top.
                while heap and (heap[0][2].state != RUNNING or heap[0][0] <= now):
                    self._end(heapq.heappop(heap)[2], EXPIRED)
                self._cond.wait(heap[0][0] - now if heap else None)


def _shut(sock: socket.socket) -> None:
    """Shut down a socket another thread may be blocked on: its read sees the end at once.
    (The socket's own level, under TLS too: TLS's shutdown would drop its state first.)"""
    with contextlib.suppress(OSError):  # closed meanwhile, or never connected
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


WATCHDOG: Final = Watchdog()
os.register_at_fork(after_in_child=WATCHDOG._reset)  # the thread and the lock stay behind

# The request this thread is making, for sockets opened where no ticket is passed (httpcore).
CURRENT: ContextVar[Ticket | None] = ContextVar("veobatch_request", default=None)
