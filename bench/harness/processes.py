"""The benchmarks' child processes: each in a process group of its own, with its log and its
stop (SIGTERM, then SIGKILL), however the benchmark ends; the temporary directory they log
into; and the commands that start veo-batch.

The scripts run as `python bench/NAME.py`; each puts the repository's root on `sys.path` and
imports the harness as `bench.harness.*`, the names mypy checks it under.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench.harness.procfs import Snapshot

REPO: Final = Path(__file__).resolve().parent.parent.parent
STOP_SECONDS: Final = 15.0  # SIGTERM, then this long, then SIGKILL
START_SECONDS: Final = 60.0  # for a worker, the mock or the scheduler to come up
PROBLEM: Final = re.compile(r"Traceback|ERROR|CRITICAL|WARNING|Error:|Exception", re.IGNORECASE)
NOT_A_PROBLEM: Final = re.compile(r"superuser privileges|_warn_or_raise_security_error")


class BenchError(Exception):
    """A measurement failed: the benchmark stops with this message."""


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
