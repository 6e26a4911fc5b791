"""A generator run in a forked child process, its values handed to the parent through a pipe.

The loader reads and checks a file in one (the parent writes meanwhile); an export makes a
part of its rows in one. What the child yields arrives in order; an exception in the child is
raised in the parent (its text, if it cannot be pickled); a child that dies without a word is
`ProcessFailed`. Fork only from a process with no other thread (see `export_parts.can_fork`).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any, Final

from veobatch.errors import ProcessFailed

_DONE: Final = "veo-batch: the child is done"


class Forked:
    """`produce()` run in a forked child named `name`; `what` names it in errors."""

    def __init__(self, produce: Callable[[], Iterator[Any]], name: str, what: str) -> None:
        self.what = what
        context = multiprocessing.get_context("fork")
        self._receiver, sender = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_run, args=(sender, produce, what), name=name, daemon=True
        )
        self._process.start()
        sender.close()

    def values(self) -> Iterator[Any]:
        """What the child yields, in order, until it is done."""
        while True:
            try:
                message = self._receiver.recv()
            except EOFError:
                self._process.join()
                raise ProcessFailed(
                    f"{self.what} stopped (exit code {self._process.exitcode})"
                ) from None
            if isinstance(message, str) and message == _DONE:
                self._process.join()
                return
            if isinstance(message, BaseException):
                raise message
            yield message

    def is_alive(self) -> bool:
        return self._process.is_alive()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def stop(self) -> None:
        """The child stopped (if it still runs) and waited for; the pipe closed."""
        self._receiver.close()
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()


def _run(sender: Connection, produce: Callable[[], Iterator[Any]], what: str) -> None:
    try:
        for value in produce():
            sender.send(value)
        sender.send(_DONE)
    except BaseException as exc:  # handed to the parent, which raises it
        try:
            sender.send(exc)
        except Exception:  # an exception that cannot be pickled: its text then
            sender.send(ProcessFailed(f"{what} failed: {type(exc).__name__}: {exc}"))
    finally:
        sender.close()
