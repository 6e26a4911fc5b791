"""Benchmark: load a big CSV job file into the database, with veo-batch and with pandas.

What is measured, for each database (SQLite, PostgreSQL), on one generated CSV file:

- veo-batch: `veo-batch load FILE --batch bench` into a fresh database (a new SQLite file or a
  new PostgreSQL database, either migrated with `veo-batch db upgrade` before the clock
  starts). Every row is checked (id, prompt, model, image count and URLs, aspect ratio,
  booleans) and all rows are stored in one transaction.
- pandas, the baseline a user would write without us: `pandas.read_csv(FILE)` then
  `DataFrame.to_sql("jobs_pandas", ..., chunksize=50_000)` through a SQLAlchemy engine, into a
  fresh SQLite file or the same PostgreSQL database. No validation at all. On PostgreSQL the
  faster of `method=None` and `method="multi"` is picked by a short trial first ("multi" sends
  chunks of 10,922 rows: PostgreSQL binds at most 65,535 parameters in one statement).

Each load runs in a child process of its own. Its wall time runs from spawning it to its exit,
so interpreter start-up and imports count, as they do for a user. Its peak RSS is the
`ru_maxrss` that `os.wait4` returns for exactly that child. Linux starts a child's `ru_maxrss`
at the parent's peak (the child begins as a copy of the parent before `exec`), so no figure can
be lower than this script's own peak RSS; the output prints that floor, kept small because this
script streams the CSV and imports neither pandas nor SQLAlchemy. After each load the row count
of the table is checked against the file's.

The CSV file is generated (streamed, seeded: the same rows on every run) into a temporary
directory that also holds the SQLite files; `--csv PATH` reuses a file instead. Results are
printed as a table next to the targets for veo-batch (1M rows in at most 10 s, i.e. at least
100,000 rows/s, with a peak RSS of at most 200 MB) and written to `bench/out/load-<time>.json`.

    python bench/load.py                     # 1,000,000 rows, SQLite and PostgreSQL
    python bench/load.py --rows 100000 --databases sqlite --skip-pandas
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: bench.common

from bench.common import (
    BenchError,
    drop_database,
    git_state,
    machine_facts,
    pg_admin,
    recreate_database,
    veo_batch,
    write_json,
)
from veobatch.cli.output import table_text

SEED: Final = 20_240_601
DEFAULT_ROWS: Final = 1_000_000
DATABASES: Final = ("sqlite", "postgresql")
TARGET_ROWS_PER_S: Final = 100_000
TARGET_RSS_MB: Final = 200
PANDAS_TABLE: Final = "jobs_pandas"
PANDAS_CHUNKSIZE: Final = 50_000
PG_MAX_PARAMS: Final = 65_535  # bind parameters in one PostgreSQL statement
TRIAL_ROWS: Final = 20_000  # rows of the trial that picks pandas' method on PostgreSQL
PG_NAME: Final = "veobatch_bench"
PG_BENCH_DSN: Final = f"host=127.0.0.1 port=5432 user=postgres dbname={PG_NAME}"
PG_URL: Final = f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_NAME}"
ERROR_TAIL_CHARS: Final = 3000  # of a failed child's output (pandas quotes whole statements)
HEADER: Final = ("id", "prompt", "model", "images", "aspect_ratio", "enhance_prompt")

# ---------------------------------------------------------------------------------- the CSV

# (model, fewest images, most images, weight)
MODELS: Final = (
    ("veo3.1", 1, 2, 30),
    ("veo3-fast-frames", 1, 2, 20),
    ("veo3.1-pro", 1, 2, 12),
    ("veo3-pro-frames", 1, 1, 10),
    ("veo2-fast-frames", 1, 2, 8),
    ("veo3.1-components", 1, 3, 12),
    ("veo2-fast-components", 1, 3, 8),
)
SUBJECTS: Final = (
    "A golden retriever puppy",
    "An elderly fisherman",
    "A red vintage convertible",
    "A ceramic coffee mug",
    "A young dancer in a yellow dress",
    "A pair of white sneakers",
    "A hummingbird",
    "A chef in a busy kitchen",
    "A lighthouse",
    "A glass perfume bottle",
    "A boy on a bicycle",
    "A snow leopard",
    "A steaming bowl of ramen",
    "A cargo ship",
    "A wristwatch with a leather strap",
    "A street musician",
    "An astronaut",
    "A paper lantern",
)
ACTIONS: Final = (
    "walks slowly through",
    "spins gently in",
    "rests quietly on",
    "races across",
    "emerges from the fog over",
    "is revealed by a slow pan across",
    "glides above",
    "turns toward the camera in",
    "floats weightlessly over",
    "dances in the rain in",
)
PLACES: Final = (
    "a sunlit meadow",
    "a neon-lit Tokyo alley",
    "a marble kitchen counter",
    "the surface of Mars",
    "a misty pine forest",
    "a crowded night market",
    "a minimalist white studio",
    "a windswept beach at dawn",
    "a snowy mountain pass",
    "an old library",
    "a desert highway",
)
DETAILS: Final = (
    "cinematic lighting",
    "shallow depth of field",
    "slow dolly-in",
    "golden hour",
    "soft backlight",
    "handheld camera feel",
    "drone shot from above",
    "35mm film grain",
    "warm color palette",
    "the camera orbits the subject",
    "light rain falls",
    "dust floats in the sunbeams",
    "reflections shimmer on wet asphalt",
    "4K, photorealistic",
    'a neon sign reading "OPEN" flickers',
    "the background slowly blurs",
    "no text on screen",
    "smooth 24 fps motion",
    "leaves drift past the lens",
    "studio product shot",
)
CHINESE: Final = (
    "一只橘猫在窗台上晒太阳",
    "镜头缓慢推进",
    "清晨的薄雾笼罩着山谷",
    "电影感光影",
    "一位老人在茶馆里喝茶",
    "樱花随风飘落",
    "城市夜景霓虹闪烁",
    "产品在白色背景上旋转",
    "柔和的逆光",
    "航拍视角",
    "雨后的石板路反射着灯光",
    "画面温暖而安静",
    "一辆红色的老爷车驶过海边公路",
    "小女孩在麦田里奔跑",
    "镜头环绕主体缓慢旋转",
    "浅景深",
    "金色的夕阳洒在湖面上",
    "一杯热咖啡冒着热气",
    "宇航员漂浮在空间站里",
    "慢动作特写",
    "古老的石桥横跨小河",
    "风吹动窗帘",
    "厨师在厨房里忙碌",
    "不要出现文字",
)
IMAGE_HOSTS: Final = (
    "https://cdn.shop-example.com/products",
    "https://images.example.org/uploads/2024",
    "https://storage.googleapis.com/acme-media/frames",
    "https://assets.example.net/catalog/img",
)
CHINESE_SHARE: Final = 0.03
COMMA_SHARE: Final = 0.4  # English prompts written as one comma-separated line


def english_prompt(rng: random.Random) -> str:
    """60 to 200 characters: a subject, an action and a place, then details."""
    length = rng.randint(60, 200)
    joiner, end = (", ", "") if rng.random() < COMMA_SHARE else (". ", ".")
    text = f"{rng.choice(SUBJECTS)} {rng.choice(ACTIONS)} {rng.choice(PLACES)}"
    for detail in rng.sample(DETAILS, len(DETAILS)):
        if len(text) >= length or len(text + joiner + detail + end) > 200:
            break
        text += joiner + (detail if end == "" else detail[0].upper() + detail[1:])
    return text + end


def chinese_prompt(rng: random.Random) -> str:
    """60 to 200 characters of Chinese phrases."""
    length = rng.randint(60, 200)
    phrases = rng.sample(CHINESE, len(CHINESE))
    text = phrases.pop()
    for phrase in phrases:
        if len(text) >= length or len(text) + len(phrase) + 2 > 200:
            break
        text += "，" + phrase
    return text + "。"


def images(rng: random.Random, low: int, high: int) -> str:
    count = rng.randint(low, high)
    return "|".join(
        f"{rng.choice(IMAGE_HOSTS)}/{rng.getrandbits(64):016x}.{rng.choice(('jpg', 'png'))}"
        for _ in range(count)
    )


def job_rows(count: int, seed: int) -> Iterator[tuple[str, ...]]:
    rng = random.Random(seed)
    weights = [model[3] for model in MODELS]
    for number in range(1, count + 1):
        name, low, high, _ = rng.choices(MODELS, weights)[0]
        prompt = chinese_prompt(rng) if rng.random() < CHINESE_SHARE else english_prompt(rng)
        yield (
            f"job-{number:07d}",
            prompt,
            name,
            images(rng, low, high),
            rng.choice(("16:9", "16:9", "9:16", "")),
            rng.choice(("true", "false", "")),
        )


def write_csv(path: Path, count: int, seed: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(job_rows(count, seed))


def count_csv_rows(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as handle:
        return sum(1 for row in csv.reader(handle) if row) - 1


# ---------------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_kib: int
    stdout: str
    stderr: str
    tree_rss_kib: int = 0  # peak of the summed RSS of the process and its children (sampled)
    tree_pss_kib: int = 0  # the same in PSS: shared pages counted once across the tree


def _descendants(pid: int) -> list[int]:
    """`pid` and every process below it (veo-batch forks a reader process)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    queue.extend(int(child) for child in handle.read().split())
            except OSError:
                pass
    return found


def _memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB, zeros if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            fields = dict(line.split(":", 1) for line in handle if ":" in line)
    except OSError:
        return 0, 0
    return int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0])


def run_measured(argv: Sequence[str], env: dict[str, str]) -> Run:
    """Run `argv` to its end: its wall time, its own peak RSS (from wait4) and the peak memory
    of its whole process tree, sampled every 20 ms. Fails unless it exits 0."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(argv, env=env, stdout=out, stderr=err)
        tree_rss = tree_pss = 0
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            sizes = [_memory_kib(p) for p in _descendants(child.pid)]
            tree_rss = max(tree_rss, sum(rss for rss, _ in sizes))
            tree_pss = max(tree_pss, sum(pss for _, pss in sizes))
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        run = Run(
            seconds, usage.ru_maxrss, out.read().decode(), err.read().decode(), tree_rss, tree_pss
        )
    if child.returncode != 0:
        tail = (run.stdout + run.stderr)[-ERROR_TAIL_CHARS:]
        raise BenchError(f"`{shlex.join(argv)}` exited with {child.returncode}:\n{tail}")
    return run


def with_database(url: str) -> dict[str, str]:
    return {**os.environ, "VEO_DATABASE_URL": url}


def pandas_chunksize(method: str) -> int:
    """Rows per `to_sql` chunk: one multi-row INSERT may bind at most 65,535 parameters."""
    return PANDAS_CHUNKSIZE if method == "none" else PG_MAX_PARAMS // len(HEADER)


def pandas_command(csv_path: Path, url: str, method: str, rows: int) -> list[str]:
    """This script, as the child that loads with pandas (`rows` 0: the whole file)."""
    return [sys.executable, __file__, "--pandas-child", str(csv_path), url, method, str(rows)]


def pandas_settings(method: str) -> str:
    shown = "None" if method == "none" else repr(method)
    return f"method={shown}, chunksize={pandas_chunksize(method):,}"


def pandas_child(csv_path: str, url: str, method: str, rows: str) -> None:
    """Load with pandas: the code a user would write. Imported here, never in the parent."""
    import pandas as pd  # noqa: PLC0415 - only this child pays for pandas
    import sqlalchemy as sa  # noqa: PLC0415

    frame = pd.read_csv(csv_path, nrows=int(rows) or None)
    engine = sa.create_engine(url)
    frame.to_sql(
        PANDAS_TABLE,
        engine,
        if_exists="replace",
        index=False,
        chunksize=pandas_chunksize(method),
        method=None if method == "none" else method,
    )
    engine.dispose()


# ---------------------------------------------------------------------------------- results


@dataclass
class Result:
    database: str
    tool: str
    rows: int
    seconds: float
    peak_rss_mb: float  # the largest single process
    how: str
    output: str = ""
    tree_rss_mb: float = 0.0  # all processes of the load together, shared pages counted twice
    tree_pss_mb: float = 0.0  # all processes together, shared pages counted once
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds


def measured_load(
    database: str,
    tool: str,
    how: str,
    argv: Sequence[str],
    env: dict[str, str],
    rows: int,
    stored: Callable[[], int],
) -> Result:
    """Run one load and check that it stored `rows` rows."""
    print(f"{database}: {tool}: {how} ...", flush=True)
    run = run_measured(argv, env)
    count = stored()
    if count != rows:
        raise BenchError(f"{database}: {tool} stored {count:,} rows, the file has {rows:,}")
    output = (run.stdout + run.stderr).strip()
    if output:
        print("  " + output.replace("\n", "\n  "))
    return Result(
        database,
        tool,
        rows,
        run.seconds,
        run.peak_rss_kib / 1024,
        how,
        output,
        tree_rss_mb=run.tree_rss_kib / 1024,
        tree_pss_mb=run.tree_pss_kib / 1024,
    )


def load_veobatch(
    database: str, url: str, csv_path: Path, rows: int, stored: Callable[[], int]
) -> Result:
    """Migrate the fresh database (not timed), then load into it."""
    run_measured(veo_batch("db", "upgrade"), with_database(url))
    command = veo_batch("load", str(csv_path), "--batch", "bench")
    how = "validated, one transaction"
    return measured_load(database, "veo-batch", how, command, with_database(url), rows, stored)


def load_pandas(
    database: str, url: str, csv_path: Path, method: str, rows: int, stored: Callable[[], int]
) -> Result:
    command = pandas_command(csv_path, url, method, 0)
    how = "no validation, " + pandas_settings(method)
    return measured_load(database, "pandas", how, command, dict(os.environ), rows, stored)


def sqlite_count(path: Path, table: str = "jobs") -> Callable[[], int]:
    def count() -> int:
        with closing(sqlite3.connect(path)) as conn:
            (value,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            return int(value)

    return count


def pg_count(table: str = "jobs") -> Callable[[], int]:
    def count() -> int:
        with psycopg.connect(PG_BENCH_DSN) as conn:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            (value,) = row.fetchone() or (0,)
            return int(value)

    return count


# ---------------------------------------------------------------------------------- databases


def bench_sqlite(csv_path: Path, rows: int, work: Path, skip_pandas: bool) -> list[Result]:
    ours, theirs = work / "veobatch.db", work / "pandas.db"
    results = [load_veobatch("sqlite", f"sqlite:///{ours}", csv_path, rows, sqlite_count(ours))]
    if not skip_pandas:
        stored = sqlite_count(theirs, PANDAS_TABLE)
        results.append(load_pandas("sqlite", f"sqlite:///{theirs}", csv_path, "none", rows, stored))
    return results


def pg_unreachable() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    try:
        pg_admin("SELECT 1", PG_NAME)
    except psycopg.OperationalError as exc:
        return str(exc).strip()
    return None


def bench_postgresql(csv_path: Path, rows: int, skip_pandas: bool) -> list[Result]:
    problem = pg_unreachable()
    if problem is not None:
        print(f"postgresql: skipped, the server at 127.0.0.1:5432 cannot be reached: {problem}")
        return []
    recreate_database(PG_NAME)
    try:
        results = [load_veobatch("postgresql", PG_URL, csv_path, rows, pg_count())]
        if not skip_pandas:
            method, trial = pg_pandas_method(csv_path)
            stored = pg_count(PANDAS_TABLE)
            result = load_pandas("postgresql", PG_URL, csv_path, method, rows, stored)
            result.extra["method_trial_seconds"] = trial
            results.append(result)
        return results
    finally:
        drop_database(PG_NAME)


def pg_pandas_method(csv_path: Path) -> tuple[str, dict[str, float]]:
    """The faster `to_sql` method on PostgreSQL, timed on the file's first rows."""
    trial = {
        method: run_measured(
            pandas_command(csv_path, PG_URL, method, TRIAL_ROWS), dict(os.environ)
        ).seconds
        for method in ("none", "multi")
    }
    method = min(trial, key=trial.__getitem__)
    print(
        f"postgresql: pandas method trial on {TRIAL_ROWS:,} rows: "
        + ", ".join(f"{pandas_settings(m)}: {s:.2f} s" for m, s in trial.items())
        + f"; using {pandas_settings(method)}"
    )
    return method, trial


# ---------------------------------------------------------------------------------- report


def targets_met(result: Result) -> str:
    if result.tool != "veo-batch":
        return ""
    missed = []
    if result.rows_per_s < TARGET_ROWS_PER_S:
        missed.append(f"rows/s < {TARGET_ROWS_PER_S:,}")
    if max(result.peak_rss_mb, result.tree_rss_mb) > TARGET_RSS_MB:
        missed.append(f"RSS > {TARGET_RSS_MB} MB")
    return "MISSED: " + ", ".join(missed) if missed else "met"


def ratios(results: Sequence[Result]) -> dict[str, float]:
    """Per database: veo-batch rows/s divided by pandas rows/s."""
    speed = {(r.database, r.tool): r.rows_per_s for r in results}
    return {
        database: speed[database, "veo-batch"] / speed[database, "pandas"]
        for database, tool in speed
        if tool == "veo-batch" and (database, "pandas") in speed
    }


def report(results: Sequence[Result], floor_mb: float) -> str:
    by_database = ratios(results)
    headers = [
        "DATABASE",
        "TOOL",
        "ROWS",
        "SECONDS",
        "ROWS/S",
        "PEAK RSS MB",
        "TREE RSS",
        "TREE PSS",
        "VS PANDAS",
    ]
    rows = [
        [
            r.database,
            r.tool,
            f"{r.rows:,}",
            f"{r.seconds:.2f}",
            f"{r.rows_per_s:,.0f}",
            f"{r.peak_rss_mb:.0f}",
            f"{r.tree_rss_mb:.0f}",
            f"{r.tree_pss_mb:.0f}",
            f"×{by_database[r.database]:.2f}"
            if r.tool == "veo-batch" and r.database in by_database
            else "",
            targets_met(r),
            r.how,
        ]
        for r in results
    ]
    table = table_text([*headers, "TARGETS", "HOW"], rows)
    return (
        f"{table}\n\ntargets for veo-batch: at least {TARGET_ROWS_PER_S:,} rows/s "
        f"(1M rows in at most 10 s) and a peak RSS of at most {TARGET_RSS_MB} MB (1 MB = 2^20 "
        "bytes)\nVS PANDAS: veo-batch rows/s ÷ pandas rows/s on the same database; pandas "
        f"checks nothing.\npeak RSS cannot read below this script's own peak, {floor_mb:.0f} MB."
        "\nTREE RSS / TREE PSS: the load's processes together (veo-batch reads in a forked "
        "child), sampled every 20 ms; RSS counts shared pages in each process, PSS once. "
        "The memory target is checked against the larger of PEAK RSS and TREE RSS."
    )


def write_results(
    results: Sequence[Result],
    csv_path: Path,
    floor_mb: float,
    started: datetime,
    code: dict[str, Any],
) -> Path:
    document = {
        "started": started.isoformat(),
        "csv": {"path": str(csv_path), "bytes": csv_path.stat().st_size, "seed": SEED},
        "machine": machine_facts(),
        "code": code,
        "targets": {"rows_per_s": TARGET_ROWS_PER_S, "peak_rss_mb": TARGET_RSS_MB},
        "rss_floor_mb": round(floor_mb, 1),
        "veo_batch_vs_pandas": ratios(results),
        "results": [{**asdict(r), "rows_per_s": r.rows_per_s} for r in results],
    }
    return write_json("load", started, document)


def own_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time `veo-batch load` of a big CSV file against pandas.read_csv + to_sql."
    )
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows to generate")
    parser.add_argument("--csv", type=Path, help="load this CSV file instead of generating one")
    parser.add_argument(
        "--databases",
        default=",".join(DATABASES),
        help="comma-separated: sqlite, postgresql (default: both)",
    )
    parser.add_argument("--skip-pandas", action="store_true", help="time veo-batch only")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--pandas-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.databases = [name.strip() for name in args.databases.split(",") if name.strip()]
    unknown = set(args.databases) - set(DATABASES)
    if unknown:
        parser.error(f"unknown database {', '.join(sorted(unknown))}; use {', '.join(DATABASES)}")
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    return args


def prepared_csv(args: argparse.Namespace, work: Path) -> tuple[Path, int]:
    if args.csv is not None:
        return args.csv.resolve(), count_csv_rows(args.csv)
    path = work / "jobs.csv"
    started = time.perf_counter()
    write_csv(path, args.rows, SEED)
    size = path.stat().st_size / 2**20
    print(f"wrote {args.rows:,} rows ({size:.0f} MB) in {time.perf_counter() - started:.1f} s")
    return path, args.rows


def run_benchmark(args: argparse.Namespace, work: Path) -> None:
    started, code = datetime.now(UTC), git_state()
    csv_path, rows = prepared_csv(args, work)
    results = []
    if "sqlite" in args.databases:
        results += bench_sqlite(csv_path, rows, work, args.skip_pandas)
    if "postgresql" in args.databases:
        results += bench_postgresql(csv_path, rows, args.skip_pandas)
    if not results:
        print("nothing was measured")
        return
    floor = own_peak_rss_mb()
    print("\n" + report(results, floor))
    print(f"\nwrote {write_results(results, csv_path, floor, started, code)}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.pandas_child:
        pandas_child(*args.pandas_child)
        return 0
    work = Path(tempfile.mkdtemp(prefix="veobatch-bench-"))
    try:
        run_benchmark(args, work)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
