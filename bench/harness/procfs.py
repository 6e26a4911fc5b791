"""What the kernel says about processes: every process at one moment from /proc/PID/stat (its
parent, group, CPU time and RSS), the whole machine's busy time from /proc/stat, and the
rusage of this process and of the children it has reaped."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
PAGE_KIB: Final = os.sysconf("SC_PAGE_SIZE") // 1024


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


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine, all cores, from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:9]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def children_cpu() -> float:
    """CPU time of every child this process has waited for (a reaped child's, in full)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu() -> float:
    """CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def own_peak_rss_mib() -> float:
    """This process's peak RSS so far: the floor of a child's `ru_maxrss`, since Linux starts
    it at its parent's (the child begins as a copy of the parent before `exec`)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
