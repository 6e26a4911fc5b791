"""`JobChecker.check_plain` checks a block of rows a column at a time: for any block it must
either hand it back (None, and nothing counted, warned or remembered) or give exactly what
`check` gives row by row, with the same counts, warnings and remembered ids afterwards."""

from __future__ import annotations

import random
from typing import Any

import pytest

from veobatch.catalog import DEFAULT_MODELS
from veobatch.intake.job_checker import JobChecker
from veobatch.intake.raw_job import RawJob

URL = "https://img.example.com/a.jpg"
CHINESE = "一只橘猫在窗台上晒太阳"
# Rows that pass, in the shapes the readers give them, then rows with something to say.
GOOD: list[dict[str, Any]] = [
    {"id": "a", "prompt": "A fox in the snow", "model": "veo3.1", "images": [URL]},
    {"prompt": "no id: the line is the id", "model": "veo3.1", "images": [URL]},
    {"id": "", "prompt": "an empty id", "model": "veo3.1", "images": [URL]},
    {"id": 42, "prompt": "a number id", "model": "veo3.1", "images": [URL]},
    {"prompt": "two\tlines\nand a\r\nbreak", "model": "veo3.1", "images": [URL, URL + "?2"]},
    {"prompt": "ratio", "model": "veo3.1", "images": [URL], "aspect_ratio": "9:16"},
    {"prompt": "empty ratio", "model": "veo3.1", "images": [URL], "aspect_ratio": ""},
    {"prompt": "flags", "model": "veo3.1", "images": [URL], "enhance_prompt": True},
    {"prompt": "flags", "model": "veo3.1", "images": [URL], "enhance_prompt": False},
    {"prompt": "flags", "model": "veo3.1", "images": [URL], "enhance_prompt": ""},
    {"prompt": "un café déjà vu", "model": "veo3.1", "images": [URL]},
    {"prompt": CHINESE, "model": "veo3.1", "images": [URL]},  # warned
    {"prompt": CHINESE, "model": "veo3.1", "images": [URL], "enhance_prompt": True},
    {"prompt": "pass-through", "model": "veo3.1", "images": [URL], "seed": 7, "note": "x"},
    {"prompt": "three", "model": "veo3.1-components", "images": [URL, URL + "?b", URL + "?c"]},
    {
        "prompt": "links",
        "model": "veo3.1",
        "images": ["https://例え.jp/图片[1].png", "http://h/x]"],
    },
    {"prompt": "link with a scheme in it", "model": "veo3.1", "images": [URL + "?u=https://x"]},
    {"prompt": "a data URI", "model": "veo3.1", "images": ["data:image/png;base64,iVBORw0K"]},
]
BAD: list[dict[str, Any]] = [
    {"prompt": "", "model": "veo3.1", "images": [URL]},
    {"prompt": "   ", "model": "veo3.1", "images": [URL]},
    {"prompt": 7, "model": "veo3.1", "images": [URL]},
    {"prompt": "a\x07bell", "model": "veo3.1", "images": [URL]},
    {"prompt": "a \ud800 surrogate", "model": "veo3.1", "images": [URL]},
    {"prompt": "x" * 4001, "model": "veo3.1", "images": [URL]},
    {"prompt": "model", "model": "veo9", "images": [URL]},
    {"prompt": "model", "model": None, "images": [URL]},
    {"prompt": "model", "model": ["veo3.1"], "images": [URL]},
    {"prompt": "images", "model": "veo3.1", "images": []},
    {"prompt": "images", "model": "veo3.1", "images": None},
    {"prompt": "images", "model": "veo3.1", "images": [URL, URL, URL, URL]},
    {"prompt": "images", "model": "veo3.1", "images": ["https:///no-host"]},
    {"prompt": "images", "model": "veo3.1", "images": ["https://a b/c"]},
    {"prompt": "images", "model": "veo3.1", "images": ['https://a/"q"']},
    {"prompt": "images", "model": "veo3.1", "images": ["https://a/\x7f"]},
    {"prompt": "images", "model": "veo3.1", "images": ["https://a/\u2028"]},
    {"prompt": "images", "model": "veo3.1", "images": ["ftp://a/b.jpg"]},
    {"prompt": "images", "model": "veo3.1", "images": [7]},
    {"prompt": "ratio", "model": "veo3.1", "images": [URL], "aspect_ratio": "4:3"},
    {"prompt": "ratio", "model": "veo3.1", "images": [URL], "aspect_ratio": ["9:16"]},
    {"prompt": "flag", "model": "veo3.1", "images": [URL], "enhance_prompt": "maybe"},
    {"prompt": "flag", "model": "veo3.1", "images": [URL], "enhance_prompt": 1},
    {"id": "x" * 201, "prompt": "long id", "model": "veo3.1", "images": [URL]},
    {"id": "spring\u202egnp.exe", "prompt": "invisible", "model": "veo3.1", "images": [URL]},
    {"id": "tab\tid", "prompt": "control", "model": "veo3.1", "images": [URL]},
    {"id": " ", "prompt": "blank id", "model": "veo3.1", "images": [URL]},
    {"id": True, "prompt": "bool id", "model": "veo3.1", "images": [URL]},
    {"id": "a", "prompt": "a taken id", "model": "veo3.1", "images": [URL]},
    {"prompt": "extra", "model": "veo3.1", "images": [URL], "enable_upsample": "yes"},
    {"prompt": "extra", "model": "veo3.1", "images": [URL], "bad name": 1},
]


def outcome(checker: JobChecker) -> tuple[Any, ...]:
    return (
        checker.model_counts,
        checker.image_counts,
        checker.warnings,
        checker.warning_count,
        checker.ignored_fields,
        checker._seen_refs,
        list(checker._ref_order),
        list(checker._ref_lines),
    )


def blocks(seed: int, count: int) -> list[list[RawJob]]:
    """`count` blocks of rows drawn from GOOD (mostly) and BAD, each with unique ids unless a
    bad row takes one, lines counting on from one block to the next."""
    chance = random.Random(seed)
    made, line = [], 2
    for _ in range(count):
        block = []
        for _ in range(chance.randint(1, 12)):
            values = dict(chance.choice(GOOD if chance.random() < 0.8 else BAD))
            if values.get("id") == "a" and values["prompt"] != "a taken id":
                values["id"] = f"a-{line}"
            elif values.get("id") == 42:
                values["id"] = 1000 * line  # a number, made text by the checks
            block.append(RawJob.from_mapping(line, values))
            line += 1
        made.append(block)
    return made


@pytest.mark.parametrize(
    "options",
    [{}, {"strict": True}, {"priced": ["veo3.1"]}, {"lines": False}, {"remember": False}],
    ids=["default", "strict", "priced", "no-lines", "ids-to-the-database"],
)
def test_a_block_checked_at_once_is_what_its_rows_checked_one_by_one_are(
    options: dict[str, Any],
) -> None:
    options = dict(options)
    remember = options.pop("remember", True)
    by_row, by_block = (
        JobChecker(DEFAULT_MODELS, 5, **options),
        JobChecker(DEFAULT_MODELS, 5, **options),
    )
    by_row.remember_ids = by_block.remember_ids = remember
    taken = 0
    for block in blocks(seed=28, count=400):
        expected = [by_row.check(raw) for raw in block]
        got = by_block.check_plain(block)
        if got is None:
            got_rows = [by_block.check(raw) for raw in block]
            assert got_rows == expected
        else:
            taken += 1
            assert all(not problems for _, problems in expected)
            assert got == [row for row, _ in expected]
        assert outcome(by_block) == outcome(by_row)
    assert taken > 40  # blocks of valid rows do go the column way
