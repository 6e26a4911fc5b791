"""Task ids the relay gave that the database could not take yet: kept on disk until recorded.

Once the relay has answered a POST with a task id, the task exists and is billed: that id must
reach its row whatever else fails. A wave's outcomes are written in one transaction, retried
while the database cannot be reached, then row by row (`lifecycle.submit`). An answer whose row
still cannot be written is appended to `unrecorded-answers.jsonl` under VEO_DATA_DIR (one JSON
line, flushed to disk before anything else happens) and written to its row later by
`recorded_later`, which every submitting process runs before it claims rows (a file that is
not there costs one `stat`). An answer the database refuses for good (a value it cannot hold)
goes to `refused-answers.jsonl` instead, its row `in_doubt` with that said: a person decides.

Every task id is also logged the moment it arrives (`events.task_arrived`), so an operator can
always match the relay's tasks with the rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from veobatch.lifecycle import transitions
from veobatch.lifecycle.poll_rules import Pacing
from veobatch.lifecycle.submit_rules import succeeded
from veobatch.states import JobStatus
from veobatch.store import database
from veobatch.store.tables import Job
from veobatch.visible import shown

try:
    import fcntl
except ImportError:  # not on Windows: there one process at a time must use a data folder
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("veobatch.submit")
PENDING: Final = "unrecorded-answers.jsonl"
REFUSED: Final = "refused-answers.jsonl"


@dataclass(frozen=True, slots=True)
class Answer:
    """A relay's answer to a row's POST: its task id, and the row as it was claimed."""

    job_id: int
    batch_id: int
    attempts: int  # the row's attempts when it was claimed: it is still that attempt's row
    task_id: str
    at: str  # when the answer came, ISO 8601 (UTC)
    why: str = ""  # why it could not be written

    @classmethod
    def of(cls, job: Any, task_id: str, at: datetime, why: str = "") -> Answer:
        return cls(job.id, job.batch_id, job.attempts, task_id, at.isoformat(), why)


class Settled(NamedTuple):
    """What became of the answers given to be recorded: those left to record later, and
    those the database refuses for good."""

    left: list[Answer]
    refused: list[Answer]


class Unrecorded:
    """The answers kept in folder `folder` (VEO_DATA_DIR)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pending = folder / PENDING
        self.refused = folder / REFUSED

    def keep(self, answers: list[Answer], *, refused: bool = False) -> Path:
        """`answers` appended to the file (flushed to disk); the file's path."""
        path = self.refused if refused else self.pending
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._locked():
            _append(path, _lines(answers))
        return path

    @staticmethod
    def count(path: Path) -> int:
        """The answers in file `path` (0 if there is none)."""
        try:
            with open(path, "rb") as lines:
                return sum(1 for _ in lines)
        except FileNotFoundError:
            return 0

    def waiting(self) -> bool:
        """Whether answers wait to be recorded (one `stat`)."""
        return self.pending.exists()

    def settle(self, record: Callable[[list[Answer]], Settled]) -> None:
        """The answers waiting given to `record`, which returns those it could not record
        yet (they stay in the file) and those the database refuses (moved to the refused
        answers); the others leave the file. One process at a time; a line that cannot be
        read is moved to a `.bad` file beside it."""
        with self._locked():
            try:
                text = self.pending.read_text(encoding="ascii", errors="replace")
            except FileNotFoundError:
                return
            answers: list[Answer] = []
            bad: list[str] = []
            for line in text.splitlines():
                try:
                    answers.append(Answer(**json.loads(line)))
                except (ValueError, TypeError):
                    bad.append(line)
            if bad:
                _append(self.pending.with_suffix(".bad"), "".join(line + "\n" for line in bad))
            left, refused = record(answers)
            if refused:
                _append(self.refused, _lines(refused))
            if not left:
                self.pending.unlink()
                return
            again = self.pending.with_suffix(".tmp")
            again.write_text(_lines(left), encoding="ascii")
            again.replace(self.pending)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One process at a time changes the files (a lock file of their own)."""
        if fcntl is None:
            yield
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "answers.lock", "ab") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _lines(answers: list[Answer]) -> str:
    return "".join(json.dumps(asdict(a), ensure_ascii=True) + "\n" for a in answers)


def _append(path: Path, text: str) -> None:
    """`text` added at the end of file `path`, on the disk when this returns."""
    with open(path, "a", encoding="ascii") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


def recorded_later(
    engine: Engine, pacing: Pacing, lock: AbstractContextManager[object], answers: list[Answer]
) -> Settled:
    """Task ids kept on disk written to their rows, where a row still waits for its answer
    (the same attempt, no task yet, `submitting` or `in_doubt`); those the database still
    cannot be reached for, returned. A row that moved on is logged with the task id (an
    operator reconciles it with the relay); a value the database refuses goes to the
    refused answers."""
    left: list[Answer] = []
    refused: list[Answer] = []
    for answer in answers:
        try:
            with lock, engine.begin() as conn:
                job = conn.execute(sa.select(Job).where(Job.id == answer.job_id)).one_or_none()
                waits = (
                    job is not None
                    and job.task_id is None
                    and job.attempts == answer.attempts
                    and job.status in (JobStatus.SUBMITTING, JobStatus.IN_DOUBT)
                )
                if waits and job is not None:
                    at = datetime.fromisoformat(answer.at)  # (a line spoilt on disk: ValueError)
                    done = transitions.Attempted(job, succeeded(answer.task_id), at, holds=True)
                    transitions.record(conn, [done], pacing)
        except (SQLAlchemyError, ValueError, TypeError) as exc:
            if database.unreachable(exc):
                left.append(answer)
                continue
            why = database.said(exc)  # the database refused it, or the line is spoilt
            refused.append(dataclasses.replace(answer, why=why))
            log.error(
                "task %s of row %s cannot be written (%s): kept with the refused answers",
                shown(answer.task_id),
                answer.job_id,
                why,
            )
            continue
        if not waits:
            log.warning(
                "task %s of row %s was not recorded: the row has moved on since (reconcile "
                "it with the relay)",
                shown(answer.task_id),
                answer.job_id,
            )
        else:
            log.info("task %s recorded on row %s", shown(answer.task_id), answer.job_id)
    return Settled(left, refused)
