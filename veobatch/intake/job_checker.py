"""The checks every row passes before anything is stored.

Pure logic: a reader (`intake.readers`) turns each row into a `RawJob`, and `JobChecker.check`
turns that into either a `StoredRow`, ready for the database, or a list of `Problem`s naming
the line and field. Loading a million rows spends most of its time here, so `check` first tries
a fast path that only answers "is this row fine?"; any row it does not accept goes through
`_diagnose`, which applies the same rules one by one and says what is wrong. `check_plain`
answers the same question for a block of rows, a column at a time (`column_checks`). The
rules themselves, and their limits, are in `field_rules`.
"""

from __future__ import annotations

import contextlib
import difflib
import json
from array import array
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from itertools import compress, repeat
from typing import TYPE_CHECKING, Any, Final

from veobatch.catalog import ASPECT_RATIOS, ImageRange
from veobatch.errors import ImageError, Problem
from veobatch.images.files import ImageInspector
from veobatch.images.formats import shape_warning
from veobatch.images.references import is_local
from veobatch.intake.column_checks import fits, json_lists, not_ascii, plain_columns, refs_of
from veobatch.intake.field_rules import (
    ASPECTS_OR_EMPTY,
    BAD_NAME_CHARS,
    BAD_PROMPT_CHARS,
    BOOL_FIELDS,
    MAX_PROMPT_CHARS,
    MAX_REF_CHARS,
    MODEL_COLUMN_CHARS,
    OUTPUT_FIELDS,
    PLAIN_IMAGES,
    URL_PREFIXES,
    bool_problem,
    checked_prompt,
    extra_problem,
    field_name_problem,
    image_problem,
    is_plain_image,
    local_refused,
    script_problem,
    short_repr,
    text_problem,
)
from veobatch.intake.raw_job import RawJob
from veobatch.lifecycle.spend_rules import unpriced

if TYPE_CHECKING:
    from veobatch.accounts.fitting import Fitting

MAX_WARNINGS: Final = 50  # different warnings listed in full; the rest are counted
LINES_SHOWN: Final = 5  # lines a warning that many rows share names; the rest are counted
MAX_DUPLICATES_NAMED: Final = 100  # duplicated ids whose first line a problem names

StoredRow = tuple[Any, ...]

_PENDING: Final = ("pending", None, None)  # status, error, error_kind of a row to submit
_NO_PROBLEMS: Final[Sequence[Problem]] = ()


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


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
            or not (aspect is None or (type(aspect) is str and aspect in ASPECTS_OR_EMPTY))
            or not (enhance is None or enhance is True or enhance is False or enhance == "")
        ):
            return self._diagnose(raw)
        if self.priced is not None and model not in self.priced:
            return self._diagnose(raw)
        try:
            joined = "\n".join(images)
        except TypeError:  # an entry that is not text
            return self._diagnose(raw)
        if PLAIN_IMAGES.fullmatch(joined) is None and not all(map(is_plain_image, images)):
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
        ids = refs_of(refs, lines)
        try:
            spans = {model: self.models.get(model) for model in set(models)}
            shapes = Counter(zip(models, map(len, images), strict=True))  # (model, images)
            if (
                set(problems) != {()}
                or (self.priced is not None and not spans.keys() <= set(self.priced))
                or not all(fits(spans[model], count) for model, count in shapes)
                or not plain_columns(ids, prompts, models, images, aspects, enhances)
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
            for i in compress(range(len(prompts)), map(not_ascii, prompts))
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
                json_lists(images),
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
            first = self._first_with(ref_hash)
            bad("id", f"duplicate id {short_repr(ref)}: {first} has the same id")
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

        prompt = checked_prompt(raw.prompt, bad)
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
                f"must be one of {', '.join(ASPECT_RATIOS)}, got {short_repr(str(aspect))}",
            )
            aspect = None

        enhance = raw.enhance_prompt
        if enhance == "":
            enhance = None
        elif enhance is not None and type(enhance) is not bool:
            bad("enhance_prompt", bool_problem(enhance))
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
        return f"unknown model {short_repr(str(model))}; {hint}"

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
                bad(name, bool_problem(value))
            elif name == "notify_hook" and not (
                isinstance(value, str) and value.startswith(URL_PREFIXES)
            ):
                bad(name, "must be an http(s) URL")
            elif (problem := extra_problem(value)) is not None:
                bad(name, problem)
            else:
                kept[name] = value
        return kept
