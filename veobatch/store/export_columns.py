"""The columns of an export, by name: the job's own (the loader's, so that an export loads
again), then what happened to it (ignored when an export is loaded again). Names only, so that
the loader can know them without the store."""

from __future__ import annotations

from typing import Final

EXPORT_FORMATS: Final = ("csv", "jsonl")
# A CSV cell that starts with one of these is a formula to a spreadsheet (CSV injection): the
# export writes it after a `'`, and the CSV reader takes the `'` off again.
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
INPUT_COLUMNS: Final = ("id", "prompt", "model", "images", "aspect_ratio", "enhance_prompt")
# Columns that `veo-batch export` adds after the job's own: a re-loaded export ignores them
# instead of sending them.
OUTPUT_COLUMNS: Final = (
    "status",
    "task_id",
    "account",  # the relay account its task belongs to (VEO_ACCOUNTS; `default` without it)
    "error",
    "error_kind",
    "http_status",
    "attempts",
    "remote_status",
    "progress",
    "video_url",
    "video_path",
    "video_bytes",
    "video_sha256",
    "download_error",
    "polls",
    "cost",  # the price counted for the row: each submission that made (or may have) a task
    "review",  # approved or rejected, by a person looking at the video
    "line",
    "created_at",
    "updated_at",
    "submitted_at",
    "finished_at",
)
