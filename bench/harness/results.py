"""What a benchmark reports: the state of the code measured and the machine, the JSON file of
results, the log lines that look like trouble, and the cells of the tables, whose ratios are
always against a baseline measured in the same run."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from bench.harness.processes import REPO

OUT_DIR: Final = REPO / "bench" / "out"


def git_state() -> dict[str, Any]:
    """The commit measured, the files changed since it and a hash of those changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "HEAD"),
        "changed": git("status", "--short").splitlines(),
        "diff_sha256": hashlib.sha256(git("diff", "HEAD").encode()).hexdigest(),
    }


def note_code_change(document: dict[str, Any]) -> None:
    """Warn, and add `code_at_end` to `document`, when the working tree is no longer as its
    `code` (from git_state() at the start) says."""
    if git_state() != document["code"]:
        document["code_at_end"] = git_state()
        print(
            "\nwarning: the working tree changed during the run (see code and code_at_end in "
            "the JSON); parts started before the change ran the old code"
        )


def machine_facts() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def write_json(kind: str, started: datetime, document: dict[str, Any]) -> Path:
    """Write `document` to bench/out/KIND-<started>.json; its path."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{kind}-{started:%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def print_problems(results: Iterable[tuple[str, dict[str, Any] | None]]) -> None:
    """The log lines that look like trouble, of each (label, result) that has `problems`."""
    for label, result in results:
        for name, found in (result or {}).get("problems", {}).items():
            print(
                f"\nnote: {label}: {found['lines']:,} log lines of {name} look like trouble; "
                "the first distinct ones:"
            )
            for line in found["first"]:
                print(f"  {line[:300]}")


# ---------------------------------------------------------------------------------- cells


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def times(value: float | None) -> str:
    """A ratio to the baseline, as the tables print it (blank when there is none)."""
    return "" if value is None else f"×{value:.2f}"


def check_cell(wrong: Sequence[str]) -> str:
    """The CHECK column: `ok`, or what is wrong with the run."""
    return "ok" if not wrong else "WRONG: " + "; ".join(wrong)


def targets_cell(missed: Sequence[str], separator: str = "; ") -> str:
    """The TARGETS column: `met`, or the targets missed."""
    return "MISSED: " + separator.join(missed) if missed else "met"
