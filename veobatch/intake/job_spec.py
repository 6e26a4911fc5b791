"""What a job is, and the checks every row passes before anything is stored.

Pure logic: a reader (`intake.readers`) turns each row into a `RawJob`, and `JobChecker.check`
turns that into either a `StoredRow`, ready for the database, or a list of `Problem`s naming
the line and field. Loading a million rows spends most of its time here, so `check` first tries
a fast path that only answers "is this row fine?"; any row it does not accept goes through
`_diagnose`, which applies the same rules one by one and says what is wrong. The module is
longer than most (about 600 lines) on purpose: the fast path and the diagnosis are two
spellings of one set of rules, and a change to one must be read beside the other.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
import math
import re
import unicodedata
from array import array
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from itertools import chain, compress, repeat
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from veobatch.catalog import ASPECT_RATIOS, ImageRange
from veobatch.errors import ImageError, Problem
from veobatch.images.files import ImageInspector
from veobatch.images.formats import shape_warning
from veobatch.images.references import is_local
from veobatch.lifecycle.spend_rules import unpriced
from veobatch.store.export_columns import OUTPUT_COLUMNS

if TYPE_CHECKING:
    from veobatch.accounts.fitting import Fitting

MAX_PROMPT_CHARS: Final = 4000
MAX_REF_CHARS: Final = 200
MODEL_COLUMN_CHARS: Final = 64  # the jobs table's `model` (store.tables): a catalogue name fits
MAX_IMAGE_BYTES: Final = 20 * 1024 * 1024  # Google's limit for one input image
MAX_WARNINGS: Final = 50  # different warnings listed in full; the rest are counted
LINES_SHOWN: Final = 5  # lines a warning that many rows share names; the rest are counted
MAX_DUPLICATES_NAMED: Final = 100  # duplicated ids whose first line a problem names

# The fields of a job that veo-batch itself understands.
JOB_FIELDS: Final = ("id", "prompt", "model", "images", "aspect_ratio", "enhance_prompt")
# Another name for `id`, as systems that queue jobs call it: the job's key in its batch. The
# same id sent again to the same batch never makes a second row.
ID_ALIAS: Final = "external_id"
_SURROGATES: Final = re.compile(r"[\ud800-\udfff]")
MAX_EXTRA_DEPTH: Final = 8  # nesting of a pass-through field's value
MAX_EXTRA_BYTES: Final = 16 * 1024  # its size as JSON
# Provider fields seen in relay clients: passed through, but checked when we know their type.
KNOWN_EXTRAS: Final = ("enable_upsample", "notify_hook")
BOOL_FIELDS: Final = frozenset({"enhance_prompt", "enable_upsample"})
OUTPUT_FIELDS: Final = frozenset(OUTPUT_COLUMNS)

StoredRow = tuple[Any, ...]

_KNOWN_NAMES: Final = (*JOB_FIELDS, ID_ALIAS, *KNOWN_EXTRAS)
_JOB_FIELD_SET: Final = frozenset(JOB_FIELDS)
_URL_PREFIXES: Final = ("https://", "http://")
# Usable image references contain no whitespace, quotes, backslashes or control characters,
# which also lets the fast path write them into JSON without an escaping pass.
_URL_CHARS: Final = r'[^\s"\\\x00-\x1f\x7f\ud800-\udfff]'
# A host's first character, then any of _URL_CHARS. (Not `[host]+` then `_URL_CHARS*`: the
# two overlap, and a regex that can split a link in as many ways as it has characters tried
# each way on a link that failed: three links of 200 letters and a space took 18 s.)
_URL: Final = rf"https?://[^\s/?#\"\\\x00-\x1f\x7f\ud800-\udfff]{_URL_CHARS}*"
# Characters no stored text may hold: NUL and the other control characters (a prompt may
# have tabs and line breaks), and lone surrogates (text that is not Unicode, as JSON's
# "\ud800" makes); the databases refuse them, or store what the provider cannot read.
# A name (a batch's, a row's id) shows in files, pages and hints: no control character, and no
# bidi control or zero-width character (`spring\u202egnp.exe` would read as `springexe.png`).
_INVISIBLE: Final = r"\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
BAD_NAME_CHARS: Final = re.compile(rf"[\x00-\x1f\x7f-\x9f\ud800-\udfff{_INVISIBLE}]")
BAD_PROMPT_CHARS: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_HTTP_URL: Final = re.compile(_URL)
_DATA_URI: Final = re.compile(rf"data:image/[\w.+-]+(?:;[\w.+=-]+)*,{_URL_CHARS}*")
# http(s) URLs joined by newlines (which no URL contains): a whole `images` list in one call.
_PLAIN_IMAGES: Final = re.compile(rf"{_URL}(?:\n{_URL})*")
_ASPECTS_OR_EMPTY: Final = frozenset({*ASPECT_RATIOS, ""})
_PENDING: Final = ("pending", None, None)  # status, error, error_kind of a row to submit
_NO_PROBLEMS: Final[Sequence[Problem]] = ()
_PRINTABLE_ASCII: Final = bytes(range(0x20, 0x7F))
# Every byte of UTF-8 but the characters of BAD_PROMPT_CHARS that it can hold.
_PROMPT_BYTES: Final = _PRINTABLE_ASCII + b"\t\n\r" + bytes(range(0x80, 0x100))
_NO_HOST: Final = re.compile(r"://(?:[/?#\s]|$)")  # a link's scheme with no host after it
_ASPECTS_OR_NONE: Final = frozenset({*_ASPECTS_OR_EMPTY, None})
_ENHANCE_TYPES: Final = frozenset({type(None), bool, str})  # (text: only "", see check_plain)


class RawJob(NamedTuple):
    """One row as a reader found it. None or "" (how CSV says it) means the field is absent.

    `field_lines` (YAML) gives the line of each field; `problems` are what the reader itself
    found (a line that is not JSON, a CSV row with too many values).
    """

    line: int
    id: Any = None
    prompt: Any = None
    model: Any = None
    images: Any = None
    aspect_ratio: Any = None
    enhance_prompt: Any = None
    extras: dict[str, Any] | None = None  # every other field, passed to the provider
    field_lines: Mapping[str, int] | None = None
    problems: tuple[Problem, ...] = ()

    @classmethod
    def from_mapping(
        cls, line: int, values: Mapping[str, Any], field_lines: Mapping[str, int] | None = None
    ) -> RawJob:
        images = values.get("images")
        extras = {k: v for k, v in values.items() if k not in _JOB_FIELD_SET and k != ID_ALIAS}
        ref, alias = values.get("id"), values.get(ID_ALIAS)
        problems: tuple[Problem, ...] = ()
        if ref in (None, ""):
            ref = alias
        elif alias not in (None, "") and alias != ref:
            problems = (Problem(line, ID_ALIAS, f"differs from id {ref!r}; give one of them"),)
        return cls(
            line,
            ref,
            values.get("prompt"),
            values.get("model"),
            [images] if type(images) is str and images else images,
            values.get("aspect_ratio"),
            values.get("enhance_prompt"),
            extras or None,
            field_lines,
            problems,
        )

    @classmethod
    def broken(cls, line: int, message: str) -> RawJob:
        """A row the reader could not make sense of."""
        return cls(line, problems=(Problem(line, None, message),))

    def line_of(self, name: str) -> int:
        if self.field_lines is None:
            return self.line
        return self.field_lines.get(name, self.line)


def field_name_problem(name: str) -> str | None:
    """A field name that looks like a misspelling of one we know is an error, not an extra."""
    if name in _KNOWN_NAMES or name in OUTPUT_FIELDS:
        return None
    normalized = name.strip().lower().replace("-", "_").replace(" ", "_")
    close = difflib.get_close_matches(normalized, _KNOWN_NAMES, n=1, cutoff=0.75)
    if normalized in _KNOWN_NAMES or close:
        suggestion = normalized if normalized in _KNOWN_NAMES else close[0]
        return f"unknown field {name!r}; did you mean {suggestion!r}?"
    return None


def image_problem(value: object) -> str | None:
    """What is wrong with one entry of `images` that is not a local file, or None if it is a
    usable link or data: URI."""
    if not isinstance(value, str):
        return f"must be a URL string, got {type(value).__name__}"
    if _HTTP_URL.fullmatch(value):
        return None
    if not value.strip():
        return "is empty (a stray '|' between URLs?)"
    if value.startswith(_URL_PREFIXES):
        return f"{_short(value)} is not a valid URL (no host, or a space or quote: write %20)"
    if value.startswith("data:"):
        if not _DATA_URI.fullmatch(value):
            return "a data: URI must look like data:image/png;base64,...."
        header, _, payload = value.partition(",")
        size = len(payload) * 3 // 4 if header.endswith(";base64") else len(payload)
        if size > MAX_IMAGE_BYTES:
            return f"the embedded image is {size / 2**20:.1f} MB; the provider takes at most 20 MB"
        return None
    scheme = value.partition("://")[0]
    return (
        f"{_short(value)}: {scheme}:// is not supported; give an http(s) URL, a data: URI or "
        "the path of an image file"
    )


def local_refused(value: str) -> str:
    """Why a path is refused where the jobs came over HTTP, Celery or Python's `add`: the
    caller's paths name files of the server, which it must never be made to read."""
    return (
        f"{_short(value)} is a file path; jobs sent as data (HTTP, Celery, Client.add) give "
        "http(s) URLs or data: URIs: load the file with `veo-batch load`, or upload a .zip of "
        "the job file and its images"
    )


def _is_plain_image(value: object) -> bool:
    """A usable image reference that can go into JSON without escaping (the fast path)."""
    return type(value) is str and (
        _HTTP_URL.fullmatch(value) is not None
        or (value.startswith("data:") and image_problem(value) is None)
    )


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _short(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")


def _bool_problem(value: object) -> str:
    return f"must be true or false, got {_short(str(value))}"


def describe(problems: Sequence[Problem]) -> str:
    """One line for the `error` column of a row stored invalid with --skip-invalid."""
    return "; ".join(f"line {p.line}: {p.field}: {p.message}" for p in problems)


class JobChecker:
    """Checks the rows of one load and turns them into `StoredRow`s of batch `batch_id`.

    It remembers the ids seen, so duplicates are found across the whole file, and counts rows
    per model and per number of images for the summary.
    """

    def __init__(
        self,
        models: Mapping[str, ImageRange],
        batch_id: int = 0,
        images: ImageInspector | None = None,
        *,
        priced: Collection[str] | None = None,
        strict: bool = False,
        fitting: Fitting | None = None,
        lines: bool = True,
    ) -> None:
        self.models = models
        # False: the rows came as data (an API call, a Celery message), not from a file; a
        # row's place names it in problems, but is not a line to store and show.
        self.lines = lines
        self.fitting = fitting  # when given, a row no account that serves its model takes
        self.batch_id = batch_id
        self.images = images  # None: a path in `images` is refused (jobs that came as data)
        self.priced = priced  # when given (a budget is set), a model without a price is refused
        self.strict = strict  # a prompt not in Latin script (without enhance_prompt) is refused
        # The first MAX_WARNINGS different things worth saying, each once with the lines it
        # applies to (a photo reused by 300 rows is one warning, not 300), and the rest counted.
        self._warned: dict[tuple[str, str], list[int]] = {}
        self._rows_warned: dict[tuple[str, str], int] = {}
        self._unlisted = 0
        self.model_counts: dict[str, int] = {}
        self.image_counts: dict[int, int] = {}
        self.ignored_fields: set[str] = set()
        # Whether ids are remembered to find duplicates. A load into a new batch can leave
        # that to the database (its unique index on the batch's ids refuses a second row
        # with an id, and the load is then made again with ids remembered): no memory per row.
        self.remember_ids = True
        # The 64-bit hashes of the refs seen so far, not the refs: a million ids then take
        # ~70 MB instead of ~100 MB. Two different ids with the same hash (odds of about 1 in
        # 30 million for a million rows) would be reported as a duplicate: a false alarm that
        # stores nothing, never a row stored twice.
        self._seen_refs: set[int] = set()
        # The same hashes in file order, with each row's line (16 bytes a row), to name the
        # line where a duplicated id first appeared; looked up for the first few duplicates.
        self._ref_order = array("q")
        self._ref_lines = array("q")
        self._duplicates_named = 0
        self._name_problems: dict[str, str | None] = {}

    def check(self, raw: RawJob) -> tuple[StoredRow | None, Sequence[Problem]]:
        """The row to store (status pending) and its problems.

        With problems, the row is only stored with --skip-invalid (as failed); a row whose id is
        taken by an earlier row comes back as None: it cannot be stored under that id at all.
        """
        _, ref, prompt, model, images, aspect, enhance, extras, _, problems = raw
        if ref is None or ref == "":
            ref = str(raw.line)
        elif type(ref) is int:
            ref = str(ref)
        span = self.models.get(model) if type(model) is str else None
        if (
            problems
            or span is None
            or type(ref) is not str
            or len(ref) > MAX_REF_CHARS
            or ref.isspace()
            or type(prompt) is not str
            or not 0 < len(prompt) <= MAX_PROMPT_CHARS
            or prompt.isspace()
            or BAD_PROMPT_CHARS.search(prompt)
            or BAD_NAME_CHARS.search(ref)
            or type(images) is not list
            or not span.low <= len(images) <= span.high
            or not (aspect is None or (type(aspect) is str and aspect in _ASPECTS_OR_EMPTY))
            or not (enhance is None or enhance is True or enhance is False or enhance == "")
        ):
            return self._diagnose(raw)
        if self.priced is not None and model not in self.priced:
            return self._diagnose(raw)
        try:
            joined = "\n".join(images)
        except TypeError:  # an entry that is not text
            return self._diagnose(raw)
        if _PLAIN_IMAGES.fullmatch(joined) is None and not all(map(_is_plain_image, images)):
            return self._diagnose(raw)
        extra = None
        if extras is not None and (extra := self._plain_extras(extras)) is False:
            return self._diagnose(raw)
        if self.fitting is not None and self.fitting.problem(model, images, extras) is not None:
            return self._diagnose(raw)
        remember = self.remember_ids
        if remember and hash(ref) in self._seen_refs:
            return self._diagnose(raw)  # says which id is taken
        if not prompt.isascii() and enhance is not True and self._check_language(raw, prompt):
            return self._diagnose(raw)  # --strict: says which script
        if remember:
            self._remember(ref, raw.line)
        self._count(model, len(images))
        return (
            self.batch_id,
            ref,
            raw.line if self.lines else None,
            prompt,
            model,
            '["' + '", "'.join(images) + '"]',
            aspect or None,
            None if enhance == "" else enhance,
            extra,
            *_PENDING,
        ), _NO_PROBLEMS

    def check_plain(self, raws: Sequence[RawJob]) -> list[StoredRow] | None:
        """`check` of many rows at once, a column at a time: the rows to store when every one
        of them passes `check` without a problem, else None (nothing counted, warned or
        remembered: the caller then checks them one by one). The same rules as `check`, each
        run over a whole column by a C loop (`map`, `set`, one pass over the joined texts):
        2.9 us a row where `check` took 4.1 on a million rows."""
        if not raws:
            return []
        lines, refs, prompts, models, images, aspects, enhances, extras, _, problems = zip(
            *raws, strict=True
        )
        ids = _refs(refs, lines)
        try:
            spans = {model: self.models.get(model) for model in set(models)}
            shapes = Counter(zip(models, map(len, images), strict=True))  # (model, images)
            if (
                set(problems) != {()}
                or (self.priced is not None and not spans.keys() <= set(self.priced))
                or not all(_fits(spans[model], count) for model, count in shapes)
                or not _plain_columns(ids, prompts, models, images, aspects, enhances)
            ):
                return None
        except TypeError:  # a value that is not text, or cannot be hashed
            return None
        stored_extras = extras
        if extras.count(None) != len(extras):
            stored_extras = tuple(None if e is None else self._plain_extras(e) for e in extras)
            if False in stored_extras:
                return None
        if self.fitting is not None and any(map(self.fitting.problem, models, images, extras)):
            return None
        hashes = list(map(hash, ids))
        if self.remember_ids and (
            len(set(hashes)) < len(hashes) or not self._seen_refs.isdisjoint(hashes)
        ):
            return None
        scripts = [
            (i, language)
            for i in compress(range(len(prompts)), map(_not_ascii, prompts))
            if enhances[i] is not True and (language := script_problem(prompts[i])) is not None
        ]
        if scripts and self.strict:
            return None
        # Every rule holds: what `check` does for each row.
        for i, language in scripts:
            self._warn(raws[i].line_of("prompt"), "prompt", language)
        if self.remember_ids:
            self._remember_hashes(hashes, lines)
        for (model, count), rows in shapes.items():
            self.model_counts[model] = self.model_counts.get(model, 0) + rows
            self.image_counts[count] = self.image_counts.get(count, 0) + rows
        return list(
            zip(
                repeat(self.batch_id),
                ids,
                lines if self.lines else repeat(None),
                prompts,
                models,
                _json_lists(images),
                [a or None for a in aspects] if "" in aspects else aspects,
                [None if e == "" else e for e in enhances] if "" in enhances else enhances,
                stored_extras,
                *map(repeat, _PENDING),
            )
        )

    def _taken(self, ref: str, line: int, bad: Callable[[str, str], None]) -> bool:
        """Whether an earlier row has this id (then a problem says where); remembered if not.
        Without `remember_ids` the database says it instead."""
        if not self.remember_ids:
            return False
        ref_hash = hash(ref)
        if ref_hash in self._seen_refs:
            bad("id", f"duplicate id {_short(ref)}: {self._first_with(ref_hash)} has the same id")
            return True
        self._remember(ref, line)
        return False

    def _remember(self, ref: str, line: int) -> None:
        ref_hash = hash(ref)
        self._seen_refs.add(ref_hash)
        self._ref_order.append(ref_hash)
        self._ref_lines.append(line)

    def _remember_hashes(self, hashes: Sequence[int], lines: Sequence[int]) -> None:
        """`_remember` of many rows' ids, by their hashes."""
        self._seen_refs.update(hashes)
        self._ref_order.extend(hashes)
        self._ref_lines.extend(lines)

    def _first_with(self, ref_hash: int) -> str:
        """Where the row with this id hash is (`line 12`, or `job 3` of a list of jobs), for
        the first MAX_DUPLICATES_NAMED duplicates (each a scan of the hashes, in C)."""
        if self._duplicates_named < MAX_DUPLICATES_NAMED:
            self._duplicates_named += 1
            with contextlib.suppress(ValueError):
                first = self._ref_lines[self._ref_order.index(ref_hash)]
                return f"{'line' if self.lines else 'job'} {first}"
        return "an earlier row"

    def _count(self, model: str, images: int) -> None:
        self.model_counts[model] = self.model_counts.get(model, 0) + 1
        self.image_counts[images] = self.image_counts.get(images, 0) + 1

    def _plain_extras(self, extras: dict[str, Any]) -> str | bool | None:
        """Extras as JSON (None if none are left), or False if one needs a diagnosis."""
        broken: list[str] = []
        kept = self._checked_extras(extras, lambda name, _message: broken.append(name))
        if broken:
            return False
        return _json(kept) if kept else None

    def _name_problem(self, name: str) -> str | None:
        try:
            return self._name_problems[name]
        except KeyError:
            problem = self._name_problems[name] = field_name_problem(name)
            return problem

    def _diagnose(self, raw: RawJob) -> tuple[StoredRow | None, Sequence[Problem]]:
        """The slow path: every rule in turn, with a message for each one a row breaks."""
        problems: list[Problem] = list(raw.problems)

        def bad(name: str, message: str) -> None:
            problems.append(Problem(raw.line_of(name), name, message))

        ref = self._ref(raw, bad)
        if self._taken(ref, raw.line, bad):
            return None, problems
        if raw.problems:  # the reader could not make a row of it: nothing more to check
            return (
                self.batch_id,
                ref,
                raw.line if self.lines else None,
                "",
                "",
                "[]",
                None,
                None,
                None,
                *_PENDING,
            ), problems

        prompt = _checked_prompt(raw.prompt, bad)
        model = raw.model if type(raw.model) is str else str(raw.model or "")
        span = self.models.get(model)
        if span is None:
            bad("model", self._model_problem(raw.model))
        elif self.priced is not None and model not in self.priced:
            bad("model", unpriced(model))
        if raw.enhance_prompt is not True and isinstance(raw.prompt, str):
            self._check_language(raw, raw.prompt, bad)
        aspect = raw.aspect_ratio or None
        known_aspect = aspect if aspect in ASPECT_RATIOS else None
        images = self._checked_images(raw, model, span, known_aspect, bad)
        if aspect is not None and known_aspect is None:
            bad(
                "aspect_ratio",
                f"must be one of {', '.join(ASPECT_RATIOS)}, got {_short(str(aspect))}",
            )
            aspect = None

        enhance = raw.enhance_prompt
        if enhance == "":
            enhance = None
        elif enhance is not None and type(enhance) is not bool:
            bad("enhance_prompt", _bool_problem(enhance))
            enhance = None

        extras = self._checked_extras(raw.extras or {}, bad)
        if span is not None:
            self._check_fit(model, images, extras, bad)
        if not problems:
            self._count(model, len(images))
        return (
            self.batch_id,
            ref,
            raw.line if self.lines else None,
            prompt,
            model[:MODEL_COLUMN_CHARS],  # (an unknown one stored as failed, its error names it)
            _json(images),
            aspect,
            enhance,
            _json(extras) if extras else None,
            *_PENDING,
        ), problems

    def _check_fit(
        self,
        model: str,
        images: list[Any],
        extras: Mapping[str, Any],
        bad: Callable[[str, str], None],
    ) -> None:
        """Tell `bad` when no account that serves `model` can take the row (`fitting`)."""
        refused = self.fitting.problem(model, images, extras) if self.fitting else None
        if refused is not None:
            bad(*refused)

    def _checked_images(
        self,
        raw: RawJob,
        model: str,
        span: ImageRange | None,
        aspect: str | None,
        bad: Callable[[str, str], None],
    ) -> list[Any]:
        """The images as stored: links and data: URIs as given, each local file as what
        `ImageInspector` found of it, telling `bad` what is wrong (and `self.warnings` what
        is worth a warning)."""
        images = raw.images
        if type(images) is not list or not images:
            empty = images is None or images in ("", [])
            bad("images", "missing; give 1 to 3 images" if empty else "must be a list of images")
            return images if type(images) is list else []
        if span is not None and not span.low <= len(images) <= span.high:
            bad("images", f"{model} takes {span} image(s), got {len(images)}")
        kept: list[Any] = []
        for index, image in enumerate(images, 1):
            named = f"image {index}: " if len(images) > 1 else ""
            if not is_local(image):
                message = image_problem(image)
                kept.append(image)
            elif self.images is None:
                message = local_refused(image)
            else:
                try:
                    found = self.images.inspect(image)
                except ImageError as exc:
                    message = exc.message
                else:
                    message = None
                    kept.append(found.stored())
                    warning = shape_warning(found.width, found.height, aspect)
                    if warning is not None:
                        self._warn(raw.line_of("images"), "images", f"{named}{image} {warning}")
            if message is not None:
                bad("images", named + message)
                if is_local(image):
                    kept.append(image)  # as given: a row stored failed shows what it named
        return kept

    def _check_language(
        self, raw: RawJob, prompt: str, bad: Callable[[str, str], None] | None = None
    ) -> bool:
        """Warn of a prompt mostly not in Latin script; with --strict it is a problem (told
        to `bad`, or True so that the fast path hands the row to the slow one)."""
        language = script_problem(prompt)
        if language is None:
            return False
        if not self.strict:
            self._warn(raw.line_of("prompt"), "prompt", language)
            return False
        if bad is not None:
            bad("prompt", language)
        return True

    def _warn(self, line: int, name: str, message: str) -> None:
        key = (name, message)
        lines = self._warned.get(key)
        if lines is None:
            if len(self._warned) >= MAX_WARNINGS:
                self._unlisted += 1
                return
            self._warned[key] = lines = []
            self._rows_warned[key] = 0
        self._rows_warned[key] += 1
        if len(lines) < LINES_SHOWN:
            lines.append(line)

    @property
    def warnings(self) -> list[Problem]:
        """Each warning once, at its first line; one that several rows share says how many
        and which lines (`... (300 rows: lines 2, 3, 4, 5, 6 and 295 more)`)."""
        found = []
        for (name, message), lines in self._warned.items():
            rows = self._rows_warned[(name, message)]
            where = ""
            if rows > 1:
                more = f" and {rows - len(lines):,} more" if rows > len(lines) else ""
                where = f" ({rows:,} rows: lines {', '.join(map(str, lines))}{more})"
            found.append(Problem(lines[0], name, message + where))
        return found

    @property
    def warning_count(self) -> int:
        """Different warnings: those listed, and those past MAX_WARNINGS (counted per row)."""
        return len(self._warned) + self._unlisted

    @staticmethod
    def _ref(raw: RawJob, bad: Callable[[str, str], None]) -> str:
        ref = raw.id
        if ref is None or ref == "":
            return str(raw.line)
        if type(ref) is int:
            return str(ref)
        if type(ref) is not str:
            bad("id", f"must be text or a number, got {type(ref).__name__}")
        elif len(ref) > MAX_REF_CHARS or ref.isspace():
            bad("id", f"must be 1 to {MAX_REF_CHARS} characters")
        elif (problem := text_problem(ref, BAD_NAME_CHARS)) is not None:
            bad("id", problem)
        else:
            return ref
        return f"line:{raw.line}"

    def _model_problem(self, model: object) -> str:
        if model is None or model == "":
            return f"missing; one of: {', '.join(self.models)}"
        close = difflib.get_close_matches(str(model), list(self.models), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"one of: {', '.join(self.models)}"
        return f"unknown model {_short(str(model))}; {hint}"

    def _checked_extras(
        self, extras: Mapping[str, Any], bad: Callable[[str, str], None]
    ) -> dict[str, Any]:
        kept: dict[str, Any] = {}
        for name, value in extras.items():
            if value == "" or value is None:
                continue
            if name in OUTPUT_FIELDS:
                self.ignored_fields.add(name)
                continue
            message = text_problem(name, BAD_NAME_CHARS) or self._name_problem(name)
            if message is not None:
                bad(name, message)
            elif name in BOOL_FIELDS and type(value) is not bool:
                bad(name, _bool_problem(value))
            elif name == "notify_hook" and not (
                isinstance(value, str) and value.startswith(_URL_PREFIXES)
            ):
                bad(name, "must be an http(s) URL")
            elif (problem := _extra_problem(value)) is not None:
                bad(name, problem)
            else:
                kept[name] = value
        return kept


def _checked_prompt(prompt: Any, bad: Callable[[str, str], None]) -> str:
    """The prompt as text, telling `bad` what is wrong with it."""
    if not isinstance(prompt, str) or not prompt.strip():
        bad(
            "prompt",
            "must be text" if prompt and not isinstance(prompt, str) else "missing or empty",
        )
        return "" if prompt is None else str(prompt)
    if len(prompt) > MAX_PROMPT_CHARS:
        bad("prompt", f"is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    if (problem := text_problem(prompt, BAD_PROMPT_CHARS)) is not None:
        bad("prompt", problem)
    return prompt


def _extra_problem(value: Any) -> str | None:
    """Why a pass-through value cannot be sent (None: it can): nested deeper than
    MAX_EXTRA_DEPTH, or larger than MAX_EXTRA_BYTES as JSON. The depth is found without
    recursion: the depth is what a hostile value attacks."""
    if isinstance(value, str):
        text = text_problem(value, BAD_PROMPT_CHARS)
        return text or _too_long(len(value.encode("utf-8", errors="surrogatepass")))
    if isinstance(value, float) and not math.isfinite(value):
        return "is not a finite number"
    if not isinstance(value, dict | list):
        return None
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_EXTRA_DEPTH:
            return f"is nested more than {MAX_EXTRA_DEPTH} deep"
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return "is not a JSON value (or holds a number that is not finite)"
    if "\\u0000" in text:
        return "holds a NUL character"
    return text_problem(text, _SURROGATES) or _too_long(len(text.encode("utf-8", "surrogatepass")))


# What a prompt's letters are written in, by the first word of their Unicode names.
_SCRIPTS: Final = {
    "CJK": "Chinese",
    "HIRAGANA": "Japanese",
    "KATAKANA": "Japanese",
    "HANGUL": "Korean",
    "CYRILLIC": "Cyrillic",
    "ARABIC": "Arabic",
    "HEBREW": "Hebrew",
    "GREEK": "Greek",
    "THAI": "Thai",
    "DEVANAGARI": "Devanagari",
}


@functools.lru_cache(maxsize=4096)
def _script_word(char: str) -> str:
    """The first word of a character's Unicode name (`CJK`, `HIRAGANA`, ...): a prompt's
    letters repeat, from one prompt to the next too, so each is looked up once."""
    return unicodedata.name(char, "?").split()[0]


def script_problem(prompt: str) -> str | None:
    """Why a prompt mostly not in Latin script is worth a warning (Veo takes English), or
    None. Only asked when `enhance_prompt` is not true (the provider then translates)."""
    if prompt.isascii():
        return None
    letters = [char for char in prompt if char.isalpha()]
    # Latin: below U+0250 (Basic Latin to Latin Extended-B), or Latin Extended Additional.
    other = [c for c in letters if not (c < "\u0250" or "\u1e00" <= c <= "\u1eff")]
    if not other or len(other) * 2 <= len(letters):
        return None
    word = Counter(map(_script_word, other)).most_common(1)[0][0]
    script = _SCRIPTS.get(word, word.title())
    return (
        f"is mostly in {script} script and enhance_prompt is not true: Veo takes English "
        "prompts, so this video would be paid for and usually wrong (write it in English, or "
        "set enhance_prompt: true to let the provider translate it)"
    )


def text_problem(text: str, bad: re.Pattern[str]) -> str | None:
    """What in `text` no stored text may hold (the first one, by position), or None."""
    found = bad.search(text)
    if found is None:
        return None
    char, where = found.group(), f"at character {found.start() + 1}"
    if char == "\x00":
        return f"holds a NUL character {where}"
    if "\ud800" <= char <= "\udfff":
        return f"holds a lone surrogate (U+{ord(char):04X}, not Unicode text) {where}"
    if re.fullmatch(f"[{_INVISIBLE}]", char):
        return f"holds an invisible or direction-changing character (U+{ord(char):04X}) {where}"
    return f"holds a control character (U+{ord(char):04X}) {where}"


def _too_long(size: int) -> str | None:
    if size > MAX_EXTRA_BYTES:
        return f"is {size:,} bytes; a pass-through field holds at most {MAX_EXTRA_BYTES:,}"
    return None


def _refs(refs: Sequence[Any], lines: Sequence[int]) -> Sequence[Any]:
    """The rows' ids as `check` takes them: a missing one is the row's line, a number text."""
    if None not in refs and "" not in refs and int not in set(map(type, refs)):
        return refs
    return [
        str(line) if ref is None or ref == "" else str(ref) if type(ref) is int else ref
        for ref, line in zip(refs, lines, strict=True)
    ]


def _fits(span: ImageRange | None, images: int) -> bool:
    return span is not None and span.low <= images <= span.high


def _plain_columns(
    refs: Sequence[Any],
    prompts: Sequence[Any],
    models: Sequence[Any],
    images: Sequence[Any],
    aspects: Sequence[Any],
    enhances: Sequence[Any],
) -> bool:
    """Whether every row's values pass `check`'s rules of types, lengths and characters
    (whole columns at once). May raise TypeError for a value of another type."""
    return (
        set(map(type, refs)) | set(map(type, prompts)) | set(map(type, models)) == {str}
        and set(map(type, images)) == {list}
        and set(aspects) <= _ASPECTS_OR_NONE
        and set(map(type, enhances)) <= _ENHANCE_TYPES
        and {e for e in enhances if type(e) is str} <= {""}
        and max(map(len, refs)) <= MAX_REF_CHARS
        and not any(map(str.isspace, refs))
        and _clean_names(" ".join(refs))
        and 0 < min(map(len, prompts)) <= max(map(len, prompts)) <= MAX_PROMPT_CHARS
        and not any(map(str.isspace, prompts))
        and _clean_prompts(" ".join(prompts))
        and _plain_links(images)
    )


def _clean_names(text: str) -> bool:
    """Whether `text` holds no character of BAD_NAME_CHARS. For ASCII text, the common case,
    those are its control characters, which bytes.translate finds four times as fast as the
    search."""
    if text.isascii():
        return not text.encode("ascii").translate(None, _PRINTABLE_ASCII)
    return BAD_NAME_CHARS.search(text) is None


def _clean_prompts(text: str) -> bool:
    """Whether `text` holds no character of BAD_PROMPT_CHARS: once in UTF-8 (where a lone
    surrogate cannot go), the bytes left when every other byte is deleted."""
    try:
        return not text.encode("utf-8").translate(None, _PROMPT_BYTES)
    except UnicodeEncodeError:
        return BAD_PROMPT_CHARS.search(text) is None


def _plain_links(images: Sequence[list[str]]) -> bool:
    """Whether every entry of every row's images is a plain http(s) link (`_PLAIN_IMAGES`).
    Links that are all printable, with no space, quote or backslash, that each start with
    the scheme and a host, are: that is told without the regex, which then only decides for
    the others."""
    links = list(chain.from_iterable(images))
    text = " ".join(links)
    if (
        (_clean_names(text) if text.isascii() else text.isprintable())
        and text.count(" ") == len(links) - 1
        and '"' not in text
        and "\\" not in text
        and all(map(str.startswith, links, repeat(_URL_PREFIXES)))
        and _NO_HOST.search(text) is None
    ):
        return True
    return _PLAIN_IMAGES.fullmatch("\n".join(map("\n".join, images))) is not None


def _not_ascii(text: str) -> bool:
    return not text.isascii()


def _json_lists(images: Sequence[list[str]]) -> list[str]:
    """Each row's plain links as the JSON list `check` stores (`["a", "b"]`), made by joining
    all rows' links at once: no link holds a NUL, which separates the rows."""
    lists = '"]\0["'.join(map('", "'.join, images))
    return ('["' + lists + '"]').split("\0")
