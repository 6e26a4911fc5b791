"""Running a batch to its end: what `veo-batch run` does, for every caller (`Client.run` too).

`run_batch` loads a job file (or takes a stored batch), then takes its rows to videos: in this
process (`embedded_runner`, the default: SQLite, no Redis) or, with VEO_REDIS_URL, by
following the scheduler and the workers while they do it. It ends when every row has ended
(with `wait`, each task followed to its video; with a download folder, every video on disk or
given up), or when the batch pauses, and returns a `RunOutcome`: the batch as it ended, the
last progress, the results file written, and the exit code that sums it up.

A stop (KeyboardInterrupt: Ctrl-C, or SIGTERM and SIGHUP turned into it by the caller) lets
the run leave nothing claimed; if nothing was left to do by then, the run ends as a normal
end would, else `RunStopped` says how to go on. What the run has to say on the way (where
the rows go, what it waits for) goes to `on_note`; its progress to `on_progress`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from shlex import quote
from typing import TYPE_CHECKING, Final

from veobatch.concurrency import RUN_CONCURRENCY
from veobatch.embedded_runner import EmbeddedRunner
from veobatch.errors import BatchPaused, BatchStateError, ExitCode, RunStopped
from veobatch.lifecycle.progress import Progress
from veobatch.lifecycle.video_files import check_directory
from veobatch.process import Process
from veobatch.settings import Secret, Settings
from veobatch.states import BatchState, JobStatus
from veobatch.store.export import export_format, write_export
from veobatch.store.queries import BatchSummary

if TYPE_CHECKING:
    from veobatch.service import BatchService

MOCK_TASK_SECONDS: Final = 3.0  # how long the mock provider of `mock=True` takes to "generate"
MOCK_KEY: Final = "mock-key"

Note = Callable[[str], None]
ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class RunOutcome:
    batch: BatchSummary  # as the run ended: its state, counts, money, error kinds
    progress: Progress  # the last one seen
    results: Path | None  # the results file written, if one was asked for

    @property
    def unfinished(self) -> int:
        """Rows that ended failed or in doubt."""
        counts = self.batch.counts
        return counts.get(JobStatus.FAILED, 0) + counts.get(JobStatus.IN_DOUBT, 0)

    @property
    def unsaved(self) -> int:
        """Videos given up on (those still due are being fetched, by the workers). All three
        counts come from one snapshot, the last progress: the batch as re-read after it may
        have more rows succeeded whose download is not yet counted due."""
        progress = self.progress
        if not progress.downloading:
            return 0
        succeeded = progress.counts.get(JobStatus.SUCCEEDED, 0)
        return max(0, succeeded - progress.downloaded - progress.downloads_due)

    @property
    def exit_code(self) -> ExitCode:
        if self.batch.state == BatchState.PAUSED:
            return ExitCode.PAUSED
        if self.unfinished:
            return ExitCode.ROWS_FAILED
        return ExitCode.DOWNLOADS_FAILED if self.unsaved else ExitCode.OK


def run_batch(
    service: BatchService,
    batch: str,
    *,
    concurrency: int = RUN_CONCURRENCY,
    wait: bool = True,
    download_dir: str | None = None,
    mock: bool = False,
    results: str | None = None,
    on_progress: ProgressCallback | None = None,
    on_note: Note | None = None,
) -> RunOutcome:
    """Take stored batch `batch` to its end (see the module's docstring). `download_dir`
    (default VEO_DOWNLOAD_DIR) saves each video; `mock` sends to a mock provider started
    here (spends nothing); `results` is the file the results are exported to (CSV or JSON
    Lines by its extension; None: none written). Raises `BatchPaused` if the batch is paused
    before it starts, `RunStopped` if stopped with work left."""
    note = on_note or (lambda _text: None)
    summary = service.status(batch)
    if summary.state == BatchState.CANCELLED:
        raise BatchStateError(f"batch {batch!r} is cancelled: nothing to run", summary.state)
    if summary.state == BatchState.PAUSED:
        raise BatchPaused(batch, summary.pause_reason)
    videos = download_dir or service.settings.download_dir
    workers = bool(service.settings.redis_url and not mock)
    hint = f"veo-batch export {quote(batch)}" + (f" -o {quote(results)}" if results else "")
    try:
        if workers:
            progress = _follow_workers(
                service, summary, wait, bool(videos), hint, on_progress, note
            )
        else:
            folder = Path(videos) if videos else None
            if folder is not None:
                check_directory(folder)
            progress = _run_here(
                service, summary, mock, concurrency, wait, folder, on_progress, note
            )
            arrived = service.deliver_webhooks()
            if arrived:
                note(f"webhook told ({arrived:,} call{'s' if arrived > 1 else ''})")
    except KeyboardInterrupt:
        progress = _stopped(service, batch, wait, bool(videos), hint, workers, note)
    if results is not None:
        write_export(results, service.export(batch, export_format(results, None)).chunks())
    return RunOutcome(service.status(batch), progress, Path(results) if results else None)


def _run_here(
    service: BatchService,
    batch: BatchSummary,
    mock: bool,
    concurrency: int,
    wait: bool,
    videos: Path | None,
    on_progress: ProgressCallback | None,
    note: Note,
) -> Progress:
    """Work on the batch from this process (with the mock provider with `mock`)."""
    assert service.engine is not None
    with contextlib.ExitStack() as stack:
        settings = service.settings
        if mock:
            from veobatch.provider.mock import MockConfig, MockProvider  # noqa: PLC0415 - only here

            config = MockConfig(api_key=MOCK_KEY, task_seconds=MOCK_TASK_SECONDS, clips=True)
            provider = stack.enter_context(MockProvider(config))
            settings = _on_mock(settings, provider.url)
            note(f"sending to the mock provider at {provider.url} (nothing is spent)")
        held = Process.open(settings, engine=service.engine, shared=False)
        stack.callback(held.sender.close)
        stack.callback(held.videos.close)
        runner = EmbeddedRunner.for_process(
            held,
            batch.id,
            concurrency=concurrency,
            wait_for_videos=wait,
            download_dir=videos,
            on_progress=on_progress,
        )
        return runner.run()


def _follow_workers(
    service: BatchService,
    batch: BatchSummary,
    wait: bool,
    downloads: bool,
    hint: str,
    on_progress: ProgressCallback | None,
    note: Note,
) -> Progress:
    """Follow the batch while the scheduler and the workers take it to videos; with
    `downloads` (and `wait`), until every video of its succeeded rows is on disk or given up,
    so the results name them."""
    note(
        "VEO_REDIS_URL is set: the rows go to the workers (`veo-batch scheduler` and "
        "`veo-batch worker` must be running); following the batch"
    )
    if downloads:
        note(
            "the workers download the videos, each into its own VEO_DOWNLOAD_DIR (set it on "
            "the scheduler and the workers)" + ("; the results wait for them" if wait else "")
        )
        if wait:
            service.retry_downloads(batch.name)  # those given up on are asked for again
    progress = None
    watching = service.watch(
        batch.name,
        wait_for_videos=wait,
        downloading=downloads or None,
        wait_for_downloads=downloads and wait,
    )
    told = False
    for progress in watching:
        if on_progress is not None:
            on_progress(progress)
        if not told and progress.downloads_left and not progress.of(*progress.open_statuses):
            told = True
            note(
                f"every row has ended; waiting for the workers to save "
                f"{_plural(progress.downloads_left, 'video')} (Ctrl-C stops waiting; they go "
                f"on, and `{hint}` writes the final results later)"
            )
    assert progress is not None  # watch yields at least once
    if not wait:
        note(
            f"the workers go on ({'polls and downloads' if downloads else 'polls'}): once "
            f"`veo-batch status {quote(batch.name)} --watch` has ended"
            + (" and shows every video on disk" if downloads else "")
            + f", `{hint}` writes the final results"
        )
    return progress


def _stopped(
    service: BatchService,
    name: str,
    wait: bool,
    downloads: bool,
    hint: str,
    workers: bool,
    note: Note,
) -> Progress:
    """After a stop: if nothing was left for the run (every row finished, every video asked
    for on disk or given up), its batch is finished by the one rule and the run ends as a
    normal end would; else `RunStopped`, saying how to go on."""
    progress = None
    with contextlib.suppress(KeyboardInterrupt):  # a second stop: how to go on, as below
        service.finish_batches()
        progress = next(
            service.watch(
                name,
                wait_for_videos=wait,
                downloading=downloads or None,
                wait_for_downloads=downloads and wait,
            )
        )
    if progress is not None and progress.done == progress.total and not progress.downloads_left:
        note("stopped, with nothing left to do: writing the results")
        return progress
    if workers:
        raise RunStopped(
            f"stopped following; the workers go on: once `veo-batch status {quote(name)} "
            f"--watch` has ended, `{hint}` writes the final results"
        )
    raise RunStopped(
        "stopped: submissions in flight were recorded; polls and downloads in flight are due "
        "again; rows not sent are pending again. Run the same command to go on."
    )


def _on_mock(settings: Settings, url: str) -> Settings:
    """The settings pointed at the mock provider, as the one account (VEO_ACCOUNTS is left
    aside: nothing goes to a real relay); its videos take MOCK_TASK_SECONDS, so no need to wait
    longer than that for the first poll."""
    return dataclasses.replace(
        settings,
        accounts=None,
        api_base=url,
        api_key=Secret(MOCK_KEY),
        poll_delay=min(settings.poll_delay, MOCK_TASK_SECONDS),
    )


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"
