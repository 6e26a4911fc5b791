"""Queue and follow batches from Python, with the same checks and the same store as files.

    from veobatch import Client

    with Client("sqlite:///veo-batch.db") as veo:
        veo.add("products", [{"external_id": "sku-1", "prompt": "...", "model": "veo3.1",
                              "images": ["https://..."]}])
        print(veo.status("products").counts)
        outcome = veo.run("products")      # or leave the rows to `veo-batch run` / the workers

`Client` is the service every face calls (`veobatch.service.BatchService`), opened from a
database URL: its methods are the operations. The rows are then sent by `veo-batch run
--batch NAME` or by the workers (`veo-batch scheduler` and `veo-batch worker`), which pick up
every active batch. A job's `id` (or `external_id`) is its key in the batch: adding it again
adds nothing, so a caller may retry freely. A job without one gets a fresh key, so adding it
twice makes two rows.
"""

from __future__ import annotations

import logging
import os

from veobatch.running import ProgressCallback, RunOutcome, run_batch
from veobatch.service import BatchService, Intake
from veobatch.settings import Settings
from veobatch.store import database

__all__ = ["Client", "Intake"]


class Client(BatchService):
    """A handle on the veo-batch store (`VEO_DATABASE_URL` unless given)."""

    def __init__(self, database_url: str | None = None, *, settings: Settings | None = None):
        settings = settings or Settings.from_env(os.environ)
        if database_url is not None:
            settings = settings.on_database(database_url)
        super().__init__(database.open_database(settings.database_url), settings)

    def run(
        self,
        batch: str,
        *,
        wait: bool = True,
        download_dir: str | None = None,
        results: str | None = None,
        mock: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> RunOutcome:
        """Take stored batch `batch` to its end, as `veo-batch run --batch NAME` does: in
        this process, or with VEO_REDIS_URL by following the workers. The outcome holds the
        batch as it ended and its `exit_code` (`veobatch.running.run_batch`); Ctrl-C leaves
        nothing claimed and raises `RunStopped` when work is left."""
        notes = logging.getLogger("veobatch.run").info
        return run_batch(
            self,
            batch,
            wait=wait,
            download_dir=download_dir,
            results=results,
            mock=mock,
            on_progress=on_progress,
            on_note=notes,
        )

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
