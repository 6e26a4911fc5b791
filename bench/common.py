"""What the benchmark scripts share: their child processes (each in a process group of its own,
with its log, CPU time and stop), the CPU time and peak RSS of groups of processes (a child's
tree, a system service), the mock provider's handle, scratch PostgreSQL and Redis databases,
the state of the code measured and the JSON file of results.

The scripts run as `python bench/NAME.py`; each puts the repository's root on `sys.path` and
imports this module as `bench.common`, the name mypy checks it under.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, LiteralString

import httpx
import psycopg
from psycopg import sql

REPO: Final = Path(__file__).resolve().parent.parent
OUT_DIR: Final = REPO / "bench" / "out"
PG_ADMIN_DSN: Final = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
STOP_SECONDS: Final = 15.0  # SIGTERM, then this long, then SIGKILL
START_SECONDS: Final = 60.0  # for a worker, the mock or the scheduler to come up
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
PAGE_KIB: Final = os.sysconf("SC_PAGE_SIZE") // 1024
RSS_EVERY: Final = 0.2  # seconds between looks at the RSS of the processes measured
PROBLEM: Final = re.compile(r"Traceback|ERROR|CRITICAL|WARNING|Error:|Exception", re.IGNORECASE)
NOT_A_PROBLEM: Final = re.compile(r"superuser privileges|_warn_or_raise_security_error")


class BenchError(Exception):
    """A measurement failed: the benchmark stops with this message."""


# ---------------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Process:
    """One process as /proc/PID/stat shows it."""

    name: str  # the command name (field 2): `postgres`, `redis-server`, `python`...
    parent: int
    group: int  # its process group
    cpu_ticks: int  # utime + stime + cutime + cstime: its own CPU and its reaped children's
    rss_kib: int  # field 24, its resident pages: VmRSS of /proc/PID/status, statm's resident


def _read_process(pid: int) -> Process | None:
    try:  # os.read: a third of Path.read_text's time, which counts in a look at every process
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
        try:
            text = os.read(fd, 4096).decode(errors="replace")
        finally:
            os.close(fd)
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # field 3, the state, is index 0
    return Process(
        name=text[text.index("(") + 1 : text.rindex(")")],
        parent=int(fields[1]),
        group=int(fields[2]),
        cpu_ticks=sum(int(f) for f in fields[11:15]),
        rss_kib=int(fields[21]) * PAGE_KIB,
    )


@dataclass(frozen=True)
class Snapshot:
    """Every process on the machine at one moment (one pass over /proc)."""

    processes: dict[int, Process]

    @classmethod
    def take(cls) -> Snapshot:
        found = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (process := _read_process(int(entry))) is not None:
                found[int(entry)] = process
        return cls(found)

    def below(self, roots: Iterable[int]) -> list[int]:
        """`roots` and every process below them (Celery's prefork children), those alive."""
        children: dict[int, list[int]] = {}
        for pid, process in self.processes.items():
            children.setdefault(process.parent, []).append(pid)
        found, queue = set(), [pid for pid in roots if pid in self.processes]
        while queue:
            pid = queue.pop()
            if pid not in found:
                found.add(pid)
                queue.extend(children.get(pid, []))
        return sorted(found)

    def named(self, name: str) -> list[int]:
        return [pid for pid, process in self.processes.items() if process.name == name]

    def cpu_seconds(self, pids: Iterable[int]) -> float:
        """CPU time of `pids` (with their threads, and the children they reaped)."""
        return sum(self.processes[p].cpu_ticks for p in pids if p in self.processes) / CLK_TCK

    def rss_kib(self, pids: Iterable[int]) -> int:
        return sum(self.processes[p].rss_kib for p in pids if p in self.processes)


Selector = Callable[[Snapshot], list[int]]  # the processes of a group, in a snapshot


def tree_of(child: Child) -> Selector:
    """A child's process group: it and every process below it."""
    return lambda snapshot: snapshot.below([child.proc.pid])


def service(name: str, exclude: Collection[int] = ()) -> Selector:
    """A system service: every process called `name` and every process below one, but
    `exclude` (a PostgreSQL backend of this script's own, say)."""
    return lambda snapshot: [
        pid for pid in snapshot.below(snapshot.named(name)) if pid not in exclude
    ]


def children_cpu() -> float:
    """CPU time of every child this process has waited for (a reaped child's, in full)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class PeakRss:
    """The peak RSS of groups of processes: the largest sum over a group's processes at one
    look, looked at every `every` seconds by a thread of its own between start() and stop()
    (and once more by each of those two)."""

    def __init__(self, every: float = RSS_EVERY) -> None:
        self.every = every
        self.samples = 0
        self._groups: dict[str, Selector] = {}
        self._peaks: dict[str, int] = {}  # KiB
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def watch(self, name: str, select: Selector) -> None:
        with self._lock:
            self._groups[name] = select
            self._peaks.setdefault(name, 0)

    def sample(self) -> None:
        snapshot = Snapshot.take()
        with self._lock:
            for name, select in self._groups.items():
                self._peaks[name] = max(self._peaks[name], snapshot.rss_kib(select(snapshot)))
            self.samples += 1

    def _run(self) -> None:
        while not self._done.wait(self.every):
            self.sample()

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def stop(self) -> dict[str, float]:
        """Stop looking (once; again does nothing more); each group's peak in MiB."""
        if self._thread.is_alive():
            self._done.set()
            self._thread.join()
            self.sample()
        with self._lock:
            return {name: kib / 1024 for name, kib in self._peaks.items()}


def reap(child: Child, timeout: float) -> resource.struct_rusage:
    """Wait for `child` to exit, looking every 5 ms (BenchError after `timeout` s): the rusage
    `os.wait4` gives for exactly that child, its reaped children included. Its `returncode`
    is set, as Popen.wait() would."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(child.proc.pid, os.WNOHANG)
        if pid:
            child.proc.returncode = os.waitstatus_to_exitcode(status)
            return usage
        if time.monotonic() > deadline:
            raise BenchError(f"{child.name} did not end in {timeout:.0f} s:\n{child.tail()}")
        time.sleep(0.005)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def cpu(self) -> float:
        """User + system CPU time of its process tree (each process with all its threads and
        the children it has reaped: a prefork child replaced meanwhile counts)."""
        snapshot = Snapshot.take()
        return snapshot.cpu_seconds(snapshot.below([self.proc.pid]))

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def tail(self, chars: int = 3000) -> str:
        return self.output()[-chars:]

    def wait_for(self, pattern: str, timeout: float = START_SECONDS) -> tuple[float, re.Match[str]]:
        """The moment `pattern` shows in the log (time.monotonic()) and its match."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = compiled.search(self.output())
            if match:
                return time.monotonic(), match
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with {self.proc.returncode} before "
                    f"/{pattern}/:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name}: no /{pattern}/ after {timeout} s:\n{self.tail()}")
            time.sleep(0.01)

    def problems(
        self, not_a_problem: re.Pattern[str] = NOT_A_PROBLEM, limit: int = 5
    ) -> tuple[int, list[str]]:
        """Lines of the log that look like trouble: how many, and the first distinct ones."""
        lines = [
            line.strip()
            for line in self.output().splitlines()
            if PROBLEM.search(line) and not not_a_problem.search(line)
        ]
        return len(lines), list(dict.fromkeys(lines))[:limit]


class Children:
    """Every process this script starts, each in a process group of its own."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[Child] = []

    def spawn(self, name: str, argv: Sequence[str], env: dict[str, str], cwd: Path = REPO) -> Child:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, proc, log)
        self.running.append(child)
        return child

    def stop(self, *children: Child) -> None:
        """SIGTERM each child's group, SIGKILL what is left after STOP_SECONDS."""
        for child in children:
            if child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for child in children:
            try:
                child.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGKILL)  # not reaped yet: still our group
                child.proc.wait()
            self._sweep(child.proc.pid)
            if child in self.running:
                self.running.remove(child)

    @staticmethod
    def _sweep(pgid: int) -> None:
        """Kill members left in the group of a leader that has exited (orphaned children)."""
        for pid, process in Snapshot.take().processes.items():
            if process.group == pgid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def stop_all(self) -> None:
        self.stop(*list(self.running))


def problems_of(
    children: Iterable[Child], not_a_problem: re.Pattern[str] = NOT_A_PROBLEM
) -> dict[str, Any]:
    found = {}
    for child in children:
        count, lines = child.problems(not_a_problem)
        if count:
            found[child.name] = {"lines": count, "first": lines}
    return found


def _terminate(signum: int, _frame: types.FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally` that stops the children


@contextlib.contextmanager
def workspace(prefix: str, keep: bool) -> Iterator[tuple[Path, Children]]:
    """A new temporary directory and the Children that log into its `logs` folder. However the
    block ends (SIGTERM too), every child still running is stopped and the directory removed,
    unless `keep`. A BenchError is printed with where the logs are, which are then kept, and
    raised again."""
    signal.signal(signal.SIGTERM, _terminate)
    work = Path(tempfile.mkdtemp(prefix=prefix))
    logs = work / "logs"
    logs.mkdir()
    children = Children(logs)
    try:
        yield work, children
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"logs: {logs}", file=sys.stderr)
        keep = True
        raise
    finally:
        children.stop_all()
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def veo_batch(*args: str) -> list[str]:
    return [sys.executable, "-m", "veobatch", *args]


def base_env(**extra: str) -> dict[str, str]:
    """This environment without any VEO_* setting of its own, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEO_")}
    return {**env, **extra}


def run_quietly(argv: Sequence[str], env: dict[str, str], timeout: float = 300) -> str:
    """Run a short command to its end; its output. Fails unless it exits 0."""
    try:
        done = subprocess.run(
            argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"`{' '.join(argv)}` did not end in {timeout} s") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-3000:]
        raise BenchError(f"`{' '.join(argv)}` exited with {done.returncode}:\n{output}")
    return done.stdout + done.stderr


# ---------------------------------------------------------------------------------- services


@dataclass
class Mock:
    """A mock provider (`veo-batch mock-api`) running as `child`, answering at `url`."""

    child: Child
    url: str

    @classmethod
    def start(cls, children: Children, name: str, key: str, *options: str) -> Mock:
        """A fresh mock provider in a subprocess, on a port the system picks."""
        argv = veo_batch("mock-api", "--port", "0", "--key", key, *options)
        child = children.spawn(name, argv, base_env())
        _, match = child.wait_for(r"mock provider on (http://\S+)")
        return cls(child, match[1])

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/_mock/stats", timeout=30)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def facts(self, counters: Sequence[str]) -> dict[str, Any]:
        """The mock's `counters`, with the prompts created more than once counted, not listed."""
        stats = self.stats()
        created = stats.get("created_by_prompt", {})
        return {
            **{name: stats[name] for name in counters},
            "prompts_created_twice": sum(1 for n in created.values() if n > 1),
        }


def write_jobs(path: Path, rows: int, row_id: str, prompt: str, image: str) -> Path:
    """A JSON Lines job file whose prompts are all different (the mock counts per prompt):
    `row_id` and `prompt` are formats of the row's number `n`."""
    with path.open("w", encoding="utf-8") as out:
        for n in range(rows):
            row = {
                "id": row_id.format(n=n),
                "prompt": prompt.format(n=n),
                "model": "veo3.1",
                "images": [image],
            }
            out.write(json.dumps(row) + "\n")
    return path


def pg_admin(statement: LiteralString, database: str) -> None:
    """Run `statement` ({} for the name `database`) on the server's `postgres` database."""
    query = sql.SQL(statement).format(sql.Identifier(database))
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(query)


def recreate_database(database: str) -> None:
    """Drop `database` if it exists (closing its connections) and create it empty."""
    drop_database(database)
    pg_admin("CREATE DATABASE {}", database)


def drop_database(database: str) -> None:
    pg_admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", database)


# Redis is imported where it is used: load.py needs none, and every module it imports raises
# its own peak RSS, the floor of the peak RSS it measures in its children.


def flush_redis(url: str) -> None:
    import redis  # noqa: PLC0415 - see above

    client = redis.Redis.from_url(url, socket_timeout=10)
    try:
        client.flushdb()
    finally:
        client.close()


def check_services(database: str, redis_url: str) -> None:
    """Fail unless PostgreSQL (its `postgres` database) and Redis at `redis_url` answer."""
    import redis  # noqa: PLC0415 - see above

    try:
        pg_admin("SELECT 1", database)
    except psycopg.OperationalError as exc:
        raise BenchError(f"PostgreSQL at 127.0.0.1:5432 cannot be reached: {exc}") from exc
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise BenchError(f"Redis at {redis_url} cannot be reached: {exc}") from exc
    finally:
        client.close()


# ---------------------------------------------------------------------------------- results


def git_state() -> dict[str, Any]:
    """The commit measured, the files changed since it and a hash of those changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "HEAD"),
        "changed": git("status", "--short").splitlines(),
        "diff_sha256": hashlib.sha256(git("diff", "HEAD").encode()).hexdigest(),
    }


def note_code_change(document: dict[str, Any]) -> None:
    """Warn, and add `code_at_end` to `document`, when the working tree is no longer as its
    `code` (from git_state() at the start) says."""
    if git_state() != document["code"]:
        document["code_at_end"] = git_state()
        print(
            "\nwarning: the working tree changed during the run (see code and code_at_end in "
            "the JSON); parts started before the change ran the old code"
        )


def machine_facts() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def write_json(kind: str, started: datetime, document: dict[str, Any]) -> Path:
    """Write `document` to bench/out/KIND-<started>.json; its path."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{kind}-{started:%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def print_problems(results: Iterable[tuple[str, dict[str, Any] | None]]) -> None:
    """The log lines that look like trouble, of each (label, result) that has `problems`."""
    for label, result in results:
        for name, found in (result or {}).get("problems", {}).items():
            print(
                f"\nnote: {label}: {found['lines']:,} log lines of {name} look like trouble; "
                "the first distinct ones:"
            )
            for line in found["first"]:
                print(f"  {line[:300]}")
