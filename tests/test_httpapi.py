"""The HTTP API served for real (uvicorn on a local port) over SQLite and PostgreSQL: auth,
idempotent intake, reading, changes, limits, and its own OpenAPI schema as the contract."""

from __future__ import annotations

import csv
import http.client
import io
import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from sqlalchemy.engine import Engine

from tests.helpers import TOKEN, URL, Served, job, wait_until
from veobatch.httpapi import create_app
from veobatch.service import BatchService
from veobatch.settings import Settings
from veobatch.store import database


@pytest.fixture
def served(engine: Engine, database_url: str) -> Iterator[Served]:
    with Served(engine, database_url) as running:
        yield running


@pytest.fixture
def api(served: Served) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=served.url, headers=headers, timeout=10) as client:
        yield client


def test_every_route_but_the_schema_needs_a_token(served: Served) -> None:
    schema = httpx.get(f"{served.url}/openapi.json")
    assert schema.status_code == 200
    assert "Body_" not in schema.text  # FastAPI's name for a form body: ours are named
    upload = schema.json()["paths"]["/batches/{name}/file"]["post"]["requestBody"]
    form = upload["content"]["multipart/form-data"]["schema"]["$ref"]
    assert form == "#/components/schemas/UploadJobFile"
    assert schema.json()["components"]["schemas"]["UploadJobFile"]["title"] == "UploadJobFile"
    assert httpx.get(f"{served.url}/batches").status_code == 401
    wrong = httpx.get(f"{served.url}/batches", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "a valid bearer token is required", "problems": []}


def test_create_then_resend_creates_nothing_twice(api: httpx.Client) -> None:
    body = {"name": "cms", "jobs": [job("sku-1"), job("sku-2")]}
    first = api.post("/batches", json=body)
    assert first.status_code == 201
    assert first.json() == {
        "batch": "cms",
        "created": True,
        "added": 2,
        "already_there": 0,
        "refs": ["sku-1", "sku-2"],
    }
    again = api.post("/batches", json=body)
    assert again.status_code == 200
    assert (again.json()["added"], again.json()["already_there"]) == (0, 2)
    keyed = {"name": "cms", "jobs": [job(), job()], "idempotency_key": "req-77"}
    assert api.post("/batches", json=keyed).json()["added"] == 2
    assert api.post("/batches", json=keyed).json()["added"] == 0  # the same request again
    assert api.get("/batches/cms").json()["counts"] == {"pending": 4}


def test_invalid_jobs_are_422_naming_the_job_and_field(api: httpx.Client) -> None:
    answer = api.post("/batches", json={"name": "cms", "jobs": [job("a"), job("b", model="x")]})
    assert answer.status_code == 422
    assert answer.json()["problems"][0]["index"] == 1
    assert answer.json()["problems"][0]["field"] == "model"
    assert api.get("/batches/cms").status_code == 404  # nothing stored
    shape = api.post("/batches", json={"name": "cms", "jobs": "not a list"})
    assert shape.status_code == 422
    assert shape.json()["problems"][0]["field"] == "jobs"
    assert "Traceback" not in shape.text
    several = api.post("/batches", json={"name": 5, "jobs": [{"id": "1"}], "webhook_url": 7})
    assert several.status_code == 422
    found = {(p["index"], p["field"]) for p in several.json()["problems"]}
    assert found == {
        (None, "name"),
        (None, "webhook_url"),
        (0, "prompt"),
        (0, "model"),
        (0, "images"),
    }


@pytest.mark.parametrize("url", ["http://xn--/", "http://[::1", "http://127.0.0.1:6379/"])
def test_a_bad_webhook_is_422_and_stores_nothing(api: httpx.Client, url: str) -> None:
    answer = api.post("/batches", json={"name": "cms", "jobs": [job("a")], "webhook_url": url})
    assert answer.status_code == 422
    assert "webhook_url" in answer.text
    assert api.get("/batches/cms").status_code == 404


def test_a_batch_named_in_any_script_exports(api: httpx.Client) -> None:
    assert api.post("/batches", json={"name": "春季 商品", "jobs": [job("a")]}).status_code == 201
    exported = api.get("/batches/春季 商品/export")
    assert exported.status_code == 200
    encoded = "%E6%98%A5%E5%AD%A3%20%E5%95%86%E5%93%81.csv"
    assert exported.headers["content-disposition"] == (
        f"attachment; filename=\"_____.csv\"; filename*=UTF-8''{encoded}"
    )
    for bad in ("a/b", "..", "nul\u0000", "bell\u0007"):
        refused = api.post("/batches", json={"name": bad, "jobs": [job("a")]})
        assert refused.status_code == 422, bad


def test_reading_a_batch_its_rows_and_one_rows_story(api: httpx.Client) -> None:
    jobs = [job(f"sku-{n}") for n in range(5)]
    jobs[1] |= {"aspect_ratio": "9:16", "enhance_prompt": False}
    api.post("/batches", json={"name": "cms", "jobs": jobs})
    assert [b["name"] for b in api.get("/batches").json()] == ["cms"]
    page = api.get("/batches/cms/jobs", params={"limit": 2, "offset": 2}).json()
    assert [j["id"] for j in page["jobs"]] == ["sku-2", "sku-3"]
    assert page["total"] == 5
    assert api.get("/batches/cms/jobs", params={"status": "failed"}).json()["total"] == 0
    assert api.get("/batches/cms/jobs", params={"status": "lost"}).status_code == 422
    story = api.get("/batches/cms/jobs/sku-1").json()
    assert (story["id"], story["status"], story["history"]) == ("sku-1", "pending", [])
    assert (story["aspect_ratio"], story["enhance_prompt"]) == ("9:16", False)
    assert api.get("/batches/cms/jobs/nope").status_code == 404
    unknown = api.get("/batches/no-such/jobs")
    assert unknown.status_code == 404
    assert "veo-batch" not in unknown.text  # the CLI's hint is the CLI's
    exported = api.get("/batches/cms/export", params={"format": "csv"})
    assert exported.headers["content-type"].startswith("text/csv")
    assert [r["id"] for r in csv.DictReader(io.StringIO(exported.text))] == [
        f"sku-{n}" for n in range(5)
    ]
    lines = api.get("/batches/cms/export", params={"format": "jsonl"}).text.splitlines()
    assert json.loads(lines[0])["status"] == "pending"


def test_pause_resume_rerun_cancel(api: httpx.Client) -> None:
    api.post("/batches", json={"name": "cms", "jobs": [job("a"), job("b")]})
    assert api.post("/batches/cms/pause").json()["state"] == "paused"
    assert api.post("/batches/cms/pause").status_code == 409
    assert api.post("/batches/cms/resume").json()["state"] == "active"
    rerun = api.post("/batches/cms/rerun", json={"statuses": ["failed"], "kinds": ["remote"]})
    assert rerun.json() == {
        "matched": 0,
        "paid_for": [],
        "sent_again": 0,
        "polled_again": 0,
        "adds": None,
        "unpriced": [],
    }
    cancelled = api.post("/batches/cms/cancel").json()
    assert (cancelled["state"], cancelled["rows"]) == ("cancelled", 2)


def test_a_job_file_can_be_uploaded(api: httpx.Client) -> None:
    text = f"external_id,prompt,model,images\nsku-1,a,veo3.1,{URL}\nsku-2,b,veo3,{URL}\n"
    bad = api.post("/batches/shop/file", files={"file": ("shop.csv", text.encode())})
    assert bad.status_code == 422
    problem = bad.json()["problems"][0]
    assert (problem["line"], problem["index"]) == (3, None)  # a file's row: by its line
    assert bad.json()["problems"][0]["field"] == "model"
    good = text.replace("veo3,", "veo3.1,")
    answer = api.post("/batches/shop/file", files={"file": ("shop.csv", good.encode())})
    assert (answer.status_code, answer.json()["added"]) == (201, 2)
    binary = api.post("/batches/shop/file", files={"file": ("shop.csv", b"\x89PNG\r\n\x1a\n")})
    assert binary.status_code == 422


def test_bodies_over_the_limit_are_refused(api: httpx.Client) -> None:
    big = {"name": "cms", "jobs": [job(f"k{n}", prompt="x" * 1000) for n in range(100)]}
    assert api.post("/batches", json=big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"name": "cms", "jobs": ['
        for n in range(100):
            yield json.dumps(job(f"k{n}", prompt="x" * 1000)).encode() + b","
        yield b"{}]}"

    assert (
        api.post(
            "/batches", content=chunks(), headers={"Content-Type": "application/json"}
        ).status_code
        == 413
    )
    assert api.get("/batches").json() == []


# ---------------------------------------------------------------------------------- the schema
# Property-based: schemathesis reads the served /openapi.json and sends generated requests to
# every operation; each answer must be a documented status with a body matching its schema,
# and never a 5xx. On SQLite only (the routes are the same code on both databases).


# The schema as the app serves it (building the app touches no database).
# An invalid body can also be too big (a generated list of thousands of ids): 413 refuses it
# as surely as 422 does, so it counts as rejected.
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
SCHEMA = schemathesis.openapi.from_dict(
    create_app(
        BatchService(sa.create_engine("sqlite://"), Settings.from_values({"api_tokens": TOKEN}))
    ).openapi(),
    config=schemathesis.Config.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": [*REJECTED, "5xx"]}}}
    ),
)


@pytest.fixture(scope="module")
def schema_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('schema') / 'schema.db'}"
    engine = database.open_database(url)
    with Served(engine, url, max_body=1024 * 1024) as running:
        seed = httpx.post(
            f"{running.url}/batches",
            headers={"Authorization": f"Bearer {TOKEN}"},
            json={"name": "seed", "jobs": [job("sku-1")]},
        )
        assert seed.status_code == 201
        yield running.url
    engine.dispose()


@SCHEMA.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_to_its_own_schema(case: Any, schema_server: str) -> None:
    excluded = []
    if case.method == "POST" and case.path in ("/batches", "/batches/{name}/file"):
        # A schema cannot say everything a valid job is (images per model, a known model,
        # URLs) or what a job file holds: such requests are schema-valid and rightly refused
        # (422, naming the job and field). Every other check still applies to them.
        excluded.append(schemathesis.checks.positive_data_acceptance)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    case.call_and_validate(base_url=schema_server, headers=headers, excluded_checks=excluded)


def raw_request(url: str, head: str, timeout: float = 5.0) -> bytes:
    """Send only `head` (request line and headers) and read the whole answer."""
    address = httpx.URL(url)
    with socket.create_connection((address.host, address.port), timeout=timeout) as conn:
        conn.sendall(head.encode())
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < int(
            answer.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0] or b"0"
        ):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_the_token_is_checked_before_the_body_is_read(served: Served) -> None:
    head = (
        "POST /batches HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 60000\r\n\r\n"  # and no body: a server that reads it would wait
    )
    answer = raw_request(served.url, head)
    assert answer.startswith(b"HTTP/1.1 401")
    assert b"a valid bearer token is required" in answer


def test_requests_past_the_cap_are_429(engine: Engine, database_url: str) -> None:
    settings = Settings.from_values({"database_url": database_url, "api_tokens": TOKEN})
    with Served(
        engine, database_url, app=create_app(BatchService(engine, settings), max_in_flight=1)
    ) as up:
        address = httpx.URL(up.url)
        with socket.create_connection((address.host, address.port), timeout=5) as held:
            held.sendall(  # one request in flight, its body still coming
                f"POST /batches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".encode()
            )
            auth = {"Authorization": f"Bearer {TOKEN}"}

            def status() -> int:
                return httpx.get(f"{up.url}/batches", headers=auth).status_code

            wait_until(lambda: status() == 429, 10, "a 429 while the first is in flight")
            busy = httpx.get(f"{up.url}/batches", headers=auth)
            assert (busy.status_code, busy.headers["Retry-After"]) == (429, "1")
        wait_until(lambda: status() == 200, 10, "the slot to be free again")


def test_without_tokens_only_loopback_callers_are_served(engine: Engine, database_url: str) -> None:
    open_app = create_app(
        BatchService(engine, Settings.from_values({"database_url": database_url}))
    )
    with Served(engine, database_url, app=open_app) as up:
        assert httpx.get(f"{up.url}/batches").status_code == 200
        rebound = httpx.get(f"{up.url}/batches", headers={"Host": "evil.example"})
        assert rebound.status_code == 403
        host = httpx.URL(up.url).netloc.decode()
        forged = httpx.post(f"{up.url}/batches/x/cancel", headers={"Origin": "http://evil.example"})
        assert forged.status_code == 403
        same = httpx.get(f"{up.url}/batches", headers={"Origin": f"http://{host}"})
        assert same.status_code == 200


def test_a_rerun_that_would_pay_again_needs_a_confirmation(
    api: httpx.Client, engine: Engine
) -> None:
    api.post("/batches", json={"name": "cms", "jobs": [job("a"), job("b")]})
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE jobs SET status = 'succeeded' WHERE ref = 'a'")
    body = {"statuses": ["succeeded"]}
    refused = api.post("/batches/cms/rerun", json=body)
    assert refused.status_code == 409
    assert "confirm_paid" in refused.json()["detail"]
    counted = api.post("/batches/cms/rerun", json={**body, "dry_run": True}).json()
    assert (counted["matched"], counted["paid_for"]) == (1, ["succeeded"])
    sent = api.post("/batches/cms/rerun", json={**body, "confirm_paid": True}).json()
    assert sent["sent_again"] == 1


def test_the_docs_page_works_offline(served: Served) -> None:
    page = httpx.get(f"{served.url}/docs")
    assert page.status_code == 200
    assert "/docs/assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()  # nothing from the internet
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        got = httpx.get(f"{served.url}/docs/assets/{asset}")  # public, as the page is
        assert got.status_code == 200
        assert len(got.content) > 100_000
    assert httpx.get(f"{served.url}/batches").status_code == 401  # the rest still needs one
    host, port = served.url.removeprefix("http://").split(":")
    raw = http.client.HTTPConnection(host, int(port), timeout=10)  # sends the path as it is
    raw.request("GET", "/docs/assets/../../settings.py")
    answer = raw.getresponse()
    assert answer.status == 404  # out of the assets' folder: nothing
    assert b"Settings" not in answer.read()
    raw.close()


def test_health_readiness_and_metrics_for_orchestrators(
    served: Served, api: httpx.Client, engine: Engine, database_url: str
) -> None:
    """/healthz and /readyz need no token (a probe has none); /metrics needs one, and shows
    the rows of each batch at work, read from the database, in Prometheus' text format."""
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    assert httpx.get(f"{served.url}/healthz").json() == {"ok": True}
    ready = httpx.get(f"{served.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["ok"] is True
    assert httpx.get(f"{served.url}/metrics").status_code == 401
    api.post("/batches", json={"name": "live", "jobs": [job("a"), job("b")]}).raise_for_status()
    rows = {
        sample.labels["status"]: sample.value
        for family in text_string_to_metric_families(api.get("/metrics").text)
        for sample in family.samples
        if sample.name == "veobatch_rows" and sample.labels["batch"] == "live"
    }
    assert rows["pending"] == 2
    assert rows["succeeded"] == 0
    with engine.begin() as conn:  # a schema behind the code: not ready
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0005'"))
    try:
        behind = httpx.get(f"{served.url}/readyz")
        assert behind.status_code == 503
        assert "not at the newest schema" in behind.json()["database"]
    finally:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE alembic_version SET version_num = :head"),
                {"head": database.head_revision()},
            )


def test_accounts_are_seen_paused_and_resumed_over_http(engine: Engine, database_url: str) -> None:
    with (
        Served(engine, database_url, api_base="https://relay.example") as served,
        httpx.Client(
            base_url=served.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        ) as api,
    ):
        (default,) = api.get("/accounts").json()
        assert (default["name"], default["host"], default["state"]) == (
            "default",
            "relay.example",
            "active",
        )
        paused = api.post("/accounts/default/pause", json={"reason": "maintenance"}).json()
        assert (paused["state"], paused["reason"]) == ("paused", "maintenance")
        assert api.post("/accounts/default/resume").json()["state"] == "active"
        missing = api.post("/accounts/other/pause")
        assert missing.status_code == 404
        assert "veo-batch" not in missing.text  # (the CLI's hint is the CLI's)
