"""`veo-batch run --download DIR` in the distributed mode, as a process of its own: the workers
fetch the videos after their rows succeed, and the results the run writes name every one."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from tests.helpers import URL
from tests.stack import Stack


def jobs_file(path: Path, prompts: list[str]) -> Path:
    path.write_text(
        "".join(
            f'{{"id": "r{n}", "prompt": "{prompt}", "model": "veo3.1", "images": ["{URL}"]}}\n'
            for n, prompt in enumerate(prompts)
        ),
        encoding="utf-8",
    )
    return path


def run(stack: Stack, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "veobatch", "run", *args],
        env=stack.env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_run_download_waits_for_every_video_before_writing_the_results(
    stack: Stack, tmp_path: Path
) -> None:
    """Each video's first download is cut halfway and tried again a second or two later, so
    every row succeeds before its video is on disk: the run still ends with all of them."""
    jobs = jobs_file(tmp_path / "jobs.jsonl", [f"[mock:cut-video] p{n}" for n in range(4)])
    videos = tmp_path / "videos"
    stack.start_worker(VEO_DOWNLOAD_DIR=str(videos))
    stack.start_scheduler(downloads=True)
    result = run(stack, tmp_path, str(jobs), "--download", str(videos))
    assert result.returncode == 0, result.stderr
    assert "videos on disk: 4 of 4" in result.stdout
    with (tmp_path / "jobs.results.csv").open(encoding="utf-8") as results:
        rows = list(csv.DictReader(results))
    assert len(rows) == 4
    for row in rows:
        assert row["status"] == "succeeded"
        assert Path(row["video_path"]).is_file(), row
        assert Path(row["video_path"]).stat().st_size == int(row["video_bytes"])


def test_run_download_no_wait_says_the_downloads_go_on_and_how_to_export(
    stack: Stack, tmp_path: Path
) -> None:
    jobs = jobs_file(tmp_path / "jobs.jsonl", ["p0", "p1"])
    videos = tmp_path / "videos"
    stack.start_worker(VEO_DOWNLOAD_DIR=str(videos))
    stack.start_scheduler(downloads=True)
    result = run(stack, tmp_path, str(jobs), "--download", str(videos), "--no-wait", "-o", "o.csv")
    assert result.returncode == 0, result.stderr
    assert "the workers go on (polls and downloads)" in result.stderr
    assert "`veo-batch export jobs -o o.csv` writes the final results" in result.stderr
