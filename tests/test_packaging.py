"""The install CI tests is the one users get: every dependency is bounded above, and the
lock file pins each of them."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
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


def pins(lock: str) -> dict[str, str]:
    """The versions a lock file in requirements/ pins, by package name."""
    lines = (ROOT / "requirements" / lock).read_text().splitlines()
    pinned = [line for line in lines if "==" in line and not line.startswith("#")]
    return {name: spec.removeprefix("==") for name, spec in names(pinned).items()}


def test_the_image_lock_holds_the_versions_ci_tested() -> None:
    """requirements/runtime.txt (what the Dockerfile installs) is ci.txt without the test
    tools: every runtime dependency pinned, at the very version CI installed."""
    runtime, ci = pins("runtime.txt"), pins("ci.txt")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert set(names(project["dependencies"])) <= set(runtime)
    assert set(runtime) <= set(ci), set(runtime) - set(ci)
    differ = {name: (runtime[name], ci[name]) for name in runtime if runtime[name] != ci[name]}
    assert not differ, f"runtime.txt and ci.txt pin different versions: {differ}"
    tests = set(names(project["optional-dependencies"]["test"]))
    assert not tests & set(runtime), tests & set(runtime)


def test_the_wheel_adds_one_top_level_package_with_its_migrations_and_pages(
    tmp_path: Path,
) -> None:
    """`pip install veo-batch` adds `veobatch` and nothing else to site-packages' top level
    (a `worker` or `migrations` of ours would shadow a user's own), and the files the package
    reads at run time (the migrations, the dashboard's templates) go with it."""
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"veobatch"}
    assert "veobatch/migrations/script.py.mako" in names
    assert any(name.startswith("veobatch/migrations/versions/0001_") for name in names)
    assert any(name.startswith("veobatch/dashboard/templates/") for name in names)
