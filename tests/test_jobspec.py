"""The row checks, as pure functions: every rule, with the message a user would read."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from veobatch.catalog import DEFAULT_MODELS
from veobatch.intake.field_rules import field_name_problem, image_problem
from veobatch.intake.job_checker import JobChecker
from veobatch.intake.raw_job import RawJob

GOOD: dict[str, Any] = {
    "id": "a1",
    "prompt": "A fox in the snow",
    "model": "veo3.1",
    "images": ["https://img.example.com/fox.jpg"],
}


def check(**fields: Any) -> list[str]:
    values = {**GOOD, **fields}
    values = {k: v for k, v in values.items() if v is not ...}
    _, problems = JobChecker(DEFAULT_MODELS).check(RawJob.from_mapping(7, values))
    return [f"{p.line}: {p.field}: {p.message}" for p in problems]


def test_a_good_row_becomes_a_pending_row() -> None:
    row, problems = JobChecker(DEFAULT_MODELS, batch_id=3).check(
        RawJob.from_mapping(7, {**GOOD, "aspect_ratio": "9:16", "enhance_prompt": True, "seed": 42})
    )
    assert not problems
    assert row is not None
    batch_id, ref, line, prompt, model, images, aspect, enhance, extra, status, error, kind = row
    assert (batch_id, ref, line, prompt, model) == (3, "a1", 7, "A fox in the snow", "veo3.1")
    assert json.loads(images) == ["https://img.example.com/fox.jpg"]
    assert (aspect, enhance, status, error, kind) == ("9:16", True, "pending", None, None)
    assert json.loads(extra) == {"seed": 42}


def test_without_an_id_the_line_is_the_reference() -> None:
    row, _ = JobChecker(DEFAULT_MODELS).check(RawJob.from_mapping(12, {**GOOD, "id": None}))
    assert row is not None
    assert row[1] == "12"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"prompt": ...}, "7: prompt: missing or empty"),
        ({"prompt": "   "}, "7: prompt: missing or empty"),
        ({"prompt": 42}, "7: prompt: must be text"),
        ({"prompt": "x" * 4001}, "7: prompt: is 4001 characters; the limit is 4000"),
        ({"model": ...}, "7: model: missing; one of: veo3-pro-frames"),
        ({"model": "veo3.2"}, "7: model: unknown model 'veo3.2'; did you mean 'veo3.1'?"),
        ({"images": ...}, "7: images: missing; give 1 to 3 images"),
        ({"images": []}, "7: images: missing"),
        ({"images": {"a": 1}}, "7: images: must be a list of images"),
        (
            {"model": "veo3-pro-frames", "images": ["https://a.io/1.jpg", "https://a.io/2.jpg"]},
            "7: images: veo3-pro-frames takes 1 image(s), got 2",
        ),
        (
            {"images": [f"https://a.io/{i}.jpg" for i in range(3)]},
            "7: images: veo3.1 takes 1 to 2 image(s), got 3",
        ),
        (
            {"images": ["frames/cat.png"]},
            "7: images: 'frames/cat.png' is a file path; jobs sent as data",
        ),
        ({"images": ["C:\\pics\\cat.png"]}, "is a file path"),
        ({"images": ["ftp://host/cat.png"]}, "ftp:// is not supported"),
        ({"images": ["https://a.io/my cat.png"]}, "is not a valid URL"),
        (
            {"images": ["https://a.io/1.jpg", "cat.png"]},
            "7: images: image 2: 'cat.png' is a file path",
        ),
        ({"images": ["data:text/plain,hello"]}, "a data: URI must look like data:image/png"),
        ({"aspect_ratio": "4:3"}, "7: aspect_ratio: must be one of 16:9, 9:16, got '4:3'"),
        ({"enhance_prompt": "maybe"}, "7: enhance_prompt: must be true or false, got 'maybe'"),
        ({"enhance_prompt": "true"}, "7: enhance_prompt: must be true or false, got 'true'"),
        ({"enable_upsample": 1}, "7: enable_upsample: must be true or false, got '1'"),
        ({"notify_hook": "not a url"}, "7: notify_hook: must be an http(s) URL"),
        ({"id": True}, "7: id: must be text or a number, got bool"),
        ({"id": "x" * 201}, "7: id: must be 1 to 200 characters"),
        ({"modle": "veo3.1"}, "7: modle: unknown field 'modle'; did you mean 'model'?"),
        ({"aspect-ratio": "16:9"}, "unknown field 'aspect-ratio'; did you mean 'aspect_ratio'?"),
        ({"image": "https://a.io/x.jpg"}, "unknown field 'image'; did you mean 'images'?"),
        ({"Prompt": "hi"}, "unknown field 'Prompt'; did you mean 'prompt'?"),
        ({"seed_plan": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {}}}}}}}}}}, "nested more"),
        ({"note": "x" * 20_000}, "7: note: is 20,000 bytes; a pass-through field holds at most"),
        ({"tags": ["y" * 100] * 200}, "a pass-through field holds at most 16,384"),
        ({"prompt": "a fox\x00"}, "7: prompt: holds a NUL character at character 6"),
        ({"prompt": "a \ud800 fox"}, "prompt: holds a lone surrogate (U+D800, not Unicode text)"),
        ({"prompt": "bell\x07"}, "prompt: holds a control character (U+0007) at character 5"),
        ({"id": "sku\x00"}, "7: id: holds a NUL character at character 4"),
        ({"id": "sku\n2"}, "7: id: holds a control character (U+000A)"),
        ({"note\x00": "x"}, "holds a NUL character at character 5"),
        ({"note": "a\x00b"}, "7: note: holds a NUL character at character 2"),
        ({"plan": {"k": "\udfff"}}, "7: plan: holds a lone surrogate (U+DFFF"),
        ({"images": ["https://a.io/x\ud800.jpg"]}, "images:"),
    ],
)
def test_each_rule_names_the_field_and_what_is_wrong(fields: dict[str, Any], expected: str) -> None:
    problems = check(**fields)
    assert any(expected in p for p in problems), problems


def test_every_problem_of_a_row_is_reported() -> None:
    problems = check(prompt="", model="nope", images=["cat.png"], aspect_ratio="1:1")
    assert [p.split(":")[1].strip() for p in problems] == [
        "prompt",
        "model",
        "images",
        "aspect_ratio",
    ]


def test_a_data_uri_over_20_mb_is_refused() -> None:
    payload = "A" * (28 * 1024 * 1024)  # 21 MB once decoded
    assert "the provider takes at most 20 MB" in (
        image_problem(f"data:image/png;base64,{payload}") or ""
    )
    assert image_problem("data:image/png;base64,iVBORw0KGgo=") is None


def test_unknown_fields_that_look_like_nothing_we_know_pass_through() -> None:
    assert field_name_problem("enable_upsample") is None
    assert field_name_problem("seed") is None
    assert field_name_problem("negative_prompt") is None
    assert field_name_problem("status") is None  # an export's result column: ignored


def test_duplicate_ids_are_found_across_the_file() -> None:
    checker = JobChecker(DEFAULT_MODELS)
    assert not checker.check(RawJob.from_mapping(2, GOOD))[1]
    row, problems = checker.check(RawJob.from_mapping(9, GOOD))
    assert row is None  # it cannot be stored under an id that is taken
    assert [p.message for p in problems] == ["duplicate id 'a1': line 2 has the same id"]
    jobs = JobChecker(DEFAULT_MODELS, lines=False)  # a list of jobs: by their places
    assert not jobs.check(RawJob.from_mapping(0, {**GOOD, "id": "x"}))[1]
    assert not jobs.check(RawJob.from_mapping(1, GOOD))[1]
    _, problems = jobs.check(RawJob.from_mapping(2, {**GOOD, "id": "x"}))
    assert [p.message for p in problems] == ["duplicate id 'x': job 0 has the same id"]


def test_field_lines_point_at_the_field_in_yaml() -> None:
    raw = RawJob.from_mapping(10, {**GOOD, "model": "nope"}, {"model": 12, "prompt": 11})
    _, problems = JobChecker(DEFAULT_MODELS).check(raw)
    assert [(p.line, p.field) for p in problems] == [(12, "model")]


def test_non_ascii_urls_and_prompts_are_kept_as_they_are() -> None:
    row, problems = JobChecker(DEFAULT_MODELS).check(
        RawJob.from_mapping(
            1, {**GOOD, "prompt": "清晨的茶园", "images": ["https://例子.cn/茶.jpg"]}
        )
    )
    assert not problems
    assert row is not None
    assert row[3] == "清晨的茶园"
    assert json.loads(row[5]) == ["https://例子.cn/茶.jpg"]


def test_long_links_that_end_badly_are_refused_at_once() -> None:
    """The link rule could split a link in as many ways as it has letters, and tried each way
    before it refused one: three links of 200 letters and a space took 18 s, of 2,000 letters
    longer than anyone waits (a file, or a body sent to the HTTP API, held a worker). Run in a
    child, to kill it at the deadline if it hangs."""
    script = (
        "from veobatch.catalog import DEFAULT_MODELS\n"
        "from veobatch.intake.job_checker import JobChecker\n"
        "from veobatch.intake.raw_job import RawJob\n"
        "link = 'https://' + 'a' * 2000\n"
        "row = {'prompt': 'p', 'model': 'veo3.1-components', 'images': [link, link, link + ' ']}\n"
        "_, problems = JobChecker(DEFAULT_MODELS).check(RawJob.from_mapping(2, row))\n"
        "print(problems[0].field, problems[0].message)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.startswith("images ")
    assert "not a valid URL" in done.stdout
