"""The mock provider speaking Google's Gemini API, driven by the real client in the `gemini`
dialect: each picture arrives in its role, every error comes in Google's shape and is sorted
as the client sorts Google's, operations end as Google's end (a video, an error, a safety
filter), and a video is served only with the key. The relay's routes stay as they were."""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.conftest import MOCK_KEY as KEY
from tests.helpers import wait_until
from veobatch.errors import ProviderError
from veobatch.provider.client import ProviderClient
from veobatch.provider.dialect import Ask, Request, TaskState
from veobatch.provider.gemini import GEMINI
from veobatch.provider.mock import MP4_START, MockProvider
from veobatch.provider.relay import SUBMIT_PATH, job_payload
from veobatch.settings import Secret
from veobatch.states import ErrorKind

MODEL = "veo-3.1-generate-preview"


def picture(color: tuple[int, int, int], format: str = "PNG") -> str:
    """A small real picture as a `data:` URI."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 36), color).save(buffer, format=format)
    kind = "png" if format == "PNG" else "jpeg"
    return f"data:image/{kind};base64,{base64.b64encode(buffer.getvalue()).decode()}"


RED = picture((200, 30, 30))
BLUE = picture((30, 30, 200), "JPEG")
GREEN = picture((30, 200, 30))


def sha(uri: str) -> str:
    return hashlib.sha256(base64.b64decode(uri.partition(",")[2])).hexdigest()


def ask(
    prompt: str, images: Sequence[str] = (), model: str = "veo3.1", api_model: str = MODEL
) -> Request:
    extra = {"negative_prompt": "blur"}
    return GEMINI.request(Ask(prompt, model, api_model, list(images), "9:16", None, extra))


@pytest.fixture
def client(mock: MockProvider) -> Iterator[ProviderClient]:
    with ProviderClient(mock.url, Secret(KEY), dialect=GEMINI, read_timeout=5.0) as client:
        yield client


def finished(client: ProviderClient, name: str) -> TaskState:
    """The operation's state once it is done (within a deadline)."""
    seen: list[TaskState] = []

    def done() -> bool:
        seen.append(client.query(name))
        return seen[-1].finished

    wait_until(done, 5, f"operation {name} to finish")
    return seen[-1]


def refused(client: ProviderClient, request: Request) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        client.submit(request)
    return info.value


def post(mock: MockProvider, body: Any, key: str = KEY) -> httpx.Response:
    path = f"/v1beta/models/{MODEL}:predictLongRunning"
    return httpx.post(mock.url + path, json=body, headers={"x-goog-api-key": key})


# ------------------------------------------------------------------ images in their roles


def test_a_first_frame_runs_to_a_video_on_the_apis_own_host(
    mock: MockProvider, client: ProviderClient
) -> None:
    name = client.submit(ask("a red frame", [RED]))
    assert name.startswith(f"models/{MODEL}/operations/")
    state = finished(client, name)
    assert state.succeeded, state
    assert state.video_url is not None
    assert state.video_url.startswith(f"{mock.url}/v1beta/files/")
    assert state.video_url.endswith(":download?alt=media")
    stats = mock.stats()
    assert stats["gemini_images_by_prompt"]["a red frame"] == {
        "image": sha(RED),
        "lastFrame": None,
        "referenceImages": [],
    }
    assert stats["gemini_parameters_by_prompt"]["a red frame"] == {
        "sampleCount": 1,
        "aspectRatio": "9:16",
        "negativePrompt": "blur",
    }
    assert stats["images_by_prompt"]["a red frame"] == [sha(RED)]
    assert stats["created"] == 1
    assert mock.state.tasks[name].portrait


def test_an_operation_is_running_until_its_time_has_passed(
    mock: MockProvider, client: ProviderClient
) -> None:
    mock.state.config.task_seconds = 60
    name = client.submit(ask("slow", [RED]))
    state = client.query(name)
    assert (state.status, state.finished) == ("RUNNING", False)
    assert mock.stats()["polls"] == 1


def test_a_first_and_a_last_frame_arrive_each_in_its_role(
    mock: MockProvider, client: ProviderClient
) -> None:
    name = client.submit(ask("red to blue", [RED, BLUE]))
    assert finished(client, name).succeeded
    stats = mock.stats()
    assert stats["gemini_images_by_prompt"]["red to blue"] == {
        "image": sha(RED),
        "lastFrame": sha(BLUE),
        "referenceImages": [],
    }
    assert stats["images_by_prompt"]["red to blue"] == [sha(RED), sha(BLUE)]


def test_three_references_arrive_as_reference_images(
    mock: MockProvider, client: ProviderClient
) -> None:
    name = client.submit(ask("three things", [RED, BLUE, GREEN], model="veo3.1-components"))
    assert finished(client, name).succeeded
    stats = mock.stats()
    assert stats["gemini_images_by_prompt"]["three things"] == {
        "image": None,
        "lastFrame": None,
        "referenceImages": [sha(RED), sha(BLUE), sha(GREEN)],
    }
    assert stats["images_by_prompt"]["three things"] == [sha(RED), sha(BLUE), sha(GREEN)]


# ------------------------------------------------------------------ errors as sorted


def test_a_wrong_key_is_the_accounts_error(mock: MockProvider) -> None:
    with ProviderClient(mock.url, Secret("not-the-key"), dialect=GEMINI) as wrong:
        error = refused(wrong, ask("a cat", [RED]))
    assert (error.kind, error.http_status) == (ErrorKind.AUTH, 400)
    assert error.message.startswith("INVALID_ARGUMENT: API key not valid")
    assert mock.stats()["created"] == 0


def test_a_spent_balance_is_the_days_quota(mock: MockProvider, client: ProviderClient) -> None:
    mock.state.config.balance = 1
    client.submit(ask("one", [RED]))
    error = refused(client, ask("two", [RED]))
    assert (error.kind, error.http_status) == (ErrorKind.QUOTA, 429)
    assert "per day" in error.message
    assert mock.stats()["created"] == 1


def test_the_request_limit_is_a_rate_limit_with_googles_retry_delay(
    mock: MockProvider, client: ProviderClient
) -> None:
    mock.state.config.limit = 1
    client.submit(ask("one", [RED]))
    error = refused(client, ask("two", [RED]))
    assert (error.kind, error.http_status) == (ErrorKind.RATE_LIMITED, 429)
    assert error.retry_after == 1.0
    assert mock.stats()["rejected_429"] == 1


def test_an_unknown_model_is_the_rows_error(client: ProviderClient) -> None:
    error = refused(client, ask("a cat", [RED], api_model="veo-9-dreams"))
    assert (error.kind, error.http_status) == (ErrorKind.INVALID, 404)
    assert "models/veo-9-dreams is not found for API version v1beta" in error.message


def test_a_service_that_is_down_answers_googles_json(
    mock: MockProvider, client: ProviderClient
) -> None:
    mock.state.config.down = 502
    error = refused(client, ask("a cat", [RED]))
    assert (error.kind, error.http_status) == (ErrorKind.SERVER, 502)
    assert error.message.startswith("UNAVAILABLE: ")


def test_a_status_marker_is_answered_in_googles_shape(client: ProviderClient) -> None:
    error = refused(client, ask("a cat [mock:status=503]", [RED]))
    assert (error.kind, error.http_status) == (ErrorKind.SERVER, 503)
    assert error.message.startswith("UNAVAILABLE: ")


@pytest.mark.parametrize(
    ("instance", "parameters", "said"),
    [
        ({"prompt": "a", "seed": 1}, {}, "Unknown name \"seed\" at 'instances[0]'"),
        ({"prompt": "a"}, {"fps": 24}, "Unknown name \"fps\" at 'parameters'"),
        ({"prompt": ""}, {}, "a prompt is required"),
        ({"prompt": "a"}, {"aspectRatio": "1:1"}, "aspectRatio"),
        ({"prompt": "a"}, {"sampleCount": 5}, "sampleCount"),
        ({"prompt": "a"}, {"enhancePrompt": "yes"}, "enhancePrompt"),
        (
            {"prompt": "a", "image": {"bytesBase64Encoded": "aGVsbG8=", "mimeType": "image/png"}},
            {},
            "unable to process input image",
        ),
        ({"prompt": "a", "lastFrame": "IMAGE"}, {}, "lastFrame needs image"),
        ({"prompt": "a", "image": "IMAGE", "referenceImages": "REFS"}, {}, "cannot be used"),
        ({"prompt": "a", "referenceImages": "FOUR"}, {}, "1 to 3 reference images"),
    ],
)
def test_a_body_google_would_refuse_is_400_invalid_argument(
    mock: MockProvider, instance: dict[str, Any], parameters: dict[str, Any], said: str
) -> None:
    image = {"bytesBase64Encoded": RED.partition(",")[2], "mimeType": "image/png"}
    reference = {"image": image, "referenceType": "asset"}
    values = {"IMAGE": image, "REFS": [reference], "FOUR": [reference] * 4}
    instance = {k: values.get(v, v) if isinstance(v, str) else v for k, v in instance.items()}
    answer = post(mock, {"instances": [instance], "parameters": parameters})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert said in error["message"]
    assert mock.stats()["created"] == 0


def test_a_wrong_key_names_its_reason_in_the_details(mock: MockProvider) -> None:
    answer = post(mock, {"instances": [{"prompt": "a"}]}, key="nope")
    assert answer.status_code == 400
    (detail,) = answer.json()["error"]["details"]
    assert detail["reason"] == "API_KEY_INVALID"


# ------------------------------------------------------------------ how operations end


def test_a_filtered_video_says_google_does_not_charge_it(client: ProviderClient) -> None:
    state = finished(client, client.submit(ask("something [mock:filtered]", [RED])))
    assert state.status == "FAILURE"
    assert state.filtered is not None
    assert "You will not be charged" in state.filtered
    assert state.charged is False
    assert state.video_url is None


def test_a_filtered_video_whose_reason_says_nothing_of_charging(client: ProviderClient) -> None:
    state = finished(client, client.submit(ask("something [mock:filtered-charged]", [RED])))
    assert state.status == "FAILURE"
    assert state.filtered is not None
    assert "blocked by safety filters" in state.filtered
    assert state.charged is None


def test_a_failed_operation_ends_with_googles_error(client: ProviderClient) -> None:
    state = finished(client, client.submit(ask("a cat [mock:fail]", [RED])))
    assert state.status == "FAILURE"
    assert state.fail_reason == "INTERNAL: Video generation failed due to an internal error."
    assert state.filtered is None


def test_an_unknown_operation_is_not_found(client: ProviderClient) -> None:
    with pytest.raises(ProviderError) as info:
        client.query(f"models/{MODEL}/operations/000000000000")
    assert (info.value.kind, info.value.http_status) == (ErrorKind.INVALID, 404)


# ------------------------------------------------------------------ videos and the key


def test_a_video_is_served_only_with_the_key(mock: MockProvider, client: ProviderClient) -> None:
    state = finished(client, client.submit(ask("a cat", [RED])))
    assert state.video_url is not None
    keyed = httpx.get(state.video_url, headers={"x-goog-api-key": KEY})
    assert keyed.status_code == 200
    assert keyed.content.startswith(MP4_START)
    by_query = httpx.get(f"{state.video_url}&key={KEY}", headers={"Range": "bytes=10-"})
    assert by_query.status_code == 206
    assert by_query.content == keyed.content[10:]
    bare = httpx.get(state.video_url)
    wrong = httpx.get(state.video_url, headers={"x-goog-api-key": "nope"})
    assert (bare.status_code, wrong.status_code) == (403, 403)
    assert bare.json()["error"]["status"] == "PERMISSION_DENIED"
    stats = mock.stats()
    assert (stats["video_requests_keyed"], stats["video_refused_no_key"]) == (2, 2)


def test_a_video_may_be_at_another_origin_or_redirected_there(
    mock: MockProvider, client: ProviderClient
) -> None:
    other = "http://127.0.0.1:9"
    at = finished(client, client.submit(ask(f"a cat [mock:video-at={other}]", [RED])))
    assert at.video_url is not None
    assert at.video_url.startswith(f"{other}/v1beta/files/")
    moved = finished(client, client.submit(ask(f"a dog [mock:video-redirect={other}]", [RED])))
    assert moved.video_url is not None
    answer = httpx.get(moved.video_url + f"&key={KEY}")
    assert answer.status_code == 302
    path = moved.video_url[len(mock.url) :]
    assert answer.headers["location"] == other + path  # without the key of the query
    assert mock.stats()["video_requests_keyed"] == 1


# ------------------------------------------------------------------ one server, both dialects


def test_the_doctors_probe_takes_the_key_in_the_header_or_the_query(mock: MockProvider) -> None:
    probe = mock.url + GEMINI.probe_path
    with_header = httpx.get(probe, headers={"x-goog-api-key": KEY})
    assert with_header.json() == {"models": [{"name": f"models/{MODEL}"}]}
    assert httpx.get(f"{probe}&key={KEY}").status_code == 200
    assert httpx.get(probe).status_code == 400
    assert mock.stats()["created"] == 0


def test_the_relays_routes_answer_beside_googles(
    mock: MockProvider, client: ProviderClient
) -> None:
    name = client.submit(ask("from google", [RED]))
    with ProviderClient(mock.url, Secret(KEY)) as relay:
        task_id = relay.submit(Request(SUBMIT_PATH, job_payload("from a relay", "veo3.1", [RED])))
        assert relay.query(task_id).succeeded
    assert finished(client, name).succeeded
    assert mock.stats()["created_by_prompt"] == {"from google": 1, "from a relay": 1}
    assert httpx.get(mock.url + "/v1beta/nothing").json()["error"]["status"] == "NOT_FOUND"
