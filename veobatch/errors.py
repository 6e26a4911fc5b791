"""Every error veo-batch raises on purpose, in one tree.

    VeoBatchError                 root: catch this to catch everything of ours
    ├── ConfigError               a setting (env var or option) is malformed
    ├── DatabaseError             the database cannot be reached or is not migrated
    ├── NotFoundError             a batch or job named by the user does not exist
    ├── BatchStateError           the batch is in a state that forbids the operation
    └── JobFileError              a job file cannot be read as a job file at all

Invalid rows are not an exception: the loader reports them all (`LoadResult.report`) and
the CLI exits 1.

Each class carries the process exit code the CLI uses for it, so the mapping lives here and
nowhere else. Messages are written for the person at the terminal: they say what is wrong
and what to do next, and never contain the provider API key.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, documented in `veo-batch --help` and the README."""

    OK = 0
    INVALID_ROWS = 1  # the job file has invalid rows; nothing was stored
    USAGE = 2  # a bad option or argument (click's own code for usage errors)
    BAD_FILE = 3  # the file is not a readable job file (syntax, encoding, binary, empty)
    DATABASE = 4  # the database cannot be reached or is not migrated
    NOT_FOUND = 5  # no such batch or job
    CONFIG = 6  # a setting is malformed
    STATE = 7  # the batch's state forbids the operation
    ROWS_FAILED = 8  # run: some rows ended failed or in doubt
    PAUSED = 9  # run: the batch is paused (auth, quota, or by hand)


class VeoBatchError(Exception):
    """Root of every error veo-batch raises on purpose."""

    exit_code: ExitCode = ExitCode.USAGE


class ConfigError(VeoBatchError):
    exit_code = ExitCode.CONFIG


class DatabaseError(VeoBatchError):
    exit_code = ExitCode.DATABASE


class NotFoundError(VeoBatchError):
    exit_code = ExitCode.NOT_FOUND


class BatchStateError(VeoBatchError):
    exit_code = ExitCode.STATE


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
