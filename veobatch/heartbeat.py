"""Heartbeats in Redis: each worker and scheduler process says it is alive, so `veo-batch
health` (and a compose healthcheck) can tell a running deployment from a stuck one.

A beat is a key `veo-batch:beat:ROLE:HOST:PID` holding when it was written (and, for a
scheduler, whether it leads), that expires by itself: a process that stops beating (killed,
hung, its Redis gone) disappears within `ttl`. The scheduler's leader lock is named here too,
as health reads it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Final

import redis

PREFIX: Final = "veo-batch:beat"
LOCK_KEY: Final = "veo-batch:scheduler"  # the scheduler's leader lock
ROLES: Final = ("scheduler", "worker")
WORKER_EVERY: Final = 5.0  # seconds between a worker's beats
WORKER_TTL: Final = 20.0


@dataclass(frozen=True)
class Beat:
    role: str
    host: str
    pid: int
    at: float  # when it was written (Unix time)
    leading: bool = False


def key(role: str, host: str | None = None, pid: int | None = None) -> str:
    return f"{PREFIX}:{role}:{host or socket.gethostname()}:{pid or os.getpid()}"


def beat(broker: redis.Redis, role: str, ttl: float, *, leading: bool = False) -> None:
    """This process is alive (for `ttl` seconds)."""
    value = json.dumps({"at": time.time(), "leading": leading})
    broker.set(key(role), value, px=max(int(ttl * 1000), 1000))


def forget(broker: redis.Redis, role: str) -> None:
    """This process stops: its beat goes at once."""
    broker.delete(key(role))


def beats(broker: redis.Redis, role: str) -> list[Beat]:
    """The live beats of `role`, any host (a malformed one is skipped)."""
    found = []
    for raw_key in broker.scan_iter(match=f"{PREFIX}:{role}:*", count=500):
        name = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        parts = name.split(":")
        raw = broker.get(raw_key)
        if len(parts) != 5 or raw is None or not parts[4].isdigit():
            continue
        try:
            value = json.loads(raw)
            at, leading = float(value["at"]), bool(value.get("leading"))
        except (ValueError, KeyError, TypeError):
            continue
        found.append(Beat(role, parts[3], int(parts[4]), at, leading))
    return found


class Beating:
    """A daemon thread that beats for `role` every `every` seconds until `stop()`."""

    def __init__(
        self, broker: redis.Redis, role: str, every: float = WORKER_EVERY, ttl: float = WORKER_TTL
    ) -> None:
        self.broker, self.role, self.every, self.ttl = broker, role, every, ttl
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, daemon=True, name=f"veo-batch-{role}-beat"
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every + 1)
        with contextlib.suppress(redis.RedisError):  # Redis is gone: the beat expires by itself
            forget(self.broker, self.role)

    def _run(self) -> None:
        while True:
            with contextlib.suppress(redis.RedisError):  # health says so; the next one tries again
                beat(self.broker, self.role, self.ttl)
            if self._stop.wait(self.every):
                return
