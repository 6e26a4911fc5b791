"""One load in a child process of its own, measured: its wall time from spawning it to its
exit (interpreter start-up and imports count, as they do for a user), its peak RSS (the
`ru_maxrss` that `os.wait4` returns for exactly that child) and the peak memory of its whole
process tree (RSS and PSS, sampled every 20 ms); then the stored row count is checked against
the file's.

Linux starts a child's `ru_maxrss` at the parent's peak (the child begins as a copy of the
parent before `exec`), so no figure can be lower than bench/load.py's own peak RSS: kept
small because it streams the CSV and imports neither pandas nor SQLAlchemy.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from bench.harness.processes import BenchError

ERROR_TAIL_CHARS: Final = 3000  # of a failed child's output (pandas quotes whole statements)


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_kib: int
    stdout: str
    stderr: str
    tree_rss_kib: int = 0  # peak of the summed RSS of the process and its children (sampled)
    tree_pss_kib: int = 0  # the same in PSS: shared pages counted once across the tree


def _descendants(pid: int) -> list[int]:
    """`pid` and every process below it (veo-batch forks a reader process)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    queue.extend(int(child) for child in handle.read().split())
            except OSError:
                pass
    return found


def _memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB, zeros if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            fields = dict(line.split(":", 1) for line in handle if ":" in line)
    except OSError:
        return 0, 0
    return int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0])


def run_measured(argv: Sequence[str], env: dict[str, str]) -> Run:
    """Run `argv` to its end: its wall time, its own peak RSS (from wait4) and the peak memory
    of its whole process tree, sampled every 20 ms. Fails unless it exits 0."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(argv, env=env, stdout=out, stderr=err)
        tree_rss = tree_pss = 0
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            sizes = [_memory_kib(p) for p in _descendants(child.pid)]
            tree_rss = max(tree_rss, sum(rss for rss, _ in sizes))
            tree_pss = max(tree_pss, sum(pss for _, pss in sizes))
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        run = Run(
            seconds, usage.ru_maxrss, out.read().decode(), err.read().decode(), tree_rss, tree_pss
        )
    if child.returncode != 0:
        tail = (run.stdout + run.stderr)[-ERROR_TAIL_CHARS:]
        raise BenchError(f"`{shlex.join(argv)}` exited with {child.returncode}:\n{tail}")
    return run


def with_database(url: str) -> dict[str, str]:
    return {**os.environ, "VEO_DATABASE_URL": url}


@dataclass
class Result:
    database: str
    tool: str
    rows: int
    seconds: float
    peak_rss_mb: float  # the largest single process
    how: str
    output: str = ""
    tree_rss_mb: float = 0.0  # all processes of the load together, shared pages counted twice
    tree_pss_mb: float = 0.0  # all processes together, shared pages counted once
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds


def measured_load(
    database: str,
    tool: str,
    how: str,
    argv: Sequence[str],
    env: dict[str, str],
    rows: int,
    stored: Callable[[], int],
) -> Result:
    """Run one load and check that it stored `rows` rows."""
    print(f"{database}: {tool}: {how} ...", flush=True)
    run = run_measured(argv, env)
    count = stored()
    if count != rows:
        raise BenchError(f"{database}: {tool} stored {count:,} rows, the file has {rows:,}")
    output = (run.stdout + run.stderr).strip()
    if output:
        print("  " + output.replace("\n", "\n  "))
    return Result(
        database,
        tool,
        rows,
        run.seconds,
        run.peak_rss_kib / 1024,
        how,
        output,
        tree_rss_mb=run.tree_rss_kib / 1024,
        tree_pss_mb=run.tree_pss_kib / 1024,
    )
