"""Intake: jobs added from a list, a job file, an upload or a zip; each checked as files are,
all stored in one transaction or none."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from veobatch.errors import (
    InvalidJobs,
    VeoBatchError,
)
from veobatch.images.files import ImageInspector, ImageRules
from veobatch.intake.archive import is_zip, unpacked_zip
from veobatch.intake.batch_name import check_batch_name
from veobatch.intake.loader import LoadResult, ReadProgress, load_rows
from veobatch.intake.problems import DEFAULT_MAX_PROBLEMS, Problem
from veobatch.intake.raw_job import ID_ALIAS, RawJob
from veobatch.intake.readers import JobFile, job_file_from_bytes
from veobatch.service.base import ServiceBase

MAX_JOBS_PER_CALL: Final = 100_000  # one add from Python, HTTP or Celery


@dataclass(frozen=True)
class Intake:
    """What `add` did."""

    batch: str
    created: bool  # the batch is new
    added: int  # rows stored now
    already_there: int  # jobs whose id the batch had: nothing was added for them
    refs: list[str] = field(default_factory=list)  # each job's key, in the order given


class Adding(ServiceBase):
    def add(
        self,
        batch: str,
        jobs: Iterable[Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
        budget: object | None = None,
    ) -> Intake:
        """Check every job and store them in `batch` (made if new), in one transaction: one
        invalid job and nothing is stored (`InvalidJobs` says which and why). Jobs without an
        id are keyed by `idempotency_key` and their place in `jobs` when it is given, so the
        same call made again adds nothing. `webhook_url` is told (a signed JSON POST) when
        the batch finishes or pauses. `budget` (in VEO_CURRENCY) caps what the batch may
        spend; every model it uses must then have a price."""
        check_batch_name(batch)
        if webhook_url is not None:
            self._check_webhook(webhook_url)
        keyed = [_with_key(index, job, idempotency_key) for index, job in enumerate(jobs)]
        if len(keyed) > MAX_JOBS_PER_CALL:
            raise VeoBatchError(
                f"{len(keyed):,} jobs in one call; at most {MAX_JOBS_PER_CALL:,} (send the rest "
                "in another call, or load them as a file)"
            )
        rows = (RawJob.from_mapping(index, job) for index, job in enumerate(keyed))
        result = load_rows(
            self.engine,
            rows,
            batch=batch,
            source="python",
            models=self.settings.models,
            reader_process=False,
            fitting=self._fitting(),
            lines=False,  # a job's place in the call names it in problems; no line is kept
            **self._money_checks(budget),
        )
        if result.rejected:
            report = result.report
            raise InvalidJobs(report.problems, report.total - len(report.problems))
        if webhook_url is not None:
            self.set_webhook(batch, webhook_url)
        refs = [str(job.get("id") or job.get(ID_ALIAS)) for job in keyed]
        return Intake(batch, result.created, result.stored, result.already_present, refs)

    def load(
        self,
        job_file: JobFile,
        batch: str,
        *,
        source: str | None = None,
        skip_invalid: bool = False,
        dry_run: bool = False,
        max_problems: int = DEFAULT_MAX_PROBLEMS,
        webhook_url: str | None = None,
        progress: ReadProgress | None = None,
        reader_process: bool | None = None,
        budget: object | None = None,
        strict: bool = False,
    ) -> LoadResult:
        """Check every row of `job_file` and (unless `dry_run`) store them as `batch`. Invalid
        rows (without `skip_invalid`) store nothing: `result.rejected`, and `result.report`
        lists the problems by line; `refuse_invalid(result)` turns that into `InvalidJobs`.
        Local images are read from `job_file.images` (a file on this machine, or an unpacked
        zip); a job file that came as data has none, and a path in it is refused. `budget`
        as in `add`; `strict` refuses prompts mostly not in Latin script (else a warning)."""
        check_batch_name(batch)
        if webhook_url is not None:
            self._check_webhook(webhook_url)
        images = None
        if job_file.images is not None:
            images = ImageInspector(job_file.images, ImageRules.of(self.settings))
        result = load_rows(
            None if dry_run else self.engine,
            job_file.rows(),
            batch=batch,
            source=source or job_file.name,
            models=self.settings.models,
            skip_invalid=skip_invalid,
            dry_run=dry_run,
            max_problems=max_problems,
            progress=progress,
            position=job_file.position,
            again=job_file.again(),
            reader_process=reader_process,
            images=images,
            strict=strict,
            fitting=self._fitting(),
            **self._money_checks(budget),
        )
        if webhook_url is not None and not dry_run and not result.rejected:
            self.set_webhook(batch, webhook_url)
        return result

    def upload(
        self,
        filename: str,
        data: bytes,
        batch: str,
        *,
        format: str | None = None,
        budget: object | None = None,
    ) -> LoadResult:
        """Load an uploaded file (the HTTP API's, the dashboard's): a .zip of a job file and
        its images (`load_archive`), else a job file in `format` (default: its name's
        extension) whose images can only be links. Any invalid row and nothing is stored:
        `InvalidJobs` lists the problems by line."""
        if is_zip(filename, data[:4]):
            result = self.load_archive(filename, data, batch, budget=budget)
        else:
            job_file = job_file_from_bytes(filename, data, format)
            result = self.load(job_file, batch, reader_process=False, budget=budget)
        refuse_invalid(result)
        return result

    def load_archive(
        self,
        name: str,
        data: bytes,
        batch: str,
        *,
        skip_invalid: bool = False,
        dry_run: bool = False,
        webhook_url: str | None = None,
        budget: object | None = None,
    ) -> LoadResult:
        """`load` of the job file in zip `data`, its images named by their paths in the zip
        and kept under VEO_DATA_DIR (see `intake.archive` for what a zip may not hold)."""
        with unpacked_zip(name, data, Path(self.settings.data_dir)) as job_file:
            return self.load(
                job_file,
                batch,
                skip_invalid=skip_invalid,
                dry_run=dry_run,
                webhook_url=webhook_url,
                reader_process=False,
                budget=budget,
            )


def refuse_invalid(result: LoadResult) -> None:
    """`InvalidJobs` (problems by line) if the load stored nothing for invalid rows."""
    if result.rejected:
        report = result.report
        more = report.total - len(report.problems)
        raise InvalidJobs(report.problems, more, source=report.source)


def _with_key(index: int, job: Mapping[str, Any], idempotency_key: str | None) -> dict[str, Any]:
    """The job with a key: its own id; else, with an idempotency key for the whole request,
    that key and the job's place in it (so the same request sent again adds nothing); else
    a fresh one (then a retry makes a second row)."""
    if not isinstance(job, Mapping):
        kind = type(job).__name__
        raise InvalidJobs([Problem(index, None, f"a job is a mapping of fields, not {kind}")])
    keyed = dict(job)
    if keyed.get("id") in (None, "") and keyed.get(ID_ALIAS) in (None, ""):
        keyed["id"] = f"{idempotency_key}:{index}" if idempotency_key else uuid.uuid4().hex[:16]
    return keyed
