"""Google's own Veo (the Gemini API) as a kind of account: local photos run to videos on disk
through a `gemini` account, each picture arriving in its role; a filtered video fails as
`filtered` with Google's reason; a bad key, a daily quota and a rate limit each do what they
should; the key goes with a download only to the account's own origin; a batch is split
between a relay account and a Google account. The mock provider speaks both dialects."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from PIL import Image
from sqlalchemy.engine import Engine

from tests.conftest import serving
from tests.test_accounts import accounts_at, relays, run_through
from veobatch.accounts.fitting import Fitting
from veobatch.accounts.spec import accounts_of
from veobatch.cli import cli
from veobatch.destinations import Destinations
from veobatch.errors import ConfigError
from veobatch.intake.loader import LoadResult
from veobatch.intake.readers import open_job_file
from veobatch.lifecycle.download import video_client
from veobatch.lifecycle.sender import Account
from veobatch.lifecycle.spend_rules import Spending
from veobatch.provider.gemini import GEMINI
from veobatch.provider.mock import MockConfig, MockProvider
from veobatch.provider.mock.state import MP4_START
from veobatch.service import BatchService
from veobatch.settings import Settings
from veobatch.states import ErrorKind
from veobatch.store.tables import Attempt, Job, RelayAccount

GOOGLE_KEY = "AIza-test-google-key-0123456789"
MODELS = (
    '{ "veo3.1" = "veo-3.1-generate-preview", "veo3.1-components" = "veo-3.1-generate-preview" }'
)


def photo(folder: Path, name: str, color: tuple[int, int, int]) -> str:
    """A small real photo written to `folder/name`; its sha256."""
    path = folder / name
    Image.new("RGB", (160, 90), color).save(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def google_account(folder: Path, base: str, extra: str = "") -> Path:
    path = folder / "accounts.toml"
    path.write_text(
        f'[accounts.google]\ndialect = "gemini"\nbase = "{base}"\nkey_env = "GOOGLE_KEY"\n'
        f'models = {MODELS}\nprices = {{ "veo3.1" = 0.4, "veo3.1-components" = 0.4 }}\n{extra}',
        encoding="utf-8",
    )
    return path


def load_file(engine: Engine, jobs: Path, settings: Settings | None = None) -> LoadResult:
    with open_job_file(str(jobs)) as job_file:
        return BatchService(engine, settings or Settings()).load(job_file, "b")


def cli_with(database_url: str, *args: str, **env: str) -> Result:
    return CliRunner().invoke(
        cli, list(args), env={"VEO_DATABASE_URL": database_url, **env}, catch_exceptions=False
    )


def test_local_photos_run_to_videos_on_disk_through_a_gemini_account(tmp_path: Path) -> None:
    red = photo(tmp_path, "red.png", (200, 30, 30))
    blue = photo(tmp_path, "blue.jpg", (30, 30, 200))
    green = photo(tmp_path, "green.png", (30, 200, 30))
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(
        "- {id: first, prompt: a red frame, model: veo3.1, images: [red.png],"
        " aspect_ratio: '9:16', negative_prompt: blur}\n"
        "- {id: both, prompt: red to blue, model: veo3.1, images: [red.png, blue.jpg]}\n"
        "- {id: refs, prompt: three things, model: veo3.1-components,"
        " images: [red.png, blue.jpg, green.png]}\n"
        "- {id: blocked, prompt: 'something [mock:filtered]', model: veo3.1, images: [red.png]}\n",
        encoding="utf-8",
    )
    videos = tmp_path / "videos"
    with MockProvider(MockConfig(api_key=GOOGLE_KEY)) as google:
        accounts = google_account(tmp_path, google.url)
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
        env = {"VEO_ACCOUNTS": str(accounts), "GOOGLE_KEY": GOOGLE_KEY}
        ran = cli_with(url, "run", str(jobs), "--download", str(videos), **env)
        stats = google.stats()
        listed = cli_with(url, "jobs", "jobs", "--kind", "filtered", "--json", **env)
        again = cli_with(url, "rerun", "jobs", "--kind", "filtered", "--dry-run", **env)
    assert "Traceback" not in ran.output, ran.output
    assert "rerun jobs --kind filtered" in ran.output  # the run's hint for filtered rows
    assert [job["id"] for job in json.loads(listed.output)["jobs"]] == ["blocked"]
    assert again.exit_code == 0, again.output
    assert "1 row" in again.output
    roles = stats["gemini_images_by_prompt"]
    assert roles["a red frame"] == {"image": red, "lastFrame": None, "referenceImages": []}
    assert roles["red to blue"] == {"image": red, "lastFrame": blue, "referenceImages": []}
    assert roles["three things"] == {
        "image": None,
        "lastFrame": None,
        "referenceImages": [red, blue, green],
    }
    parameters = stats["gemini_parameters_by_prompt"]["a red frame"]
    assert parameters == {"sampleCount": 1, "aspectRatio": "9:16", "negativePrompt": "blur"}
    assert stats["video_requests_keyed"] == 3  # each download carried the key, to Google
    assert stats["video_refused_no_key"] == 0
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = {r.ref: r for r in conn.execute(sa.select(Job))}
    engine.dispose()
    for ref in ("first", "both", "refs"):
        assert rows[ref].status == "succeeded", rows[ref].error
        assert rows[ref].account == "google"
        assert Path(rows[ref].video_path).read_bytes()[4:8] == b"ftyp"
        assert rows[ref].task_id.startswith("models/veo-3.1-generate-preview/operations/")
    blocked = rows["blocked"]
    assert (blocked.status, blocked.error_kind) == ("failed", ErrorKind.FILTERED)
    assert "Google's safety filters" in blocked.error
    assert "You will not be charged" in blocked.error
    assert blocked.cost_micros == 0  # Google said so: its price went back
    assert rows["first"].cost_micros == 400_000
    assert GOOGLE_KEY not in (tmp_path / "db.sqlite").read_bytes().decode("latin-1")


def test_a_filtered_row_gets_its_one_new_try_with_enhance_prompt_recorded_as_such(
    engine: Engine, tmp_path: Path
) -> None:
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(
        "id,prompt,model,images\n"
        "fine,a cat,veo3.1,https://img.example/cat.jpg\n"
        "again,a dog [mock:filtered-charged],veo3.1,https://img.example/dog.jpg\n",
        encoding="utf-8",
    )
    load_file(engine, jobs)
    with (
        relays(MockConfig(task_seconds=0.05)) as mocks,
        accounts_at(
            mocks,
            ["relay"],
            relay={"on_filtered": "enhance_prompt", "spending": Spending({"veo3.1": 250_000})},
        ) as accounts,
    ):
        progress = run_through(engine, accounts, 1)
        made = mocks[0].stats()["created_by_prompt"]
    assert progress.counts == {"succeeded": 1, "failed": 1}
    assert made["a dog [mock:filtered-charged]"] == 2  # one new try, no more
    with engine.connect() as conn:
        row = conn.execute(sa.select(Job).where(Job.ref == "again")).one()
        lines = conn.execute(
            sa.select(Attempt.action, Attempt.error_kind, Attempt.error)
            .where(Attempt.job_id == row.id)
            .order_by(Attempt.id)
        ).all()
    assert (row.status, row.error_kind, row.enhance_prompt) == ("failed", "filtered", True)
    assert row.cost_micros == 500_000  # a relay bills a filtered video (filtered_charged)
    polls = [line for line in lines if line.action == "poll" and line.error_kind == "filtered"]
    assert len(polls) == 2
    assert "tried again once with enhance_prompt on" in polls[0].error
    assert "tried again" not in polls[1].error


@contextmanager
def google_accounts(
    mocks: Sequence[MockProvider], names: Sequence[str], **per_name: dict[str, Any]
) -> Iterator[list[Account]]:
    """`accounts_at` with Google's dialect and model names."""
    google = {"dialect": GEMINI, "models": {"veo3.1": "veo-3.1-generate-preview"}}
    fields = {name: {**google, **per_name.get(name, {})} for name in names}
    with accounts_at(mocks, names, **fields) as made:
        yield made


def test_a_mixed_batch_fails_over_from_google_out_of_quota_to_a_relay_each_row_once(
    engine: Engine, tmp_path: Path
) -> None:
    photo(tmp_path, "cat.png", (120, 120, 20))
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(
        "prompt,model,images\n" + "".join(f"row {n},veo3.1,cat.png\n" for n in range(30)),
        encoding="utf-8",
    )
    load_file(engine, jobs)
    with relays(MockConfig(api_key="g-key", balance=10), MockConfig(api_key="r-key")) as mocks:
        with ExitStack() as stack:
            (google,) = stack.enter_context(google_accounts(mocks[:1], ["google"]))
            (relay,) = stack.enter_context(accounts_at(mocks[1:], ["relay"]))
            progress = run_through(engine, [google, relay], 1)
        stats = [mock.stats() for mock in mocks]
    assert progress.counts == {"succeeded": 30}
    made: Counter[str] = Counter()
    for each in stats:
        made.update(each["created_by_prompt"])
    assert made == Counter({f"row {n}": 1 for n in range(30)})  # none twice, on either
    assert stats[0]["created"] == 10
    with engine.connect() as conn:
        by_account = Counter(conn.execute(sa.select(Job.account)).scalars())
        google_state = conn.execute(
            sa.select(RelayAccount).where(RelayAccount.name == "google")
        ).one()
    assert by_account == Counter({"google": 10, "relay": 20})
    assert google_state.state == "paused"
    assert google_state.reason.startswith("quota: RESOURCE_EXHAUSTED")


def test_a_key_google_refuses_pauses_its_account_and_sends_nothing_twice(
    engine: Engine, tmp_path: Path
) -> None:
    photo(tmp_path, "cat.png", (120, 120, 20))
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("prompt,model,images\na,veo3.1,cat.png\nb,veo3.1,cat.png\n", encoding="utf-8")
    load_file(engine, jobs)
    with relays(MockConfig(api_key="the-right-key")) as mocks:
        with google_accounts(mocks, ["google"], google={"key": "a-wrong-key"}) as accounts:
            progress = run_through(engine, accounts, 1)
        stats = mocks[0].stats()
    assert progress.state == "paused"
    assert stats["created"] == 0
    with engine.connect() as conn:
        state = conn.execute(sa.select(RelayAccount)).one()
    assert state.state == "paused"
    assert state.reason.startswith("auth: INVALID_ARGUMENT: API key not valid")


class _Recorder(BaseHTTPRequestHandler):
    """A video host of another origin: records the headers of each request, serves a video."""

    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        body = MP4_START + b"video"
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize("marker", ["video-at", "video-redirect"])
def test_the_key_goes_with_a_download_only_to_the_accounts_own_origin(
    engine: Engine, tmp_path: Path, marker: str
) -> None:
    photo(tmp_path, "cat.png", (120, 120, 20))
    _Recorder.seen = []
    with serving(HTTPServer(("127.0.0.1", 0), _Recorder)) as other:
        elsewhere = f"http://127.0.0.1:{other.server_address[1]}"
        jobs = tmp_path / "jobs.csv"
        jobs.write_text(
            f"prompt,model,images\n'a cat [mock:{marker}={elsewhere}]',veo3.1,cat.png\n",
            encoding="utf-8",
        )
        load_file(engine, jobs)
        with (
            relays(MockConfig(api_key="g-key")) as mocks,
            google_accounts(mocks, ["google"]) as accounts,
        ):
            keyed = {mocks[0].url: ("x-goog-api-key", "g-key")}
            places = Destinations.of([mocks[0].url], True, "VEO_DOWNLOAD_ALLOW_PRIVATE")
            with video_client(places, keyed) as videos:
                progress = run_through(
                    engine, accounts, 1, download_dir=tmp_path / "videos", videos=videos
                )
            stats = mocks[0].stats()
    assert progress.counts == {"succeeded": 1}, progress
    assert len(_Recorder.seen) == 1
    assert "x-goog-api-key" not in _Recorder.seen[0]  # another origin: no key
    assert all("g-key" not in value for value in _Recorder.seen[0].values())
    if marker == "video-redirect":
        assert stats["video_requests_keyed"] == 1  # the first hop, to Google's origin, had it
    with engine.connect() as conn:
        path = conn.execute(sa.select(Job.video_path)).scalar_one()
    assert Path(str(path)).read_bytes() == MP4_START + b"video"


# ------------------------------------------------------------------ checks at load and start


def test_a_row_google_cannot_take_is_refused_at_load_naming_the_field_and_the_account(
    tmp_path: Path, engine: Engine
) -> None:
    photo(tmp_path, "cat.png", (120, 120, 20))
    accounts = google_account(tmp_path, "https://generativelanguage.googleapis.com")
    settings = Settings(accounts=str(accounts))
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(
        "prompt,model,images,seed,enable_upsample\n"
        "a,veo3.1,cat.png,7,\n"
        "b,veo3.1,https://img.example/a.jpg,,\n"
        "c,veo3.1,cat.png,,true\n"
        "d,veo3.1,cat.png,,\n",
        encoding="utf-8",
    )
    env = {"GOOGLE_KEY": GOOGLE_KEY}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        result = load_file(engine, jobs, settings)
    problems = [(p.line, p.field, p.message) for p in result.report.problems]
    assert [(line, field) for line, field, _ in problems] == [
        (2, "seed"),
        (3, "images"),
        (4, "enable_upsample"),
    ]
    assert "account 'google' (gemini) cannot take it" in problems[0][2]
    assert "Vertex AI only" in problems[0][2]
    assert "takes image bytes, not links" in problems[1][2]
    assert result.rejected


def test_a_row_only_a_relay_can_take_goes_to_the_relay(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(
        '[accounts.google]\ndialect = "gemini"\nkey_env = "G"\n'
        'models = { "veo3.1" = "veo-3.1-generate-preview" }\n'
        '[accounts.relay]\nbase = "https://relay.example"\nkey_env = "R"\n',
        encoding="utf-8",
    )
    specs = accounts_of(Settings(accounts=str(path)), {"G": "g", "R": "r"})
    assert specs[0].base == "https://generativelanguage.googleapis.com"
    fitting = Fitting.of(specs)
    assert fitting is not None
    assert fitting.problem("veo3.1", ["https://img.example/a.jpg"], {"seed": 1}) is None


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ("", "models: a gemini account maps the job file's models to Google's"),
        ('models = { "veo3.1" = "Veo 3.1!" }', "is not a Google model name"),
        ('models = ["veo3.1"]', "'veo3.1' is not a Google model name"),
        ('models = { "veo3.1" = "veo-3.1-generate-preview" }\nimage_mode = "url"', "inline only"),
        ('dialect = "sora"', "dialect"),
        ('models = { "veo3.1" = "veo-3.1-generate-preview" }\non_filtered = "veo9"', "on_filtered"),
    ],
)
def test_a_gemini_account_without_what_it_needs_is_refused_naming_the_field(
    tmp_path: Path, fields: str, said: str
) -> None:
    path = tmp_path / "accounts.toml"
    dialect = "" if "dialect" in fields else 'dialect = "gemini"\n'
    path.write_text(f'[accounts.g]\n{dialect}key_env = "G"\n{fields}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=said) as refused:
        accounts_of(Settings(accounts=str(path)), {"G": "g"})
    assert "account 'g'" in str(refused.value)


def test_the_doctor_checks_a_gemini_accounts_key_without_spending(tmp_path: Path) -> None:
    with MockProvider(MockConfig(api_key=GOOGLE_KEY)) as google:
        accounts = google_account(tmp_path, google.url)
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
        good = cli_with(url, "doctor", VEO_ACCOUNTS=str(accounts), GOOGLE_KEY=GOOGLE_KEY)
        bad = cli_with(url, "doctor", VEO_ACCOUNTS=str(accounts), GOOGLE_KEY="not-the-key")
        created = google.stats()["created"]
    assert "google: key" in good.output, good.output
    assert "accepted" in good.output
    assert "refused (HTTP 400: INVALID_ARGUMENT: API key not valid" in bad.output, bad.output
    assert "not-the-key" not in bad.output
    assert created == 0
    assert json.dumps(GOOGLE_KEY) not in good.output
