"""One step of bench/load.py in a child process of its own, measured: its wall time from
spawning it to its exit (interpreter start-up and imports count, as they do for a user), its
peak RSS (the `ru_maxrss` that `os.wait4` returns for exactly that child: the largest single
process of its tree, its reaped children included) and the peak memory of its whole process
tree (RSS and PSS, sampled every 250 ms); then what it stored or wrote is counted against the
rows of the file. The same for every tool: veo-batch, pandas, `sqlite3` and `psql`.

Linux starts a child's `ru_maxrss` at the parent's peak (the child begins as a copy of the
parent before `exec`), so no figure can be lower than bench/load.py's own peak RSS: kept
small (about 20 MB) because it streams the CSV, talks to PostgreSQL through `psql` and imports
neither veo-batch, psycopg, pandas nor SQLAlchemy.

On PostgreSQL the server's processes belong to no child: their memory counts in no figure,
their time in every wall time.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from bench.harness.processes import BenchError, base_env

ERROR_TAIL_CHARS: Final = 3000  # of a failed child's output (pandas quotes whole statements)
# Between looks at the memory of a child's tree. Reading a process's smaps (for PSS) walks its
# page tables and holds its memory lock: at every 20 ms it slowed a million-row load by a third.
SAMPLE_SECONDS: Final = 0.25


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


def _read(handle: IO[bytes]) -> str:
    handle.seek(0)
    return handle.read().decode(errors="replace")


def run_measured(argv: Sequence[str], env: dict[str, str], stdout: Path | None = None) -> Run:
    """Run `argv` to its end: its wall time, its own peak RSS (from wait4) and the peak memory
    of its whole process tree, sampled every 250 ms. Its standard output goes to the file
    `stdout` when given (as a shell's `> FILE` would), else it is kept. Fails unless it
    exits 0."""
    with ExitStack() as files:
        out = files.enter_context(tempfile.TemporaryFile())
        err = files.enter_context(tempfile.TemporaryFile())
        target = out if stdout is None else files.enter_context(stdout.open("wb"))
        started = time.perf_counter()
        child = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=target, stderr=err)
        tree_rss = tree_pss = 0
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            sizes = [_memory_kib(p) for p in _descendants(child.pid)]
            tree_rss = max(tree_rss, sum(rss for rss, _ in sizes))
            tree_pss = max(tree_pss, sum(pss for _, pss in sizes))
            time.sleep(SAMPLE_SECONDS)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        run = Run(seconds, usage.ru_maxrss, _read(out), _read(err), tree_rss, tree_pss)
    if child.returncode != 0:
        tail = (run.stdout + run.stderr)[-ERROR_TAIL_CHARS:]
        raise BenchError(f"`{shlex.join(argv)}` exited with {child.returncode}:\n{tail}")
    return run


def with_database(url: str) -> dict[str, str]:
    """This environment, without any VEO_* setting of its own, pointing veo-batch at `url`."""
    return base_env(VEO_DATABASE_URL=url)


@dataclass
class Result:
    step: str  # load or export
    database: str  # sqlite or postgresql
    tool: str  # veo-batch, or an anchor: pandas, copy, sqlite3, psql
    rows: int  # rows it stored or wrote, counted after it ended
    expected: int  # rows of the CSV file
    seconds: float
    peak_rss_mb: float  # the largest single process
    how: str
    output: str = ""
    tree_rss_mb: float = 0.0  # all processes of the step together, shared pages counted twice
    tree_pss_mb: float = 0.0  # all processes together, shared pages counted once
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds

    @property
    def memory_mb(self) -> float:
        """What the memory target is checked against: the larger of the largest process's
        peak RSS and the tree's PSS (a forked child's pages shared with its parent counted
        once, not in each as the tree's RSS counts them)."""
        return max(self.peak_rss_mb, self.tree_pss_mb)

    @property
    def counted_right(self) -> bool:
        return self.rows == self.expected


def measured(
    step: str,
    database: str,
    tool: str,
    how: str,
    argv: Sequence[str],
    env: dict[str, str],
    expected: int,
    count: Callable[[], int],
    stdout: Path | None = None,
) -> Result:
    """Run one step, then `count` the rows it stored or wrote (`expected`: the file's)."""
    print(f"{database}: {step}: {tool}: {how} ...", flush=True)
    run = run_measured(argv, env, stdout)
    rows = count()
    output = (run.stdout + run.stderr).strip()
    if output:
        print("  " + output.replace("\n", "\n  "))
    print(f"  {run.seconds:.2f} s, {rows:,} rows", flush=True)
    if rows != expected:
        print(f"  WRONG: {rows:,} rows, the file has {expected:,}")
    return Result(
        step,
        database,
        tool,
        rows,
        expected,
        run.seconds,
        run.peak_rss_kib / 1024,
        how,
        output,
        tree_rss_mb=run.tree_rss_kib / 1024,
        tree_pss_mb=run.tree_pss_kib / 1024,
    )
