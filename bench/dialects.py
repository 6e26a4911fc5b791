"""Benchmark: does Google's dialect (`gemini`) cost throughput against the relay dialect?

Google's dialect always sends images inline as bytes, has its own request and answer shapes,
and downloads each video from the API with the key; a relay account (here with `image_mode
"data-uri"`, so the images go inline too) takes a link or a `data:` URI and serves its videos
without the key. Both are measured in one run of this script, on the same machine, against ONE
mock provider (`veo-batch mock-api --text-videos`, no limit, tasks done at once, key
`bench-key`), which speaks both dialects on one port:

- the job file: one generated CSV of N rows (`--rows`, default 600), model `veo3.1`, each
  row with ONE local photo by relative path (a noisy 560x315 JPEG of about 100 KB made with
  Pillow; `--photos` distinct ones, 4 by default, reused in turn);
- RELAY: a VEO_ACCOUNTS file of one account, `[accounts.relay]`, base the mock, `key_env`,
  `image_mode = "data-uri"`;
- GEMINI: one account, `[accounts.google]`, `dialect = "gemini"`, base the mock, `key_env`,
  `models = { "veo3.1" = "veo-3.1-generate-preview" }`.

Each run, RELAY first, then GEMINI: `veo-batch run FILE --concurrency 8 --download DIR` on a
fresh SQLite file in the temporary directory, with VEO_ACCOUNTS, the key variable,
VEO_POLL_DELAY=0.1 and VEO_POLL_INTERVAL=0.1-0.5, followed until it exits. Measured:

- wall time, from spawning `veo-batch run` to its exit, and rows/s end to end (rows ÷ wall);
- submissions/s: (rows with a task - 1) ÷ (the last `submitted_at` - the first), from table
  `jobs` (`submitted_at` is stamped when the answer with the task is recorded);
- videos on disk: rows whose `video_path` names a file that exists;
- CPU time of the run (`os.wait4`'s rusage: the process and its submit lanes) and of the mock
  (its CPU before and after), in ms per row; peak RSS of the run's process tree (the sum over
  its processes, looked at every 0.2 s);
- from the mock's stats (GET /_mock/stats, before and after the run: the difference):
  tasks created, videos served, Google's downloads that carried the key, and the tasks made
  for each prompt (the two runs send the same prompts).

The ratios GEMINI ÷ RELAY of rows/s and submissions/s follow the table. Checks (a problem
printed for each, and exit 1): the run exits 0, every row succeeded, every video is on disk,
every prompt was created exactly once in each run, every download of the GEMINI run carried
the key (and none was refused). Log lines that look like trouble are printed. Results:
`bench/out/dialects-<time>.json`.

    python bench/dialects.py                  # 600 rows, about 30 s on 2 cores
    python bench/dialects.py --rows 100 --keep
"""

from __future__ import annotations

import argparse
import csv
import sqlite3
import sys
import time
from collections.abc import Sequence
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: bench.*

from bench.accounts_parts.runs import sqlite_facts
from bench.harness.cli import add_keep, run_in_workspace
from bench.harness.processes import (
    Children,
    base_env,
    problems_of,
    reap,
    veo_batch,
)
from bench.harness.resources import PeakRss, tree_of
from bench.harness.results import (
    check_cell,
    git_state,
    machine_facts,
    note_code_change,
    print_problems,
    times,
    write_json,
)
from bench.harness.services import Mock
from veobatch.cli.output import table_text

KEY: Final = "bench-key"
KEY_ENV: Final = "BENCH_DIALECT_KEY"
CONCURRENCY: Final = 8
POLLS: Final = {"VEO_POLL_DELAY": "0.1", "VEO_POLL_INTERVAL": "0.1-0.5"}
PHOTO_SIZE: Final = (560, 315)  # noise at JPEG quality 85: about 100 KB
PROMPT: Final = "row {n}: a slow push in on the product on its shelf, soft morning light"
# Each run's account, as VEO_ACCOUNTS holds it ({base} and {key_env} filled in).
ACCOUNTS: Final = {
    "relay": '[accounts.relay]\nbase = "{base}"\nkey_env = "{key_env}"\nimage_mode = "data-uri"\n',
    "gemini": '[accounts.google]\ndialect = "gemini"\nbase = "{base}"\nkey_env = "{key_env}"\n'
    'models = {{ "veo3.1" = "veo-3.1-generate-preview" }}\n',
}
MOCK_COUNTERS: Final = ("requests", "created", "polls", "video_requests", "rejected_429")
MOCK_COUNTERS_GOOGLE: Final = ("video_requests_keyed", "video_refused_no_key")


def write_job_file(folder: Path, rows: int, photos: int) -> tuple[Path, float]:
    """The CSV of `rows` rows, each naming one of `photos` JPEGs by a path relative to it;
    the file and the photos' mean size in KB."""
    (folder / "photos").mkdir(parents=True)
    sizes = []
    for n in range(photos):
        path = folder / "photos" / f"p{n}.jpg"
        Image.effect_noise(PHOTO_SIZE, 40 + 5 * n).convert("RGB").save(path, quality=85)
        sizes.append(path.stat().st_size)
    jobs = folder / "jobs.csv"
    with jobs.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "prompt", "model", "images"])
        for n in range(rows):
            writer.writerow([f"r{n}", PROMPT.format(n=n), "veo3.1", f"photos/p{n % photos}.jpg"])
    return jobs, sum(sizes) / len(sizes) / 1024


def videos_on_disk(database: Path) -> int:
    with closing(sqlite3.connect(database)) as conn:
        paths = conn.execute("SELECT video_path FROM jobs WHERE video_path IS NOT NULL")
        return sum(1 for (path,) in paths if Path(path).is_file())


def one_run(
    children: Children, work: Path, mock: Mock, dialect: str, jobs: Path, rows: int
) -> dict[str, Any]:
    """`veo-batch run` of `jobs` through one account of `dialect`, timed and read back."""
    print(f"{dialect}: {rows:,} rows, `veo-batch run --concurrency {CONCURRENCY}` ...", flush=True)
    accounts = work / f"{dialect}.accounts.toml"
    accounts.write_text(ACCOUNTS[dialect].format(base=mock.url, key_env=KEY_ENV), "utf-8")
    database = work / f"{dialect}.db"
    env = base_env(
        VEO_ACCOUNTS=str(accounts),
        VEO_DATABASE_URL=f"sqlite:///{database}",
        **{KEY_ENV: KEY},
        **POLLS,
    )
    argv = veo_batch(
        "run",
        str(jobs),
        "--concurrency",
        str(CONCURRENCY),
        "--download",
        str(work / f"{dialect}-videos"),
        "--output",
        str(work / f"{dialect}.results.csv"),
    )
    before, mock_cpu = mock.stats(), mock.child.cpu()
    rss = PeakRss()
    started = time.monotonic()
    child = children.spawn(f"{dialect}-run", argv, env)
    rss.watch("run", tree_of(child))
    rss.start()
    try:
        usage = reap(child, timeout=120 + rows / 2)
        wall = time.monotonic() - started
    finally:
        peak = rss.stop()["run"]
        children.stop(child)
    after, mock_cpu = mock.stats(), mock.child.cpu() - mock_cpu
    made = after["created_by_prompt"]
    once = [made.get(p, 0) - before["created_by_prompt"].get(p, 0) for p in prompts(rows)]
    database_facts = sqlite_facts(database)
    run_cpu = usage.ru_utime + usage.ru_stime
    return {
        "dialect": dialect,
        "rows": rows,
        "exit_code": child.proc.returncode,
        "wall_seconds": wall,
        "rows_per_s": rows / wall,
        "submissions_per_s": database_facts["submitted_per_s"],
        "statuses": database_facts["statuses"],
        "videos_on_disk": videos_on_disk(database),
        "run_cpu_ms_per_row": 1000 * run_cpu / rows,
        "mock_cpu_ms_per_row": 1000 * mock_cpu / rows,
        "run_peak_rss_mib": peak,
        "mock": {k: after[k] - before[k] for k in (*MOCK_COUNTERS, *MOCK_COUNTERS_GOOGLE)},
        "prompts_created_once": sum(1 for n in once if n == 1),
        "prompts_created_twice": sum(1 for n in once if n > 1),
        "prompts_not_created": sum(1 for n in once if n == 0),
        "output": child.output().strip()[-2000:],
        "problems": problems_of([child]),
    }


def prompts(rows: int) -> list[str]:
    return [PROMPT.format(n=n) for n in range(rows)]


def problems(r: dict[str, Any]) -> list[str]:
    """What is wrong with a run (see the module's docstring)."""
    rows, mock = r["rows"], r["mock"]
    wrong = []
    if r["exit_code"] != 0:
        wrong.append(f"`veo-batch run` exited with {r['exit_code']}")
    if r["statuses"].get("succeeded", 0) != rows:
        wrong.append(f"rows by status {r['statuses']}, not {rows:,} succeeded")
    if r["videos_on_disk"] != rows:
        wrong.append(f"{r['videos_on_disk']:,} of {rows:,} videos on disk")
    if r["prompts_created_twice"] or r["prompts_not_created"]:
        wrong.append(
            f"{r['prompts_created_twice']:,} prompts created twice, "
            f"{r['prompts_not_created']:,} not created"
        )
    if mock["rejected_429"]:
        wrong.append(f"{mock['rejected_429']:,} 429s")
    if r["dialect"] == "gemini" and (
        mock["video_requests_keyed"] != mock["video_requests"] or mock["video_refused_no_key"]
    ):
        wrong.append(
            f"{mock['video_requests_keyed']:,} of {mock['video_requests']:,} downloads keyed, "
            f"{mock['video_refused_no_key']:,} refused"
        )
    return wrong


def table(results: Sequence[dict[str, Any]]) -> str:
    headers = [
        "RUN",
        "ROWS/S",
        "SUBMISSIONS/S",
        "WALL s",
        "VIDEOS",
        "CREATED ONCE",
        "KEYED DL",
        "RUN CPU ms/row",
        "MOCK CPU ms/row",
        "RUN PEAK RSS MiB",
        "CHECK",
    ]
    rows = [
        [
            r["dialect"].upper(),
            f"{r['rows_per_s']:.1f}",
            f"{r['submissions_per_s']:.1f}",
            f"{r['wall_seconds']:.1f}",
            f"{r['videos_on_disk']:,}/{r['rows']:,}",
            f"{r['prompts_created_once']:,}/{r['rows']:,}",
            f"{r['mock']['video_requests_keyed']:,}/{r['mock']['video_requests']:,}",
            f"{r['run_cpu_ms_per_row']:.1f}",
            f"{r['mock_cpu_ms_per_row']:.1f}",
            f"{r['run_peak_rss_mib']:.0f}",
            check_cell(r["wrong"]),
        ]
        for r in results
    ]
    return (
        f"{table_text(headers, rows)}\n\nROWS/S: rows ÷ WALL s (spawn to exit of `veo-batch "
        f"run --concurrency {CONCURRENCY} --download`); SUBMISSIONS/S: (n - 1) ÷ (last - first "
        "submitted_at); KEYED DL: video downloads that carried the key, of those the mock "
        "served; RUN PEAK RSS: the run's process tree."
    )


def run_benchmark(args: argparse.Namespace, work: Path, children: Children) -> bool:
    started, code = datetime.now(UTC), git_state()
    jobs, photo_kb = write_job_file(work / "shop", args.rows, args.photos)
    mock = Mock.start(children, "mock", KEY, "--text-videos")
    results = [one_run(children, work, mock, d, jobs, args.rows) for d in ("relay", "gemini")]
    children.stop(mock.child)
    for r in results:
        r["wrong"] = problems(r)
    relay, gemini = results
    ratios = {
        name: gemini[name] / relay[name] if relay[name] else None
        for name in ("rows_per_s", "submissions_per_s")
    }
    document: dict[str, Any] = {
        "started": started.isoformat(),
        "machine": machine_facts(),
        "code": code,
        "settings": {
            "rows": args.rows,
            "photos": args.photos,
            "photo_kb": photo_kb,
            "concurrency": CONCURRENCY,
            "polls": POLLS,
            "accounts": ACCOUNTS,
        },
        "results": results,
        "gemini_vs_relay": ratios,
    }
    note_code_change(document)
    print(f"\n{args.rows:,} rows, {args.photos} photos of {photo_kb:.0f} KB on average\n")
    print(table(results))
    print(f"\nGEMINI ÷ RELAY: rows/s {times(ratios['rows_per_s'])}, ", end="")
    print(f"submissions/s {times(ratios['submissions_per_s'])}")
    for r in results:
        for problem in r["wrong"]:
            print(f"problem: {r['dialect']}: {problem}")
    print_problems((r["dialect"], r) for r in results)
    print(f"\nwrote {write_json('dialects', started, document)}")
    return all(not r["wrong"] for r in results)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure the throughput of a Gemini-dialect account against a relay "
        "account (images inline), each a `veo-batch run --download` against the same mock.",
    )
    parser.add_argument(
        "--rows", type=int, default=600, help="rows of the job file (default: %(default)s)"
    )
    parser.add_argument(
        "--photos", type=int, default=4, help="distinct photos, reused (default: %(default)s)"
    )
    add_keep(parser)
    args = parser.parse_args(argv)
    if args.rows < 2 or args.photos < 1:
        parser.error("--rows must be at least 2 and --photos at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_in_workspace(
        "veobatch-dialects-", args.keep, lambda work, children: run_benchmark(args, work, children)
    )


if __name__ == "__main__":
    sys.exit(main())
