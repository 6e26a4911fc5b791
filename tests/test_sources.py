"""Reading job files: CSV, YAML and JSON Lines, line numbers, and files that are not job files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.helpers import URL
from veobatch.errors import JobFileError
from veobatch.intake.raw_job import RawJob
from veobatch.intake.readers import open_job_file


def read(path: Path, format: str | None = None) -> list[RawJob]:
    with open_job_file(str(path), format) as job_file:
        return list(job_file.rows())


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def fails(path: Path, expected: str, line: int | None = None) -> JobFileError:
    with pytest.raises(JobFileError) as info:
        read(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)
    assert info.value.line == line
    return info.value


# ---------------------------------------------------------------------------------- CSV


def test_csv_with_bom_crlf_and_a_multiline_prompt_keeps_physical_lines(tmp_path: Path) -> None:
    text = (
        "\ufeffid,prompt,model,images,aspect_ratio,enhance_prompt,enable_upsample\r\n"
        f'a,"first line\r\nsecond, line",veo3.1,{URL}|{URL},16:9,TRUE,no\r\n'
        "\r\n"
        f"b,plain,veo3.1,{URL},,,\r\n"
    )
    rows = read(write(tmp_path, "jobs.csv", text))
    assert [r.line for r in rows] == [2, 5]
    first = rows[0]
    assert first.id == "a"
    assert first.prompt == "first line\r\nsecond, line"
    assert first.images == [URL, URL]
    assert first.enhance_prompt is True
    assert first.extras == {"enable_upsample": False}
    assert rows[1].aspect_ratio == ""  # empty means missing


def test_csv_cells_an_export_escaped_are_read_as_they_were_and_other_quotes_are_kept(
    tmp_path: Path,
) -> None:
    """An export puts `'` before a cell that a spreadsheet would take for a formula; a file
    loaded back loses it, in the first column as in the others. A quote anywhere else (an
    apostrophe, a quote before a letter) is text."""
    text = (
        "id,prompt,model,images,note\n"
        f"'=1+1,'@SUM(A1),veo3.1,{URL},'-5\n"
        f"it's,'quoted' isn't escaped,veo3.1,{URL},'x\n"
        f"'=2+2,only the id escaped,veo3.1,{URL},\n"
    )
    escaped, plain, first = read(write(tmp_path, "jobs.csv", text))
    assert (escaped.id, escaped.prompt, escaped.extras) == ("=1+1", "@SUM(A1)", {"note": "-5"})
    assert (plain.id, plain.prompt, plain.extras) == (
        "it's",
        "'quoted' isn't escaped",
        {"note": "'x"},
    )
    assert first.id == "=2+2"


def test_semicolon_and_tab_separated_csv_are_read_by_their_header(tmp_path: Path) -> None:
    european = f'"id";"prompt";"model";"images"\na;un renard, le soir;veo3.1;{URL}\n'
    rows = read(write(tmp_path, "jobs.csv", european))
    assert (rows[0].id, rows[0].prompt, rows[0].images) == ("a", "un renard, le soir", [URL])
    tabbed = f"prompt\tmodel\timages\na fox; at night\tveo3.1\t{URL}\n"
    assert read(write(tmp_path, "tabs.csv", tabbed))[0].prompt == "a fox; at night"


def test_utf16_with_a_bom_is_read_and_without_one_is_named(tmp_path: Path) -> None:
    text = f"prompt\tmodel\timages\n一只狐狸\tveo3.1\t{URL}\n"  # Excel's "Unicode Text"
    rows = read(write(tmp_path, "jobs.csv", text.encode("utf-16")))
    assert (rows[0].prompt, rows[0].line) == ("一只狐狸", 2)
    jsonl = f'{{"prompt": "a fox", "model": "veo3.1", "images": ["{URL}"]}}\n'
    assert read(write(tmp_path, "jobs.jsonl", jsonl.encode("utf-16")))[0].prompt == "a fox"
    fails(write(tmp_path, "bare.csv", text.encode("utf-16-le")), "is UTF-16 text without a byte")


def test_csv_row_with_the_wrong_number_of_values_is_a_row_problem(tmp_path: Path) -> None:
    text = f"prompt,model,images\nhi, there,veo3.1,{URL}\nshort,veo3.1\n"
    rows = read(write(tmp_path, "jobs.csv", text))
    assert rows[0].problems[0].message == (
        "the row has 4 values, the header 3: put a value that holds a comma in double quotes "
        '("a, b")'
    )
    assert rows[0].problems[0].line == 2
    assert rows[1].problems[0].message == "the row has 2 values, the header 3"


@pytest.mark.parametrize(
    ("content", "expected", "line"),
    [
        ("", "is empty", None),
        ("\ufeff\n\n", "is empty", None),
        ("id,prompt,model,images\n", "has a header but no rows", None),
        (
            "id,model,images\nx,veo3.1,u\n",
            "no 'prompt' column; the header has: id, model, images",
            1,
        ),
        (
            "prompt,modle,images\n",
            "column 'modle': unknown field 'modle'; did you mean 'model'?",
            1,
        ),
        ("prompt,model,images,prompt\n", "column 'prompt' appears twice", 1),
    ],
)
def test_broken_csv_files(tmp_path: Path, content: str, expected: str, line: int | None) -> None:
    fails(write(tmp_path, "jobs.csv", content), expected, line)


def test_csv_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    content = f"prompt,model,images\nok,veo3.1,{URL}\ncaf\xe9,veo3.1,{URL}\n".encode("latin-1")
    fails(write(tmp_path, "jobs.csv", content), "is not UTF-8 text (byte 0xe9 at column 4)", 3)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", "is a PNG image, not a csv job file"),
        (
            b"PK\x03\x04\x14\x00\x06\x00",
            "is a ZIP archive (an .xlsx workbook? save it as 'CSV UTF-8')",
        ),
        (b"prompt,model\x00\x00\x01\x02", "holds binary data (NUL bytes)"),
    ],
)
def test_binary_files_are_refused(tmp_path: Path, content: bytes, expected: str) -> None:
    fails(write(tmp_path, "jobs.csv", content), expected)


# ---------------------------------------------------------------------------------- YAML

YAML = f"""\
defaults:
  model: veo3.1
  aspect_ratio: "16:9"

jobs:
  - id: one
    prompt: first
    images: [{URL}]
  - id: two
    model: veo3-pro-frames
    prompt: second
    images:
      - {URL}
"""


def test_yaml_defaults_apply_and_lines_point_at_jobs_and_fields(tmp_path: Path) -> None:
    rows = read(write(tmp_path, "jobs.yaml", YAML))
    assert [r.line for r in rows] == [6, 9]
    assert rows[0][:7] == (6, "one", "first", "veo3.1", [URL], "16:9", None)
    assert rows[0].extras is None
    assert rows[1].model == "veo3-pro-frames"
    assert rows[1].line_of("model") == 10
    assert rows[0].line_of("model") == 2  # from defaults:
    assert rows[1].line_of("images") == 13


def test_yaml_anchors_and_merge_keys(tmp_path: Path) -> None:
    text = f"""\
base: &base
jobs:
  - &first
    prompt: first
    model: veo3.1
    images: [{URL}]
  - <<: *first
    prompt: second
"""
    # An unknown top-level key is an error even when it only holds an anchor...
    fails(write(tmp_path, "a.yaml", text), "unknown top-level key 'base'", 1)
    rows = read(write(tmp_path, "b.yaml", text.replace("base: &base\n", "")))
    assert [r.prompt for r in rows] == ["first", "second"]
    assert rows[1].model == "veo3.1"


def test_yaml_top_level_list_of_jobs(tmp_path: Path) -> None:
    rows = read(write(tmp_path, "jobs.yml", f"- prompt: hi\n  model: veo3.1\n  images: [{URL}]\n"))
    assert rows[0].prompt == "hi"


def test_yaml_job_that_is_not_a_mapping_is_a_row_problem(tmp_path: Path) -> None:
    rows = read(write(tmp_path, "jobs.yaml", "jobs:\n  - just text\n"))
    assert rows[0].problems[0].message == (
        "each job must be a mapping of fields, this one is the text 'just text'"
    )


@pytest.mark.parametrize(
    ("content", "expected", "line"),
    [
        ("jobs:\n  - prompt: [unclosed\n", "YAML syntax error", 3),
        ("jobs:\n  - prompt: a\n   model: b\n", "YAML syntax error", 3),
        ("", "is empty", None),
        ("hello\n", "expected `jobs:`", 1),
        ("job:\n  - prompt: a\n", "unknown top-level key 'job' (did you mean 'jobs'?)", 1),
        ("jobs: 3\n", "`jobs:` must be a list of jobs", 1),
        ("jobs: []\n", "`jobs:` is empty", None),
        ("defaults: {model: veo3.1}\n", "no `jobs:` list", None),
        ("jobs:\n  - {prompt: a}\ndefaults: {model: veo3.1}\n", "`defaults:` must come before", 3),
        ("defaults: [1]\njobs: []\n", "`defaults:` must be a mapping", 1),
        ("jobs:\n  - *nowhere\n", "unknown alias *nowhere", 2),
    ],
)
def test_broken_yaml_files(tmp_path: Path, content: str, expected: str, line: int | None) -> None:
    fails(write(tmp_path, "jobs.yaml", content), expected, line)


# ---------------------------------------------------------------------------------- JSONL


def test_jsonl_lines_and_blank_lines(tmp_path: Path) -> None:
    text = f'{{"prompt": "a", "model": "veo3.1", "images": ["{URL}"]}}\n\n{{"prompt": "b"}}\n'
    rows = read(write(tmp_path, "jobs.jsonl", text))
    assert [(r.line, r.prompt) for r in rows] == [(1, "a"), (3, "b")]


def test_jsonl_bad_line_after_good_ones_is_a_row_problem(tmp_path: Path) -> None:
    rows = read(write(tmp_path, "jobs.jsonl", '{"prompt": "a"}\n{"prompt": \n[1]\n'))
    assert rows[1].problems[0].message.startswith("not valid JSON: Expecting value at column")
    assert rows[2].problems[0].message == "each line must be a JSON object, this one is list"


def test_a_csv_named_jsonl_is_refused_at_once(tmp_path: Path) -> None:
    fails(write(tmp_path, "jobs.jsonl", "prompt,model\na,b\n"), "is not JSON Lines", 1)


# ---------------------------------------------------------------------------------- formats


def test_standard_input_needs_a_format() -> None:
    with pytest.raises(JobFileError, match="--format csv"):
        open_job_file("-").__enter__()
    stdin = io.BytesIO(f"prompt,model,images\nhi,veo3.1,{URL}\n".encode())
    with open_job_file("-", "csv", stdin=stdin) as job_file:
        assert job_file.name == "<stdin>"
        assert [r.prompt for r in job_file.rows()] == ["hi"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("jobs.txt", "cannot tell the format from '.txt'"),
        ("jobs.json", "use JSON Lines"),
        ("missing.csv", "no such file"),
    ],
)
def test_files_we_cannot_read(tmp_path: Path, name: str, expected: str) -> None:
    path = tmp_path / name
    if name != "missing.csv":
        path.write_text("x")
    with pytest.raises(JobFileError, match=expected):
        read(path)


def alias_chain(levels: int, indent: str) -> str:
    """YAML anchors each holding ten aliases of the one before: 10**levels values."""
    lines = [f"{indent}a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [
        f"{indent}a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, levels + 1)
    ]
    return "\n".join(lines) + "\n"


def test_nested_yaml_aliases_in_defaults_cannot_expand_without_bound(tmp_path: Path) -> None:
    text = "defaults:\n  model: veo3.1\n" + alias_chain(9, "  ")  # 10**9 from 500 bytes
    text += f"jobs:\n  - {{prompt: p, images: [{URL}]}}\n"
    fails(write(tmp_path, "bomb.yaml", text), "`defaults:` expands to more than 10,000 values", 1)


def test_a_job_that_expands_too_far_is_a_row_problem(tmp_path: Path) -> None:
    first = f"  - {{prompt: p, model: veo3.1, images: [{URL}], plan: {{{alias_chain(2, '')}}}}}"
    first = first.replace("\n", ", ").rstrip(", ") + "\n"
    later = (
        f"  - {{prompt: q, model: veo3.1, images: [{URL}], plan: [{', '.join(['*a2'] * 20)}]}}\n"
    )
    rows = read(write(tmp_path, "jobs.yaml", "jobs:\n" + first + later))
    assert not rows[0].problems  # 111 values: fine
    assert "expands to more than 10,000 values" in rows[1].problems[0].message  # 20 x 1,111


def test_deep_nesting_is_named_not_a_crash(tmp_path: Path) -> None:
    deep_yaml = "jobs:\n  - prompt: " + "[" * 200 + "]" * 200 + "\n"
    fails(write(tmp_path, "deep.yaml", deep_yaml), "nested more than 64 levels deep", 2)
    deep_json = '{"prompt": "p", "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
    ok = f'{{"prompt": "p", "model": "veo3.1", "images": ["{URL}"]}}\n'
    rows = read(write(tmp_path, "deep.jsonl", ok + deep_json))
    assert rows[1].problems[0].message == "the JSON is nested too deep to be a job"
