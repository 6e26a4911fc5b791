"""Is a deployment healthy? Checks that each say, in words, what they found and what to do.

`veo-batch health` runs the checks of a role (what a compose healthcheck of that service
asks), `serve`'s `/readyz` the database one, `veo-batch doctor` these and its own. Each check
is a plain function returning a `Check`; none raises.

- database: reachable, and at the newest schema;
- redis: reachable (when VEO_REDIS_URL is set; a scheduler and workers need it);
- scheduler: a scheduler process beating (it ticks), and one of them holding the leader lock;
- workers: at least one worker process beating;
- answers: no task id of this host's submissions waits to be written to its row (a warning
  while one does, a failure once the database refused one: see `lifecycle.unrecorded`);
- accounts: no relay account paused (a warning naming each one that is, and why).

With `here_only`, the scheduler and worker checks look for a process of this host only (a
container's healthcheck asks about its own process, not the deployment's).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import redis
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from veobatch import heartbeat
from veobatch.accounts import store as accounts
from veobatch.errors import DatabaseError
from veobatch.lifecycle.unrecorded import Unrecorded
from veobatch.settings import Settings
from veobatch.store import database

REDIS_TIMEOUT: Final = 3.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str  # what was found
    fix: str = ""  # what to do, when not ok
    warning: bool = False  # not ok, but nothing stops working (doctor's advice)

    @property
    def failed(self) -> bool:
        return not self.ok and not self.warning


def database_check(settings: Settings, engine: Engine | None = None) -> Check:
    """Reachable and at the newest schema (through `engine` when given, else a new one)."""
    url = database.safe_url(settings.database_url)
    try:
        own = engine or database.create_engine(settings.database_url)
        try:
            current = database.current_revision(own)
        finally:
            if engine is None:
                own.dispose()
    except (SQLAlchemyError, DatabaseError, OSError) as exc:
        reason = getattr(exc, "orig", None) or exc
        return Check(
            "database",
            False,
            f"cannot reach {url}: {str(reason).strip().splitlines()[0][:300]}",
            "check VEO_DATABASE_URL and that the database server is up",
        )
    head = database.head_revision()
    if current != head:
        state = f"at revision {current}" if current else "empty"
        return Check(
            "database",
            False,
            f"{url} is {state}, not at the newest schema ({head})",
            "run `veo-batch db upgrade` (before starting new workers)",
        )
    return Check("database", True, f"{url} reachable, schema {head}")


def redis_client(settings: Settings) -> redis.Redis | None:
    if not settings.redis_url:
        return None
    return redis.Redis.from_url(
        settings.redis_url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
    )


def redis_check(broker: redis.Redis | None, needed: bool) -> Check:
    if broker is None:
        if needed:
            return Check("redis", False, "VEO_REDIS_URL is not set", "set VEO_REDIS_URL")
        return Check("redis", True, "not used (no VEO_REDIS_URL: the embedded mode)")
    try:
        broker.ping()
    except redis.RedisError as exc:
        return Check(
            "redis",
            False,
            f"cannot reach Redis: {exc}",
            "check VEO_REDIS_URL and that Redis is up (no row is lost while it is down: the "
            "scheduler sends the lost messages again once it is back)",
        )
    return Check("redis", True, "reachable")


def scheduler_check(broker: redis.Redis, here_only: bool) -> Check:
    try:
        beats = _here(heartbeat.beats(broker, "scheduler"), here_only)
        holder = broker.get(heartbeat.LOCK_KEY)
    except redis.RedisError as exc:
        return Check("scheduler", False, f"cannot ask Redis: {exc}", "bring Redis back")
    where = " on this host" if here_only else ""
    if not beats:
        return Check(
            "scheduler",
            False,
            f"no scheduler is running{where} (none has ticked recently)",
            "start `veo-batch scheduler` (one per deployment; a second one waits as a standby)",
        )
    leading = sum(b.leading for b in beats)
    if holder is None or (not leading and not here_only):
        return Check(
            "scheduler",
            False,
            f"{len(beats)} scheduler(s) running{where}, none holds the leader lock",
            "wait a few seconds (a standby takes over); if it stays so, restart the scheduler",
        )
    role = "leading" if leading else "standby (another one leads)"
    return Check("scheduler", True, f"{len(beats)} running{where}, {role}")


def workers_check(broker: redis.Redis, here_only: bool) -> Check:
    try:
        beats = _here(heartbeat.beats(broker, "worker"), here_only)
    except redis.RedisError as exc:
        return Check("workers", False, f"cannot ask Redis: {exc}", "bring Redis back")
    where = " on this host" if here_only else ""
    if not beats:
        return Check(
            "workers",
            False,
            f"no worker is running{where}",
            "start `veo-batch worker` (as many hosts as you like)",
        )
    if here_only:
        return Check("workers", True, f"{len(beats)} running on this host")
    hosts = len({b.host for b in beats})
    return Check("workers", True, f"{len(beats)} running on {hosts} host{'s' if hosts > 1 else ''}")


def _here(beats: list[heartbeat.Beat], here_only: bool) -> list[heartbeat.Beat]:
    host = socket.gethostname()
    return [b for b in beats if b.host == host] if here_only else beats


def answers_check(settings: Settings) -> Check:
    """Task ids this host's submissions could not write to their rows yet (the database was
    away), or that the database refused: a warning while any wait, saying where."""
    kept = Unrecorded(Path(settings.data_dir))
    waiting = kept.count(kept.pending)
    refused = kept.count(kept.refused)
    if not waiting and not refused:
        return Check("answers", True, "every task id the relay gave is on its row")
    parts = []
    if waiting:
        parts.append(f"{waiting} task id(s) wait in {kept.pending} for the next submission")
    if refused:
        parts.append(f"{refused} the database refused are kept in {kept.refused}")
    return Check(
        "answers",
        False,
        "; ".join(parts),
        "their rows are in doubt: reconcile them with the relay (each line names the row "
        "and the task)",
        warning=not refused,
    )


def accounts_check(settings: Settings) -> Check:
    """No relay account paused (a warning naming each one that is, and why: the others still
    send, and a batch pauses only when none can take its rows)."""
    engine = database.create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            paused = [row for row in accounts.all_states(conn) if row.state == accounts.PAUSED]
    except SQLAlchemyError:
        return Check("accounts", True, "not known (the database check says why)")
    finally:
        engine.dispose()
    if not paused:
        return Check("accounts", True, "none paused")
    return Check(
        "accounts",
        False,
        "; ".join(f"{row.name} paused ({row.reason})" for row in paused),
        "top up the balance or fix the key, then `veo-batch accounts resume NAME`",
        warning=True,
    )


def checks_for(settings: Settings, role: str = "all") -> list[Check]:
    """The checks of `role` (see the module docstring), in order; later ones are skipped
    when what they need is down."""
    found = [database_check(settings)]
    if role != "api":
        found.append(answers_check(settings))
    if role in ("all", "worker") and found[0].ok:
        found.append(accounts_check(settings))
    if role == "api":
        return found
    broker = redis_client(settings)
    needed = role in ("scheduler", "worker") or settings.redis_url is not None
    try:
        found.append(redis_check(broker, needed))
        if broker is None or not found[-1].ok:
            return found
        here_only = role != "all"
        asks: list[Callable[[redis.Redis, bool], Check]] = []
        if role in ("all", "scheduler"):
            asks.append(scheduler_check)
        if role in ("all", "worker"):
            asks.append(workers_check)
        found += [ask(broker, here_only) for ask in asks]
    finally:
        if broker is not None:
            broker.close()
    return found
