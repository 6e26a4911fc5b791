"""Every error veo-batch raises on purpose, in one tree, and every exit code of the CLI.

    VeoBatchError                 root: catch this to catch everything of ours; raised as it
    │                             is, a value given (a name, a format, a URL) is refused
    ├── ConfigError               a setting (env var or option) is malformed or missing
    ├── DatabaseError             the database cannot be reached, is not migrated, or refused
    │                             a statement
    ├── NotFoundError             a batch or job named by the user does not exist
    ├── BatchStateError           the batch's state forbids the operation (names the state)
    │   ├── BatchPaused           ... it is paused: `run` cannot take it (says why)
    │   └── UnconfirmedRerun      ... a rerun would pay again: it waits for a confirmation
    ├── JobFileError              a job file cannot be read as a job file at all
    ├── InvalidJobs               some jobs or rows are invalid; nothing was stored
    ├── ProviderError             the relay did not give what was asked; `kind` says why
    ├── LimiterUnavailable        the shared rate limit (Redis) cannot be asked: nothing sent
    ├── WriteError                a file or the database could not be written (disk full,
    │                             no permission)
    ├── DownloadError             a video could not be fetched (the row's status stays)
    │   └── DownloadRefused       ... and trying again would end the same way
    │       ├── UnusableVideo     not a video this tool keeps (format, size)
    │       └── RefusedDestination  a host on this machine's network, or not resolved
    ├── ImageError                a local image cannot be used (at load) or sent (at submit)
    ├── Abandoned                 a poll or a download given up: the process is stopping
    ├── ProcessFailed             a process of our own (a submit lane, the file's reader)
    │                             ended without its answer
    ├── RunStopped                a run was stopped with work left (says how to go on)
    ├── NotAllowed (dashboard.pages)  a dashboard action this session may not take
    └── Refused (worker.guard)    a Celery message no task of ours can take

A class defined elsewhere has its module (under veobatch) after its name. One exception of ours
is outside the tree on purpose: `dashboard.pages.LoginNeeded` is not an error but the way a
page asks for a session (its answer is the login form).

Each class carries the process exit code the CLI uses for it (`exit_code`, an `ExitCode`), so
that mapping lives here and nowhere else; the HTTP API maps the same classes to statuses in one
table of its own. Messages are written for the person at the terminal: they say what is wrong
and what to do next, and never contain the provider API key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from veobatch.states import ErrorKind


class ExitCode(IntEnum):
    """Process exit codes; `EXIT_CODE_MEANINGS` says each one in words (the CLI's help and
    the README's table are that text)."""

    OK = 0
    INVALID_ROWS = 1
    USAGE = 2  # click's own code for usage errors
    BAD_FILE = 3
    DATABASE = 4
    NOT_FOUND = 5
    CONFIG = 6
    STATE = 7
    ROWS_FAILED = 8
    PAUSED = 9
    DOWNLOADS_FAILED = 10
    CANNOT_WRITE = 11
    CHECK_FAILED = 12
    PROVIDER = 13
    LIMITER = 14
    PROCESS_FAILED = 15
    INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


EXIT_CODE_MEANINGS: Final[dict[ExitCode, str]] = {
    ExitCode.OK: "done",
    ExitCode.INVALID_ROWS: "the job file has invalid rows; nothing was stored",
    ExitCode.USAGE: "usage error (a bad option or argument)",
    ExitCode.BAD_FILE: "the file is not a readable job file (syntax, encoding, binary, empty)",
    ExitCode.DATABASE: "the database cannot be reached, is not migrated, or refused a statement",
    ExitCode.NOT_FOUND: "no such batch or job",
    ExitCode.CONFIG: "a setting is malformed or missing",
    ExitCode.STATE: "the batch's state forbids the operation (e.g. it was cancelled)",
    ExitCode.ROWS_FAILED: "`run`: some rows ended failed (generation failed, timed out, refused) "
    "or in doubt (`veo-batch jobs NAME --status failed` says why)",
    ExitCode.PAUSED: "`run`: the batch is paused (a 401, an empty balance, its budget, the "
    "daily cap, the image mode): fix it, then `veo-batch resume NAME`",
    ExitCode.DOWNLOADS_FAILED: "`run --download`: some videos could not be saved (the rows stay "
    "succeeded; `veo-batch jobs NAME --status succeeded` shows why; run again to retry)",
    ExitCode.CANNOT_WRITE: "a file or the database could not be written (the disk is full, or "
    "no permission)",
    ExitCode.CHECK_FAILED: "`health`, `doctor`: a check failed (each one is named, with what to "
    "do)",
    ExitCode.PROVIDER: "the relay did not give what was asked (its answer or the network; the "
    "message says which)",
    ExitCode.LIMITER: "the shared rate limit (Redis, VEO_REDIS_URL) cannot be reached: nothing "
    "more is sent until it can",
    ExitCode.PROCESS_FAILED: "a process of veo-batch's own (a submit lane, the file's reader) "
    "ended without its answer (the message says how)",
    ExitCode.INTERRUPTED: "`run`: stopped with Ctrl-C (or SIGTERM, SIGHUP) with work left; "
    "running the same command again goes on (stopped with nothing left, it ends as usual: "
    "batch finished, results written)",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong with one row (at `line` of its file, or `index` of a list of jobs) and
    in which field."""

    line: int | None  # None for problems of the whole file (e.g. its header)
    field: str | None
    message: str

    def format(self, source: str) -> str:
        where = source if self.line is None else f"{source}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class VeoBatchError(Exception):
    """Root of every error veo-batch raises on purpose; raised as it is, a value given (a
    batch name, a format, a webhook URL, a budget) is refused, a usage error."""

    exit_code: ExitCode = ExitCode.USAGE


class ConfigError(VeoBatchError):
    exit_code = ExitCode.CONFIG


class DatabaseError(VeoBatchError):
    exit_code = ExitCode.DATABASE


class NotFoundError(VeoBatchError):
    """`hint` says how to find what exists, in the CLI's words: the command line adds it to
    the message, the HTTP API does not."""

    exit_code = ExitCode.NOT_FOUND

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class BatchStateError(VeoBatchError):
    """The batch is in `state`, which forbids the operation."""

    exit_code = ExitCode.STATE

    def __init__(self, message: str, state: str | None = None) -> None:
        super().__init__(message)
        self.state = state


class UnconfirmedRerun(BatchStateError):
    """A rerun chose rows whose tasks the provider has (or may have) billed: sending them
    again pays again, so it is refused (nothing changed) until the caller confirms. It carries
    what the rerun would do: `matched` rows, `paid_rows` of them in the `paid_for` statuses,
    what resending costs (`adds`, in micros; None: some are `unpriced`)."""

    def __init__(
        self,
        matched: int,
        paid_rows: int,
        paid_for: list[str],
        adds: int | None,
        unpriced: list[str],
    ) -> None:
        super().__init__(
            f"{paid_rows:,} of the {matched:,} rows chosen are {' or '.join(paid_for)}: the "
            "provider has (or may have) billed their tasks, and a new task pays again"
        )
        self.matched, self.paid_rows, self.paid_for = matched, paid_rows, paid_for
        self.adds, self.unpriced = adds, unpriced


class BatchPaused(BatchStateError):
    """The batch is paused (before or during a run): `reason` says why."""

    exit_code = ExitCode.PAUSED

    def __init__(self, batch: str, reason: str | None) -> None:
        super().__init__(f"batch {batch!r} is paused: {reason}", "paused")
        self.batch, self.reason = batch, reason


class JobFileError(VeoBatchError):
    """The file as a whole cannot be used: the message names the file (and line if known)."""

    exit_code = ExitCode.BAD_FILE

    def __init__(self, source: str, message: str, line: int | None = None) -> None:
        self.source = source
        self.line = line
        self.detail = message
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")

    def __reduce__(self) -> tuple[type[JobFileError], tuple[str, str, int | None]]:
        return type(self), (self.source, self.detail, self.line)  # crosses process boundaries


class InvalidJobs(VeoBatchError):
    """Some jobs are invalid; nothing was stored. `problems` name each job by its index (from
    0, in the order given) or, for a job file, by its line, and the field; `more` counts the
    problems past the ones listed."""

    exit_code = ExitCode.INVALID_ROWS

    def __init__(
        self,
        problems: Sequence[Problem],
        more: int = 0,
        *,
        source: str | None = None,
    ) -> None:
        self.source = source
        # A job of a list by its `index`, a row of a job file by its `line` (the other null).
        place = "line" if source else "index"
        self.problems: list[dict[str, Any]] = [
            {"index": None, "line": None, place: p.line, "field": p.field, "message": p.message}
            for p in problems
        ]
        where = "line" if source else "job"
        lines = [
            f"{where} {p.line}: {p.field}: {p.message}"
            if p.field
            else f"{where} {p.line}: {p.message}"
            for p in problems
        ]
        if more:
            lines.append(f"... and {more} more problem(s)")
        self.detail = (
            f"{source}: invalid rows; nothing was stored"
            if source
            else ("invalid jobs; nothing was stored")
        )
        super().__init__(f"{self.detail}:\n  " + "\n  ".join(lines))


class ProviderError(VeoBatchError):
    """A request to the provider that did not give what was asked; `kind` says what to do."""

    exit_code = ExitCode.PROVIDER

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.kind = kind
        self.message = message
        self.http_status = http_status
        self.retry_after = retry_after
        status = f"HTTP {http_status}: " if http_status is not None else ""
        super().__init__(f"{kind.value}: {status}{message}")

    def __reduce__(self) -> tuple[type[ProviderError], tuple[Any, ...]]:
        return type(self), (self.kind, self.message, self.http_status, self.retry_after)


class WriteError(VeoBatchError):
    """A file (an export, the results) or the database (its disk full) could not be written;
    nothing half-written is left."""

    exit_code = ExitCode.CANNOT_WRITE


class LimiterUnavailable(VeoBatchError):
    """The shared rate limit (Redis) cannot be asked: nothing may be sent until it can."""

    exit_code = ExitCode.LIMITER


class Abandoned(VeoBatchError):
    """A poll or a download given up because its process is stopping: nothing to record,
    the row is handed back to be asked again."""

    exit_code = ExitCode.INTERRUPTED


class DownloadError(VeoBatchError):
    """A video could not be fetched (whatever the cause, the row's status stays)."""

    exit_code = ExitCode.DOWNLOADS_FAILED


class DownloadRefused(DownloadError):
    """A download that would end the same way if tried again: not tried again."""


class UnusableVideo(DownloadRefused):
    """What the video host sent is not a video this tool keeps: not a video container, or
    larger than VEO_VIDEO_MAX_MB. Nothing of it is kept."""


class RefusedDestination(DownloadRefused):
    """A host a link from a stranger named (a video URL, a redirect, a webhook) is on this
    machine's network, or cannot be resolved: no connection was made."""


class ProcessFailed(VeoBatchError):
    """A process of our own (a submit lane, the reader of a job file) ended without its answer:
    the message says how (its exit code, or the error it could not hand back)."""

    exit_code = ExitCode.PROCESS_FAILED


class RunStopped(VeoBatchError):
    """A run was stopped (Ctrl-C, SIGTERM, SIGHUP) with work left; the message says how to
    go on."""

    exit_code = ExitCode.INTERRUPTED


class ImageError(VeoBatchError):
    """A local image that cannot be used: at load, what is wrong with the file; at submit,
    why it cannot be sent now. `scope` says what that costs: `row` (the file changed or
    vanished: this row fails), `retry` (the bucket did not answer: try again later), `batch`
    (a setting is wrong: every row would fail, so the batch pauses)."""

    exit_code = ExitCode.CONFIG

    def __init__(self, message: str, scope: str = "row") -> None:
        super().__init__(message)
        self.message = message
        self.scope = scope
