"""The `veo-batch` commands as a user runs them: output, exit codes, and no tracebacks."""

from __future__ import annotations

import csv
import gc
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import Cli
from tests.helpers import URL, job, wait_until
from veobatch import Client
from veobatch.errors import EXIT_CODE_MEANINGS, ExitCode
from veobatch.settings import normalize_database_url
from veobatch.store import database

EXAMPLE = str(Path(__file__).parent.parent / "jobs.example.yaml")


def test_load_status_jobs_export(run: Cli, tmp_path: Path) -> None:
    loaded = run("load", EXAMPLE)
    assert loaded.exit_code == 0, loaded.output
    assert "6 rows checked, 6 valid" in loaded.stdout
    assert "batch 'jobs.example' (new): stored 6 rows" in loaded.stdout

    status = run("status")
    assert status.exit_code == 0
    header, row = status.stdout.splitlines()[:2]
    assert header.split()[:4] == ["BATCH", "STATE", "TOTAL", "PENDING"]
    assert row.split()[:4] == ["jobs.example", "active", "6", "6"]

    jobs = run("jobs", "jobs.example", "--status", "pending")
    assert "tea-garden-zh" in jobs.stdout
    assert len(jobs.stdout.splitlines()) == 7

    out = tmp_path / "results.jsonl"
    exported = run("export", "jobs.example", "-o", str(out))
    assert exported.exit_code == 0, exported.output
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in records][:2] == ["sunrise-lake", "city-timelapse"]
    assert {r["status"] for r in records} == {"pending"}


def test_loading_the_same_file_twice_adds_nothing(sqlite_run: Cli) -> None:
    assert sqlite_run("load", EXAMPLE).exit_code == 0
    again = sqlite_run("load", EXAMPLE)
    assert again.exit_code == 0
    assert "stored 0 rows" in again.stdout
    assert "6 were already in the batch" in again.stdout


def test_dry_run_stores_nothing(sqlite_run: Cli) -> None:
    result = sqlite_run("load", EXAMPLE, "--dry-run")
    assert result.exit_code == 0
    assert "models: veo3.1 ×2" in result.stdout
    assert "dry run: nothing was stored" in result.stdout
    assert "no batches yet" in sqlite_run("status").stdout


def test_invalid_rows_are_all_listed_and_nothing_is_stored(run: Cli, tmp_path: Path) -> None:
    path = tmp_path / "jobs.csv"
    path.write_text(
        "id,prompt,model,images,aspect_ratio\n"
        f"a,ok,veo3.1,{URL},16:9\n"
        f"b,,veo3.1,{URL},16:9\n"
        f"c,ok,veo3.1,cat.png,4:3\n"
        f"a,ok,veo3.1,{URL},\n",
        encoding="utf-8",
    )
    result = run("load", str(path))
    assert result.exit_code == ExitCode.INVALID_ROWS
    problems = [line for line in result.stderr.splitlines() if line.startswith(str(path))]
    assert problems == [
        f"{path}:3: prompt: missing or empty",
        f"{path}:4: images: cat.png: no such file (looked for {path.parent / 'cat.png'})",
        f"{path}:4: aspect_ratio: must be one of 16:9, 9:16, got '4:3'",
        f"{path}:5: id: duplicate id 'a': line 2 has the same id",
    ]
    assert "nothing was stored" in result.stderr
    assert "no batches yet" in run("status").stdout

    skipped = run("load", str(path), "--skip-invalid")
    assert skipped.exit_code == 0
    assert "2 invalid rows stored as failed" in skipped.stdout
    assert "1 row not stored: their id was already taken" in skipped.stdout
    failed = run("jobs", "jobs", "--status", "failed")
    assert "invalid" in failed.stdout
    assert "line 3: prompt: missing or empty" in failed.stdout


def test_problem_list_is_capped(sqlite_run: Cli, tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    path.write_text(
        "\n".join('{"prompt": "", "model": "veo3.1", "images": ["x"]}' for _ in range(30))
    )
    result = sqlite_run("load", str(path), "--max-problems", "5")
    assert result.exit_code == ExitCode.INVALID_ROWS
    assert "... and 55 more problem(s)" in result.stderr
    assert "30 invalid (60 problems)" in result.stdout


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("jobs.yaml", "jobs:\n  - prompt: [\n", "jobs.yaml:3: YAML syntax error"),
        ("jobs.csv", b"\x89PNG\r\n\x1a\n", "is a PNG image, not a csv job file"),
        ("jobs.csv", "prompt,model,images\n", "has a header but no rows"),
        ("jobs.csv", "id,model,images\n1,veo3.1,x\n", "jobs.csv:1: no 'prompt' column"),
        (
            "jobs.csv",
            "prompt,model,images\nh\xe9,veo3.1,x\n".encode("latin-1"),
            "jobs.csv:2: is not UTF-8",
        ),
        ("jobs.txt", "x", "cannot tell the format"),
    ],
)
def test_broken_files_get_one_message_and_exit_3(
    sqlite_run: Cli, tmp_path: Path, name: str, content: str | bytes, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    result = sqlite_run("load", str(path))
    assert result.exit_code == ExitCode.BAD_FILE
    assert expected in result.stderr
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.output
    assert "no batches yet" in sqlite_run("status").stdout


def test_standard_input(sqlite_run: Cli) -> None:
    data = f'{{"id": "x", "prompt": "hi", "model": "veo3.1", "images": ["{URL}"]}}\n'
    assert sqlite_run("load", "-", "--format", "jsonl").exit_code == ExitCode.BAD_FILE  # no name
    result = sqlite_run("load", "-", "--format", "jsonl", "--batch", "piped", input=data)
    assert result.exit_code == 0, result.output
    assert "batch 'piped' (new): stored 1 row" in result.stdout


def test_unknown_batch_exits_5(sqlite_run: Cli) -> None:
    for args in (["status", "nope"], ["jobs", "nope"], ["export", "nope", "-o", "x.csv"]):
        result = sqlite_run(*args)
        assert result.exit_code == ExitCode.NOT_FOUND
        assert "no batch named 'nope'" in result.stderr


def test_bad_filter_values_are_usage_errors(sqlite_run: Cli) -> None:
    sqlite_run("load", EXAMPLE)
    result = sqlite_run("jobs", "jobs.example", "--status", "done")
    assert result.exit_code == ExitCode.USAGE
    assert "unknown status done" in result.output


def test_every_command_explains_itself() -> None:
    cli = Cli("sqlite://")
    top = cli("--help")
    assert "Exit codes:" in top.stdout
    assert "VEO_DATABASE_URL" in top.stdout
    for command in ("load", "status", "jobs", "export"):
        text = cli(command, "--help").stdout
        assert "Examples:" in text, command


def test_postgres_not_migrated_says_what_to_run(postgres_url: str) -> None:
    admin = sa.create_engine(
        sa.make_url(postgres_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS veobatch_unmigrated WITH (FORCE)")
        conn.exec_driver_sql("CREATE DATABASE veobatch_unmigrated")
    url = sa.make_url(postgres_url).set(database="veobatch_unmigrated").render_as_string(False)
    try:
        cli = Cli(normalize_database_url(url))
        result = cli("status")
        assert result.exit_code == ExitCode.DATABASE
        assert "is empty, not at the newest schema" in result.stderr
        assert "run `veo-batch db upgrade`" in result.stderr
        upgraded = cli("db", "upgrade")
        assert upgraded.exit_code == 0, upgraded.output
        assert cli("status").exit_code == 0
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql("DROP DATABASE IF EXISTS veobatch_unmigrated WITH (FORCE)")
        admin.dispose()


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    cli = Cli("postgresql+psycopg://nobody@127.0.0.1:1/none")
    result = cli("status")
    assert result.exit_code == ExitCode.DATABASE
    assert "cannot open the database postgresql+psycopg://nobody@127.0.0.1:1/none" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "name", ["", "  padded  ", "x" * 201, "spring\u202egnp.exe", "zero\u200bwidth"]
)
def test_bad_batch_names_are_refused(sqlite_run: Cli, name: str) -> None:
    result = sqlite_run("load", EXAMPLE, "--batch", name)
    assert result.exit_code == ExitCode.USAGE
    assert "a batch name is 1 to 200 characters" in result.output


def test_run_with_the_mock_provider_ends_with_every_video_on_disk(
    sqlite_run: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = sqlite_run("run", EXAMPLE, "--mock", "--download", "videos")
    assert result.exit_code == 0, result.output
    assert "succeeded  6" in result.stdout
    assert "videos on disk: 6 of 6" in result.stdout
    assert "results: jobs.example.results.csv" in result.stdout
    with (tmp_path / "jobs.example.results.csv").open(encoding="utf-8") as exported:
        rows = list(csv.DictReader(exported))
    assert {row["status"] for row in rows} == {"succeeded"}
    for row in rows:
        video = Path(row["video_path"])
        assert video == tmp_path / "videos" / "jobs.example" / f"{row['id']}.mp4"
        assert hashlib.sha256(video.read_bytes()).hexdigest() == row["video_sha256"]
        assert video.stat().st_size == int(row["video_bytes"]) > 0
        assert row["video_url"].startswith("http://127.0.0.1:")
    again = sqlite_run("run", EXAMPLE, "--mock")
    assert again.exit_code == 0
    assert "6 were already in the batch" in again.stdout


def test_run_no_wait_stops_at_task_ids_and_a_later_run_follows_them(
    sqlite_run: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = sqlite_run("run", EXAMPLE, "--mock", "--no-wait")
    assert result.exit_code == 0, result.output
    assert "submitted  6" in result.stdout
    status = sqlite_run("status", "jobs.example")
    assert "active" in status.stdout  # rows generating: the batch is not finished
    later = sqlite_run("run", EXAMPLE, "--mock")
    assert later.exit_code == 0, later.output
    assert "succeeded  6" in later.stdout
    watched = sqlite_run("status", "jobs.example", "--watch")
    assert watched.exit_code == 0
    assert "6/6 done: waiting 0, submitting 0, generating 0, succeeded 6" in watched.stderr


def test_run_exit_codes_say_what_happened(sqlite_run: Cli, tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text(
        f'{{"prompt": "ok", "model": "veo3.1", "images": ["{URL}"]}}\n'
        f'{{"prompt": "[mock:status=400] no", "model": "veo3.1", "images": ["{URL}"]}}\n',
        encoding="utf-8",
    )
    out = str(tmp_path / "out.jsonl")
    failed = sqlite_run("run", str(path), "--mock", "-o", out)
    assert failed.exit_code == ExitCode.ROWS_FAILED
    assert "1 row failed or is in doubt" in failed.stderr
    assert "veo-batch rerun jobs" in failed.stderr


def test_run_without_a_provider_says_what_to_set(sqlite_run: Cli) -> None:
    result = sqlite_run("run", EXAMPLE)
    assert result.exit_code == ExitCode.CONFIG
    assert "set VEO_API_BASE and VEO_API_KEY" in result.stderr


def test_pause_resume_cancel(sqlite_run: Cli) -> None:
    sqlite_run("load", EXAMPLE)
    assert sqlite_run("pause", "jobs.example").exit_code == 0
    assert "paused: paused by hand" in sqlite_run("status").stdout
    assert sqlite_run("pause", "jobs.example").exit_code == ExitCode.STATE
    assert sqlite_run("resume", "jobs.example").exit_code == 0
    cancelled = sqlite_run("cancel", "jobs.example", "--yes")
    assert "6 rows will not be sent" in cancelled.stdout
    assert sqlite_run("run", EXAMPLE, "--mock").exit_code == ExitCode.STATE


def test_rerun_in_doubt_rows_asks_first(sqlite_run: Cli, tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text(
        f'{{"prompt": "[mock:drop-after] x", "model": "veo3.1", "images": ["{URL}"]}}\n',
        encoding="utf-8",
    )
    sqlite_run("run", str(path), "--mock", "-o", str(tmp_path / "o.csv"))
    assert "0 rows match" in sqlite_run("rerun", "jobs").stdout  # in doubt is not failed
    refused = sqlite_run("rerun", "jobs", "--in-doubt", input="n\n")
    assert refused.exit_code == 1
    assert "has (or may have) created and billed their tasks" in refused.output
    assert "1 row is pending again" in sqlite_run("rerun", "jobs", "--in-doubt", "--yes").stdout


def test_rerun_of_rows_with_a_task_asks_first(sqlite_run: Cli, tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text(f'{{"prompt": "x", "model": "veo3.1", "images": ["{URL}"]}}\n', "utf-8")
    sqlite_run("run", str(path), "--mock", "-o", str(tmp_path / "o.csv"))
    refused = sqlite_run("rerun", "jobs", "--status", "succeeded", input="n\n")
    assert refused.exit_code == 1
    assert "of the 1 row chosen, those succeeded" in refused.output
    assert "succeeded" in sqlite_run("jobs", "jobs").stdout  # nothing changed


def test_one_rows_story(sqlite_run: Cli, tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    job = {"id": "j1", "prompt": "[mock:status=400] x", "model": "veo3.1", "images": [URL]}
    path.write_text(json.dumps(job) + "\n", encoding="utf-8")
    sqlite_run("run", str(path), "--mock", "-o", str(tmp_path / "o.csv"))
    sqlite_run("rerun", "jobs")
    sqlite_run("run", str(path), "--mock", "-o", str(tmp_path / "o.csv"))
    story = sqlite_run("jobs", "jobs", "--id", "j1").stdout
    attempts = [line for line in story.splitlines() if line.startswith("j1 ") and "submit" in line]
    assert len(attempts) == 2
    assert all("400" in line and "invalid" in line for line in attempts)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stopped_run_stops_cleanly_and_the_same_command_resumes(
    tmp_path: Path, stop: signal.Signals
) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"r{n}",
                    "prompt": f"[mock:slow=0.3] row {n}",
                    "model": "veo3.1",
                    "images": [URL],
                }
            )
            + "\n"
            for n in range(30)
        ),
        encoding="utf-8",
    )
    database = tmp_path / "veo-batch.db"
    env = {**os.environ, "VEO_DATABASE_URL": f"sqlite:///{database}"}
    command = [sys.executable, "-m", "veobatch", "run", str(path), "--mock", "-c", "2"]
    running = subprocess.Popen(command, env=env, cwd=tmp_path, stderr=subprocess.PIPE)
    engine = sa.create_engine(f"sqlite:///{database}")

    def submitted() -> int:
        try:
            with engine.connect() as conn:
                query = "SELECT count(*) FROM jobs WHERE status = 'submitted'"
                return int(conn.exec_driver_sql(query).scalar_one())
        except sa.exc.OperationalError:
            return 0  # not created yet

    wait_until(lambda: submitted() >= 2, 30, "two rows submitted")
    running.send_signal(stop)
    _, stderr = running.communicate(timeout=30)
    assert running.returncode == 130
    assert b"Run the same command to go on" in stderr
    with engine.connect() as conn:
        left: dict[str, int] = dict(
            conn.exec_driver_sql("SELECT status, count(*) FROM jobs GROUP BY status").all()
        )
    assert set(left) <= {"submitted", "succeeded", "pending"}  # nothing submitting or queued
    assert 2 <= left.get("submitted", 0) + left.get("succeeded", 0) < 30

    again = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, timeout=60, check=False
    )
    assert again.returncode == 0, again.stderr
    with engine.connect() as conn:
        query = "SELECT count(*) FROM attempts WHERE action = 'submit'"
        attempts = conn.exec_driver_sql(query).scalar_one()
        statuses = conn.exec_driver_sql("SELECT DISTINCT status FROM jobs").scalars().all()
    assert statuses == ["succeeded"]  # the tasks made by the first run were followed too
    assert attempts == 30  # every row sent exactly once over the two runs
    engine.dispose()


def test_serve_needs_tokens_or_a_loopback_no_auth(sqlite_run: Cli) -> None:
    refused = sqlite_run("serve")
    assert refused.exit_code == ExitCode.CONFIG
    assert "set VEO_API_TOKENS" in refused.output
    exposed = sqlite_run("serve", "--no-auth", "--host", "0.0.0.0")
    assert exposed.exit_code == ExitCode.CONFIG
    assert "--no-auth only on a loopback address" in exposed.output
    short = sqlite_run("--api-tokens", "short", "serve")
    assert short.exit_code == ExitCode.CONFIG
    assert "VEO_API_TOKENS: each token must be at least 16 characters" in short.output


def test_exit_codes_are_told_as_the_error_module_says(sqlite_run: Cli) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    table = dict(re.findall(r"^\| (\d+) \| (.+) \|$", readme, re.MULTILINE))
    assert {int(code): text for code, text in table.items()} == {
        code.value: text for code, text in EXIT_CODE_MEANINGS.items()
    }
    shown = " ".join(sqlite_run("--help").stdout.split())
    for code, text in EXIT_CODE_MEANINGS.items():
        assert f"{code.value} {' '.join(text.split())}" in shown


def test_status_and_jobs_speak_json_for_scripts(sqlite_run: Cli, tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text(
        f'{{"id": "a", "prompt": "ok", "model": "veo3.1", "images": ["{URL}"]}}\n'
        f'{{"id": "b", "prompt": "[mock:fail] no", "model": "veo3.1", "images": ["{URL}"]}}\n',
        encoding="utf-8",
    )
    sqlite_run("run", str(path), "--mock", "-o", str(tmp_path / "out.csv"))
    batch = json.loads(sqlite_run("status", "jobs", "--json").stdout)
    assert (batch["name"], batch["total"], batch["counts"]) == (
        "jobs",
        2,
        {"succeeded": 1, "failed": 1},
    )
    assert batch["errors"] == {"remote": 1}
    assert [b["name"] for b in json.loads(sqlite_run("status", "--json").stdout)] == ["jobs"]
    page = json.loads(sqlite_run("jobs", "jobs", "--status", "failed", "--json").stdout)
    assert page["total"] == 1
    assert [(j["id"], j["error_kind"]) for j in page["jobs"]] == [("b", "remote")]
    story = json.loads(sqlite_run("jobs", "jobs", "--id", "a", "--json").stdout)["jobs"][0]
    assert [event["action"] for event in story["history"]] == ["submit", "poll"]
    assert story["video_url"].startswith("http://127.0.0.1:")


def test_a_missing_job_is_not_found(sqlite_run: Cli, tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text(f'{{"id": "a", "prompt": "ok", "model": "veo3.1", "images": ["{URL}"]}}\n')
    sqlite_run("load", str(path))
    missing = sqlite_run("jobs", "jobs", "--id", "nope")
    assert missing.exit_code == ExitCode.NOT_FOUND
    assert "batch 'jobs' has no job 'nope'" in missing.output


def test_settings_may_come_after_the_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'after.db'}"
    made = Cli("sqlite:///unused.db")("status", "--database-url", url, "--rate", "2/s")
    assert made.exit_code == 0, made.output
    assert f"made a new database: {tmp_path / 'after.db'}" in made.stderr
    assert (tmp_path / "after.db").exists()
    assert "made a new database" not in Cli(url)("status").stderr  # only when it is new
    bad = Cli(url)("status", "--rate=often")
    assert bad.exit_code == ExitCode.CONFIG
    assert "VEO_RATE: 'often' is not a rate" in bad.output
    bare = Cli(url)("status", "--rate")
    assert (bare.exit_code, "option --rate needs a value" in bare.output) == (ExitCode.USAGE, True)


def test_a_stored_batch_runs_without_its_file(sqlite_run: Cli, tmp_path: Path) -> None:
    with Client(sqlite_run.database_url) as veo:
        veo.add("from-python", [job("a"), job("b")])
    done = sqlite_run("run", "--batch", "from-python", "--mock", "-o", str(tmp_path / "o.csv"))
    assert done.exit_code == 0, done.output
    assert "succeeded  2" in done.stdout
    no_file = sqlite_run("run", "--mock")
    assert no_file.exit_code == ExitCode.USAGE
    assert "veo-batch run --batch NAME" in no_file.output


def test_a_refused_change_names_the_batchs_state(sqlite_run: Cli, tmp_path: Path) -> None:
    with Client(sqlite_run.database_url) as veo:
        veo.add("b", [job("a")])
    assert sqlite_run("cancel", "b", "--yes").exit_code == 0
    refused = sqlite_run("pause", "b")
    assert refused.exit_code == ExitCode.STATE
    assert "batch 'b' is cancelled: it cannot pause" in refused.output


@pytest.mark.parametrize("url", ["http://[::1", "http://xn--/", "http://169.254.169.254/"])
def test_a_bad_webhook_is_refused_before_any_work(
    sqlite_run: Cli, tmp_path: Path, url: str
) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text(f'{{"prompt": "ok", "model": "veo3.1", "images": ["{URL}"]}}\n')
    out = str(tmp_path / "o.csv")
    refused = sqlite_run("run", str(path), "--mock", "-o", out, "--webhook", url)
    assert refused.exit_code == ExitCode.USAGE, refused.output
    assert "webhook_url" in refused.output
    assert "Traceback" not in refused.output
    assert sqlite_run("run", str(path), "--mock", "-o", out).exit_code == 0  # nothing broken


def test_rerun_of_rows_submitting_asks_first(sqlite_run: Cli, tmp_path: Path) -> None:
    with Client(sqlite_run.database_url) as veo:
        veo.add("b", [job("a")])
        with veo.engine.begin() as conn:  # its POST may be in flight, or its worker died
            conn.exec_driver_sql("UPDATE jobs SET status = 'submitting'")
    refused = sqlite_run("rerun", "b", "--status", "submitting", input="n\n")
    assert refused.exit_code == 1
    assert "those submitting: the provider has (or may have) created and billed" in refused.output
    with Client(sqlite_run.database_url) as veo:
        assert veo.status("b").counts == {"submitting": 1}


def test_a_download_folder_that_cannot_be_written_stops_the_run_first(
    sqlite_run: Cli, tmp_path: Path
) -> None:
    if os.geteuid() == 0:  # root writes anywhere: use a path under a file instead
        folder = tmp_path / "a-file" / "videos"
        (tmp_path / "a-file").write_text("not a folder")
    else:
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o500)
    path = tmp_path / "one.jsonl"
    path.write_text(f'{{"prompt": "ok", "model": "veo3.1", "images": ["{URL}"]}}\n')
    result = sqlite_run("run", str(path), "--mock", "--download", str(folder))
    assert result.exit_code == ExitCode.CANNOT_WRITE, result.output
    assert f"cannot save videos into {folder}" in result.output
    with Client(sqlite_run.database_url) as veo:
        assert veo.status("one").counts == {"pending": 1}  # nothing was sent


def test_videos_that_could_not_be_saved_change_the_exit_code(
    sqlite_run: Cli, tmp_path: Path
) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text(f'{{"id": "a", "prompt": "ok", "model": "veo3.1", "images": ["{URL}"]}}\n')
    videos = tmp_path / "videos"
    (videos / "one").mkdir(parents=True)
    (videos / "one" / "a.mp4.part").mkdir()  # where the download writes: it cannot
    out = str(tmp_path / "o.csv")
    result = sqlite_run("run", str(path), "--mock", "--download", str(videos), "-o", out)
    assert result.exit_code == ExitCode.DOWNLOADS_FAILED, result.output
    assert "1 video not saved" in result.stderr


def test_exports_keep_formulas_out_of_spreadsheets_and_load_back(
    sqlite_run: Cli, tmp_path: Path
) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text(
        f'{{"id": "=1+1", "prompt": "@SUM(A1)", "model": "veo3.1", "images": ["{URL}"], '
        '"note": "-5"}\n'
    )
    assert sqlite_run("load", str(path)).exit_code == 0
    out = tmp_path / "out.csv"
    assert sqlite_run("export", "jobs", "-o", str(out)).exit_code == 0
    row = next(csv.DictReader(out.open(encoding="utf-8")))
    assert (row["id"], row["prompt"], row["note"]) == ("'=1+1", "'@SUM(A1)", "'-5")
    assert sqlite_run("load", str(out), "--batch", "again").exit_code == 0
    with Client(sqlite_run.database_url) as veo:
        again = veo.jobs("again")[0]
    assert (again["id"], again["prompt"]) == ("=1+1", "@SUM(A1)")


def test_an_export_that_cannot_be_written_is_a_clear_error(sqlite_run: Cli, tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text(f'{{"prompt": "ok", "model": "veo3.1", "images": ["{URL}"]}}\n')
    sqlite_run("load", str(path))
    (tmp_path / "a-file").write_text("not a folder")
    result = sqlite_run("export", "one", "-o", str(tmp_path / "a-file" / "out.csv"))
    assert result.exit_code == ExitCode.CANNOT_WRITE
    assert "out.csv: cannot write here" in result.output
    assert "Traceback" not in result.output


def test_names_in_printed_hints_are_shell_quoted(sqlite_run: Cli) -> None:
    """A hint is there to be copied: a name like `$(id)` must not run when pasted."""
    assert sqlite_run("load", EXAMPLE, "--batch", "$(id)").exit_code == 0
    paused = sqlite_run("pause", "$(id)")
    assert paused.exit_code == 0, paused.output
    assert "`veo-batch resume '$(id)'` goes on" in paused.output


def test_an_export_respects_the_umask(sqlite_run: Cli, tmp_path: Path) -> None:
    """A results file is made as any new file is (0644 under the usual umask), not 0600."""
    assert sqlite_run("load", EXAMPLE, "--batch", "shop").exit_code == 0
    previous = os.umask(0o022)
    try:
        assert sqlite_run("export", "shop", "-o", str(tmp_path / "out.csv")).exit_code == 0
    finally:
        os.umask(previous)
    assert (tmp_path / "out.csv").stat().st_mode & 0o777 == 0o644


def in_a_fresh_interpreter(
    args: list[str], then: str, env: dict[str, str] | None = None, *, entry: str = "cli"
) -> str:
    """The output of `veo-batch ARGS` run in a new Python process, followed by what the
    expression `then` prints there afterwards. `entry` "cli" calls the command group as a
    program embedding it would; "main" is the `veo-batch` program itself."""
    call = (
        f"sys.argv = ['veo-batch', *{args!r}]\n    main()"
        if entry == "main"
        else f"cli.main({args!r}, prog_name='veo-batch')"
    )
    script = (
        "import gc, sys\n"
        f"from veobatch.cli import {entry}\n"
        "try:\n"
        f"    {call}\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print({then})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return done.stdout


def test_help_starts_without_the_engine() -> None:
    """`veo-batch --help` (and any command's) imports the command line, not the database, the
    HTTP clients or the engine: each command imports what it uses when it runs."""
    heavy = ("sqlalchemy", "alembic", "httpx", "redis", "celery", "fastapi", "PIL")
    out = in_a_fresh_interpreter(
        ["--help"], f"' '.join(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    assert "Commands:" in out
    assert out.splitlines()[-1] == ""  # none of them


def test_status_on_sqlite_imports_no_migrations_driver_or_http_client(tmp_path: Path) -> None:
    """`veo-batch status` on a SQLite database at the newest revision reads it without
    Alembic, psycopg, httpx or prometheus_client (each costs a command's start a twentieth
    of a second or more): they are imported where a migration, a PostgreSQL URL, a call out
    or a count needs them."""
    url = f"sqlite:///{tmp_path / 'veo-batch.db'}"
    database.open_database(url, migrate=True).dispose()  # (migrated here: Alembic is ours)
    heavy = ("alembic", "psycopg", "httpx", "prometheus_client")
    out = in_a_fresh_interpreter(
        ["status"],
        f"' '.join(sorted(m for m in {heavy!r} if m in sys.modules))",
        {"VEO_DATABASE_URL": url},
    )
    assert "no batches" in out.lower() or "BATCH" in out, out
    assert out.splitlines()[-1] == ""  # none of them


def test_a_statement_the_database_refuses_is_one_line_not_a_traceback(
    sqlite_run: Cli, tmp_path: Path
) -> None:
    """Not only a database that cannot be reached: one that refuses a statement (a schema
    changed by hand, a trigger) is named in one line, exit 4."""
    assert sqlite_run("db", "upgrade").exit_code == 0
    database = sqlite_run.database_url.removeprefix("sqlite:///")
    with sa.create_engine(f"sqlite:///{database}").begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER no_rows BEFORE INSERT ON jobs "
            "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
        )
    jobs = tmp_path / "one.csv"
    jobs.write_text(f"id,prompt,model,images\na,a fox,veo3.1,{URL}\n", encoding="utf-8")
    loaded = sqlite_run("load", str(jobs))
    assert loaded.exit_code == ExitCode.DATABASE
    assert "error: database error: refused by a trigger" in loaded.output


def test_only_a_process_that_runs_one_command_freezes_its_imports(
    sqlite_run: Cli, tmp_path: Path
) -> None:
    """`veo-batch` (its `main`) keeps what it imported out of the cyclic collector; the same
    commands called in a process that runs many (here, the tests') leave the collector as it
    is, or garbage made between them would never be freed."""
    before = gc.get_freeze_count()
    assert sqlite_run("status").exit_code == 0
    assert gc.get_freeze_count() == before
    out = in_a_fresh_interpreter(
        ["status"],
        "gc.get_freeze_count(), gc.isenabled()",
        {"VEO_DATABASE_URL": f"sqlite:///{tmp_path / 'one.db'}"},
        entry="main",
    )
    frozen, enabled = out.split()[-2:]
    assert int(frozen) > 100_000  # the engine's modules, SQLAlchemy's among them
    assert enabled == "True"  # collecting again, for what the command itself makes
