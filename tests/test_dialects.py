"""The two dialects, pure: a row to each one's request, each one's answers read (a filtered
video found in both), every error sorted into the engine's kinds, a row each may refuse, and
an operation name that could lead anywhere else refused."""

from __future__ import annotations

import json

import pytest

from veobatch.errors import ImageError
from veobatch.provider.dialect import Ask, TaskState
from veobatch.provider.gemini import GEMINI
from veobatch.provider.relay import RELAY, SUBMIT_PATH
from veobatch.states import ErrorKind

RED = "data:image/png;base64,UkVE"
BLUE = "data:image/jpeg;base64,QkxVRQ=="
NAME = "models/veo-3.1-generate-preview/operations/abc123"


def ask(model: str = "veo3.1", images: list[str] | None = None, **fields: object) -> Ask:
    return Ask(
        "a fox",
        model,
        "veo-3.1-generate-preview",
        images if images is not None else [RED],
        fields.get("aspect_ratio"),  # type: ignore[arg-type]
        fields.get("enhance_prompt"),  # type: ignore[arg-type]
        fields.get("extra"),  # type: ignore[arg-type]
    )


# ------------------------------------------------------------------------------- requests


def test_the_relays_request_is_the_row_as_it_was_with_the_accounts_model_name() -> None:
    path, body = RELAY.request(ask(aspect_ratio="9:16", extra={"enable_upsample": True}))
    assert path == SUBMIT_PATH
    assert body == {
        "enable_upsample": True,
        "prompt": "a fox",
        "model": "veo-3.1-generate-preview",
        "images": [RED],
        "aspect_ratio": "9:16",
    }


def test_googles_request_has_the_first_frame_the_last_frame_and_the_parameters() -> None:
    extra = {"negative_prompt": "blur", "duration_seconds": 8, "person_generation": "allow_adult"}
    path, body = GEMINI.request(
        ask(images=[RED, BLUE], aspect_ratio="9:16", enhance_prompt=True, extra=extra)
    )
    assert path == "/v1beta/models/veo-3.1-generate-preview:predictLongRunning"
    assert body == {
        "instances": [
            {
                "prompt": "a fox",
                "image": {"bytesBase64Encoded": "UkVE", "mimeType": "image/png"},
                "lastFrame": {"bytesBase64Encoded": "QkxVRQ==", "mimeType": "image/jpeg"},
            }
        ],
        "parameters": {
            "sampleCount": 1,
            "aspectRatio": "9:16",
            "enhancePrompt": True,
            "negativePrompt": "blur",
            "durationSeconds": 8,
            "personGeneration": "allow_adult",
        },
    }


def test_a_components_model_sends_reference_images_to_google() -> None:
    _, body = GEMINI.request(ask("veo3.1-components", [RED, BLUE, RED]))
    instance = body["instances"][0]
    assert set(instance) == {"prompt", "referenceImages"}
    assert [ref["referenceType"] for ref in instance["referenceImages"]] == ["asset"] * 3
    assert instance["referenceImages"][1]["image"]["mimeType"] == "image/jpeg"


def test_a_link_cannot_go_to_google_and_a_row_that_holds_one_is_refused() -> None:
    with pytest.raises(ImageError, match="takes image bytes"):
        GEMINI.request(ask(images=["https://img.example/a.jpg"]))
    refused = GEMINI.refusal("veo3.1", ["https://img.example/a.jpg"], None)
    assert refused is not None
    assert refused[0] == "images"
    assert GEMINI.refusal("veo3.1", [{"path": "/a.png"}], {"negative_prompt": "x"}) is None
    assert GEMINI.refusal("veo3.1", [], {"seed": 3}) == (
        "seed",
        "Google's Gemini API does not take it (Vertex AI only)",
    )
    field, why = GEMINI.refusal("veo3.1", [], {"notify_hook": "https://x"}) or ("", "")
    assert field == "notify_hook"
    assert "negative_prompt" in why
    assert RELAY.refusal("veo3.1", ["https://img.example/a.jpg"], {"seed": 3}) is None


# -------------------------------------------------------------------------------- answers


def test_an_operation_name_is_the_task_id_and_nothing_else_becomes_a_path() -> None:
    assert GEMINI.task_id({"name": NAME}) == (NAME, None)
    assert GEMINI.poll_path(NAME) == f"/v1beta/{NAME}"
    for bad in (
        "models/x/operations/../../files/secret",
        "models/x/operations/a?key=1",
        "https://elsewhere/models/x/operations/a",
        "models/x/operations/a/../b",
        "tasks/1",
    ):
        assert GEMINI.task_id({"name": bad})[0] is None
        with pytest.raises(ValueError, match="not an operation"):
            GEMINI.poll_path(bad)
    assert GEMINI.task_id([NAME]) == (None, "no operation name models/MODEL/operations/ID")


def test_googles_operation_running_done_failed_and_filtered() -> None:
    running = GEMINI.task_state(NAME, {"name": NAME, "metadata": {}})
    assert isinstance(running, TaskState)
    assert not running.finished
    uri = "https://generativelanguage.googleapis.com/v1beta/files/f1:download?alt=media"
    done = GEMINI.task_state(
        NAME,
        {
            "name": NAME,
            "done": True,
            "response": {"generateVideoResponse": {"generatedSamples": [{"video": {"uri": uri}}]}},
        },
    )
    assert isinstance(done, TaskState)
    assert (done.status, done.video_url, done.filtered) == ("SUCCESS", uri, None)
    failed = GEMINI.task_state(
        NAME, {"done": True, "error": {"code": 13, "message": "boom", "status": "INTERNAL"}}
    )
    assert isinstance(failed, TaskState)
    assert (failed.status, failed.fail_reason, failed.filtered) == (
        "FAILURE",
        "INTERNAL: boom",
        None,
    )
    reason = "Your prompt may violate our policies. You will not be charged for blocked videos."
    blocked = GEMINI.task_state(
        NAME,
        {
            "done": True,
            "response": {
                "generateVideoResponse": {
                    "raiMediaFilteredCount": 1,
                    "raiMediaFilteredReasons": [reason],
                }
            },
        },
    )
    assert isinstance(blocked, TaskState)
    assert blocked.filtered == f"Google's safety filters: {reason}"
    assert blocked.charged is False
    assert GEMINI.task_state(NAME, {"done": "yes"}) == "done is neither true nor false"
    assert GEMINI.task_state(NAME, {"done": True}) == (
        "done without a response.generateVideoResponse or an error"
    )


@pytest.mark.parametrize(
    ("answer", "filtered"),
    [
        ({"status": "SUCCESS", "data": {"output": ""}}, "the provider reported SUCCESS without"),
        ({"status": "SUCCESS", "data": None, "fail_reason": "blocked"}, "blocked"),
        ({"status": "FAILURE", "fail_reason": "视频生成失败：内容审核未通过"}, "视频生成失败"),
        ({"status": "FAILURE", "fail_reason": "Content policy violation"}, "Content policy"),
        ({"status": "FAILURE", "fail_reason": "视频生成失败：上游服务异常"}, None),
        ({"status": "SUCCESS", "data": {"output": "https://cdn.example/v.mp4"}}, None),
    ],
)
def test_a_relay_says_filtered_in_two_ways(answer: dict[str, object], filtered: str | None) -> None:
    state = RELAY.task_state("t", answer)
    assert isinstance(state, TaskState)
    if filtered is None:
        assert state.filtered is None
    else:
        assert state.filtered is not None
        assert state.filtered.startswith(filtered)


# --------------------------------------------------------------------------------- errors


def google_error(code: int, status: str, message: str, details: object = None) -> bytes:
    error: dict[str, object] = {"code": code, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return json.dumps({"error": error}).encode()


@pytest.mark.parametrize(
    ("status", "body", "kind", "retry_after"),
    [
        (
            429,
            google_error(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for metric: generate_requests per minute",
                [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}],
            ),
            ErrorKind.RATE_LIMITED,
            7.0,
        ),
        (
            429,
            google_error(429, "RESOURCE_EXHAUSTED", "You exceeded your quota: requests per day"),
            ErrorKind.QUOTA,
            None,
        ),
        (
            400,
            google_error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                [{"reason": "API_KEY_INVALID"}],
            ),
            ErrorKind.AUTH,
            None,
        ),
        (400, google_error(400, "INVALID_ARGUMENT", "bad aspect"), ErrorKind.INVALID, None),
        (403, google_error(403, "PERMISSION_DENIED", "no"), ErrorKind.AUTH, None),
        (404, google_error(404, "NOT_FOUND", "models/x is not found"), ErrorKind.INVALID, None),
        (503, google_error(503, "UNAVAILABLE", "overloaded"), ErrorKind.SERVER, None),
        (502, b"<html><title>502 Bad Gateway</title></html>", ErrorKind.SERVER, None),
    ],
)
def test_googles_errors_are_sorted_into_the_engines_kinds(
    status: int, body: bytes, kind: ErrorKind, retry_after: float | None
) -> None:
    error = GEMINI.classify(status, body, {})
    assert (error.kind, error.retry_after) == (kind, retry_after)
    assert error.message


def test_googles_key_travels_in_its_own_header_and_a_relays_as_a_bearer() -> None:
    assert GEMINI.headers("k") == {"x-goog-api-key": "k"}
    assert GEMINI.download_header("k") == ("x-goog-api-key", "k")
    assert RELAY.headers("k") == {"Authorization": "Bearer k"}
    assert RELAY.download_header("k") is None
