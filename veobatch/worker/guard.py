"""Every message is checked before a task runs, so none can stop the worker.

Celery hands a message to a prefork child by pickling its arguments; a body that is not a task
message, or arguments nested hundreds deep, fail there and take the worker down (and the
message, not acknowledged, comes back to take down the next one). The strategy below checks
each message of our tasks first: its shape, the size and depth of its arguments, and the
arguments each task takes. A message that fails is acknowledged and dropped with a logged
reason, and `veobatch.enqueue`, whose caller waits for an answer, is answered with the reason.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, Final

from celery import Celery, Task
from celery.worker.strategy import default

from veobatch.errors import VeoBatchError
from veobatch.worker.names import DOWNLOAD_TASK, ENQUEUE_TASK, POLL_TASK, SUBMIT_TASK

MAX_DEPTH: Final = 32  # nesting of a message's arguments (a job's `extra` is held to less)
MAX_BYTES: Final = 32 * 1024 * 1024  # a message's body
MAX_POLL_GROUP: Final = 1000  # rows one poll message may name
MAX_SUBMIT_GROUP: Final = 1000  # rows one submit message may name
log = logging.getLogger("veobatch.worker")


class Refused(VeoBatchError):
    """A message no task of ours can take; the text says why (dropped, never raised past the
    guard: the caller of `veobatch.enqueue` is answered with it)."""


def guarded_strategy(task: Task, app: Celery, consumer: Any, **options: Any) -> Callable[..., Any]:
    """Celery's own strategy for `task`, behind a check of every message."""
    handle = default(task, app, consumer, **options)

    def on_message(message: Any, body: Any, ack: Callable[[], Any], *args: Any, **kw: Any) -> Any:
        try:
            check(task.name, message)
        except Exception as exc:  # whatever the message holds, the worker goes on
            refused = exc if isinstance(exc, Refused) else Refused(f"{type(exc).__name__}")
            task_id = _task_id(message)
            log.warning("dropped a %s message (id %s): %s", task.name, task_id, refused)
            if task.name == ENQUEUE_TASK and task_id:
                answer: dict[str, Any] = {"ok": False, "batch": None, "problems": []}
                answer["error"] = str(refused)
                task.backend.mark_as_done(task_id, answer)
            message.ack()
            return None
        return handle(message, body, ack, *args, **kw)

    return on_message


def check(task: str, message: Any) -> None:
    """Raise `Refused` unless `message` is a well-formed call of `task`."""
    if len(message.body or b"") > MAX_BYTES:
        raise Refused(f"the body is over {MAX_BYTES:,} bytes")
    try:
        payload = message.decode()
    except Exception as exc:  # a body its content type cannot decode
        raise Refused(f"the body cannot be decoded: {type(exc).__name__}") from None
    args, kwargs = _arguments(payload)
    _bounded([args, kwargs])
    checked = CHECKS.get(task)  # Celery's own tasks (chord_unlock, ...) take what they take
    if checked is not None:
        checked(*args, **kwargs)


def _arguments(payload: Any) -> tuple[list[Any], dict[str, Any]]:
    """A message's positional and keyword arguments, in either of Celery's protocols."""
    if isinstance(payload, dict) and "args" in payload:  # protocol 1
        args, kwargs = payload.get("args"), payload.get("kwargs") or {}
    elif isinstance(payload, list | tuple) and len(payload) == 3:  # protocol 2
        args, kwargs = payload[0], payload[1]
    else:
        raise Refused("the body is not a task message ([args, kwargs, options])")
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        raise Refused("the arguments are not a list and a mapping")
    return list(args), kwargs


def _bounded(value: Any) -> None:
    """No deeper than MAX_DEPTH (checked without recursion: the depth is the attack)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise Refused(f"the arguments are nested more than {MAX_DEPTH} deep")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1) for v in item)


def _row_id(value: Any, what: str = "job_id") -> None:
    if type(value) is not int or value < 1:
        raise Refused(f"{what} must be a positive whole number, not {_short(value)}")


def _download(job_id: Any = None) -> None:
    _row_id(job_id)


def _submit(job_ids: Any = None) -> None:
    if isinstance(job_ids, int) and not isinstance(job_ids, bool):
        _row_id(job_ids)  # one row, as older schedulers sent
        return
    _row_ids(job_ids, MAX_SUBMIT_GROUP)


def _poll(job_ids: Any = None) -> None:
    _row_ids(job_ids, MAX_POLL_GROUP)


def _row_ids(job_ids: Any, most: int) -> None:
    if not isinstance(job_ids, list) or not 1 <= len(job_ids) <= most:
        raise Refused(f"job_ids must be a list of 1 to {most} row ids")
    for job_id in job_ids:
        _row_id(job_id, "each of job_ids")


def _enqueue(batch: Any = None, jobs: Any = None, webhook_url: Any = None) -> None:
    if not isinstance(batch, str):
        raise Refused(f"batch must be a name (text), not {_short(batch)}")
    if not isinstance(jobs, list):
        raise Refused(f"jobs must be a list of jobs, not {_short(jobs)}")
    if webhook_url is not None and not isinstance(webhook_url, str):
        raise Refused(f"webhook_url must be text, not {_short(webhook_url)}")


def _signature(check: Callable[..., None]) -> Callable[..., None]:
    """`check`, with wrong arity or unknown keywords reported as a refusal."""

    def checked(*args: Any, **kwargs: Any) -> None:
        try:
            check(*args, **kwargs)
        except TypeError as exc:
            raise Refused(f"the arguments do not fit the task: {exc}") from None

    return checked


CHECKS: Final[dict[str, Callable[..., None]]] = {
    SUBMIT_TASK: _signature(_submit),
    POLL_TASK: _signature(_poll),
    DOWNLOAD_TASK: _signature(_download),
    ENQUEUE_TASK: _signature(_enqueue),
}


def _task_id(message: Any) -> str | None:
    headers = getattr(message, "headers", None) or {}
    found = headers.get("id")
    if found is None:
        try:
            payload = message.decode()
        except Exception:  # already refused for it
            return None
        found = payload.get("id") if isinstance(payload, dict) else None
    return found if isinstance(found, str) else None


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)[:60] if not isinstance(value, str) else repr(value)
    return f"{type(value).__name__} {text}"
