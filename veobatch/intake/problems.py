"""What is wrong with a job file, row by row, in the form `file:line: field: message`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from veobatch.errors import Problem

DEFAULT_MAX_PROBLEMS = 50
__all__ = ["DEFAULT_MAX_PROBLEMS", "Problem", "ProblemReport"]


@dataclass(slots=True)
class ProblemReport:
    """All problems of one file: the first `limit` kept in full, the rest only counted."""

    source: str
    limit: int = DEFAULT_MAX_PROBLEMS
    problems: list[Problem] = field(default_factory=list)
    total: int = 0
    invalid_rows: int = 0
    warnings: list[Problem] = field(default_factory=list)  # rows stored, with a remark
    warning_count: int = 0
    _seen: set[Problem] = field(default_factory=set)

    def add_row(self, problems: Sequence[Problem]) -> None:
        """Record the problems of one invalid row."""
        self.invalid_rows += 1
        for problem in problems:
            self.add(problem)

    def add(self, problem: Problem) -> None:
        # A problem in `defaults:` shows in every row that uses it: list it once.
        if problem in self._seen:
            return
        self.total += 1
        if len(self.problems) < self.limit:
            self.problems.append(problem)
            self._seen.add(problem)

    def __bool__(self) -> bool:
        return self.total > 0

    def warning_lines(self) -> list[str]:
        out = [f"warning: {problem.format(self.source)}" for problem in self.warnings]
        if self.warning_count > len(self.warnings):
            out.append(f"... and {self.warning_count - len(self.warnings)} more warning(s)")
        return out

    def lines(self) -> list[str]:
        out = [problem.format(self.source) for problem in self.problems]
        if self.total > len(self.problems):
            out.append(f"... and {self.total - len(self.problems)} more problem(s)")
        return out
