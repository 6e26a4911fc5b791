"""The install CI tests is the one users get: every dependency is bounded above, and the
lock file pins each of them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent


def names(requirements: list[str]) -> dict[str, str]:
    found = {}
    for line in requirements:
        match = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?(.*)", line.strip())
        if match:
            found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


def test_runtime_dependencies_have_an_upper_bound_and_a_pin() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = names(project["dependencies"])
    assert all("<" in spec for spec in declared.values()), declared
    lines = (ROOT / "requirements" / "ci.txt").read_text().splitlines()
    pinned = names([line for line in lines if "==" in line and not line.startswith("#")])
    tests = names(project["optional-dependencies"]["test"])
    assert set(declared) | set(tests) <= set(pinned), set(declared) | set(tests) - set(pinned)
