"""How every long-running process logs: readable text by default, JSON lines with
VEO_LOG_FORMAT=json, and never a secret.

A line about a row carries its fields as `extra` (batch, row, task_id, attempt, http_status,
error_kind, status): text shows them as `key=value` after the message, JSON as keys of the
object, so a log search can find every line of one row or one task.

Every handler set up here passes through `Redacting`, which replaces the provider key (and
any other secret given) wherever it appears in a line, whatever logged it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any, Final

from pythonjsonlogger.json import JsonFormatter

from veobatch.provider.redact import Redactor
from veobatch.settings import Settings
from veobatch.visible import visible

# The fields a row's line may carry, in the order text shows them.
ROW_FIELDS: Final = (
    "batch",
    "row",
    "account",
    "status",
    "task_id",
    "attempt",
    "http_status",
    "error_kind",
    "count",
)
_QUOTED: Final = re.compile(r"[\s\"'=]")  # a field with one of these is shown quoted
TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [
            f"{name}={_text(getattr(record, name))}"
            for name in ROW_FIELDS
            if getattr(record, name, None) not in (None, "")
        ]
        # Escape codes from a relay's text (a failure reason) never reach a terminal or log.
        return visible(f"{line} {' '.join(fields)}" if fields else line)


def _text(value: Any) -> str:
    text = str(value)
    return repr(text) if not text or _QUOTED.search(text) else text


class Redacting(logging.Filter):
    """Replaces each secret in the finished line (message, arguments and fields alike)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.redactors = [Redactor(secret) for secret in secrets if secret]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.redactors:
            return True
        message = record.getMessage()
        for redact in self.redactors:
            message = redact(message)
        record.msg, record.args = message, None
        for name in ROW_FIELDS:
            value = getattr(record, name, None)
            if isinstance(value, str):
                for redact in self.redactors:
                    value = redact(value)
                setattr(record, name, value)
        if record.exc_info:  # a traceback is text too: format it now, redacted
            text = logging.Formatter().formatException(record.exc_info)
            for redact in self.redactors:
                text = redact(text)
            record.exc_info, record.exc_text = None, text
        return True


def secrets_of(settings: Settings) -> list[str]:
    """Every secret the settings hold: the provider key, the webhook secret, the API tokens."""
    held = [settings.api_key, settings.webhook_secret, *settings.api_tokens]
    return [secret.reveal() for secret in (*held, *settings.api_read_tokens) if secret]


def formatter(kind: str) -> logging.Formatter:
    if kind == "json":
        return JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    return TextFormatter()


def configure(
    kind: str = "text", *, secrets: Iterable[str] = (), level: int = logging.INFO
) -> None:
    """Log to stderr in `kind` (text or json) from here on, for this process and its
    libraries (Celery, uvicorn, httpx), each line redacted of `secrets`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(kind))
    handler.addFilter(Redacting(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request is ours to say
