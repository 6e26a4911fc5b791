"""CPU time and peak RSS of groups of processes (a child's tree, a system service such as
PostgreSQL), and how busy the whole machine was, between a start and a stop."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Final

from bench.harness.processes import Child
from bench.harness.procfs import CLK_TCK, Snapshot, machine_jiffies

RSS_EVERY: Final = 0.2  # seconds between looks at the RSS of the processes measured

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


@dataclass
class CpuClock:
    """CPU time and peak RSS of groups of processes, and how busy the machine was, between
    start() (entering the `with` block) and stop(). Each group is a Selector: a child's
    process tree (tree_of) or a system service (service). A group whose processes all exit
    meanwhile gets its CPU through `spent` (its rusage once reaped); one watched after the
    start has its peak RSS only. Leaving the block stops the RSS sampler in any case."""

    groups: dict[str, Selector]
    began: float = 0.0
    machine: tuple[int, int] = (0, 0)
    cpu: dict[str, float] = field(default_factory=dict)
    spent: dict[str, float] = field(default_factory=dict)
    rss: PeakRss = field(default_factory=PeakRss)

    def _now(self) -> dict[str, float]:
        snap = Snapshot.take()
        return {name: snap.cpu_seconds(select(snap)) for name, select in self.groups.items()}

    def __enter__(self) -> CpuClock:
        for name, select in self.groups.items():
            self.rss.watch(name, select)
        self.began = time.monotonic()
        self.machine = machine_jiffies()
        self.cpu = self._now()
        self.rss.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.rss.stop()

    def watch(self, name: str, select: Selector) -> None:
        self.rss.watch(name, select)

    def stop(self, rows: int) -> dict[str, Any]:
        """The figures; CPU also in ms per row of the `rows` measured (and in total)."""
        wall = time.monotonic() - self.began
        busy, total = machine_jiffies()
        used = {name: s - self.cpu[name] for name, s in self._now().items()}
        used.update(self.spent)
        peaks = self.rss.stop()
        machine = (busy - self.machine[0]) / CLK_TCK

        def per_row(seconds: float) -> float:
            return 1000 * seconds / rows

        return {
            "wall_seconds": wall,
            "cpu_seconds": used,
            "cpu_share_of_one_core": {name: s / wall for name, s in used.items()},
            "cpu_ms_per_row": {
                **{name: per_row(s) for name, s in used.items()},
                "total": per_row(sum(used.values())),
            },
            "peak_rss_mib": peaks,
            "rss_samples": self.rss.samples,
            "machine_busy": (busy - self.machine[0]) / max(total - self.machine[1], 1),
            "machine_cpu_seconds": machine,
            "machine_cpu_ms_per_row": per_row(machine),
            "cpus": os.cpu_count(),
        }
