"""Benchmark: how long a short command takes, from spawn to exit.

Each command runs `--repeat` times (default 20) in a fresh process, after one untimed run
that leaves Python's bytecode files behind (as an installed package has them; the
environment's PYTHONDONTWRITEBYTECODE is dropped for the children). Timed:

- `veo-batch --help`;
- `veo-batch status` on a SQLite file at the newest revision that holds a batch of 100 rows;
- a refused file: `veo-batch load` of a CSV whose one row names an unknown model (the whole
  load runs, the database's transaction included, and is rolled back);

against two baselines run in the same way: `python -c pass` (the interpreter alone) and
`python -c "import sqlalchemy.orm"` (the library every command that reads the database
needs). Printed: the median and the slowest time of each, and each command's median as a ratio
to the SQLAlchemy baseline; results in `bench/out/startup-<time>.json`.

    python bench/startup.py
    python bench/startup.py --source /tmp/old-checkout   # the veobatch of another checkout
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness.results import OUT_DIR


def timed(command: list[str], env: dict[str, str], cwd: Path, repeat: int) -> list[float]:
    """Seconds of each run of `command`, spawn to exit, after one untimed run."""
    subprocess.run(command, env=env, cwd=cwd, capture_output=True, check=False, timeout=120)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, env=env, cwd=cwd, capture_output=True, check=False, timeout=120)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--source", type=Path, help="a checkout whose veobatch is timed")
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if args.source is not None:
        env["PYTHONPATH"] = str(args.source.resolve())
    python = sys.executable
    veo = [python, "-m", "veobatch"]
    with tempfile.TemporaryDirectory(prefix="veo-startup-") as folder:
        work = Path(folder)
        env["VEO_DATABASE_URL"] = f"sqlite:///{work / 'veo-batch.db'}"
        good = work / "jobs.csv"
        good.write_text(
            "id,prompt,model,images\n"
            + "".join(f"{n},a calm lake,veo3.1,https://example.com/{n}.jpg\n" for n in range(100))
        )
        done = subprocess.run(
            [*veo, "load", str(good), "--batch", "b"],
            env=env,
            cwd=work,
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            sys.exit(f"could not load the batch: {done.stderr.decode()}")
        refused = work / "refused.csv"
        refused.write_text("id,prompt,model,images\n1,hello,nosuch,https://example.com/a.jpg\n")
        steps = {
            "python -c pass": [python, "-c", "pass"],
            "python -c 'import sqlalchemy.orm'": [python, "-c", "import sqlalchemy.orm"],
            "veo-batch --help": [*veo, "--help"],
            "veo-batch status": [*veo, "status"],
            "veo-batch load (refused file)": [*veo, "load", str(refused), "--batch", "r"],
        }
        results = {name: timed(command, env, work, args.repeat) for name, command in steps.items()}
    baseline = statistics.median(results["python -c 'import sqlalchemy.orm'"])
    print(f"{'step':<36} {'median':>8} {'slowest':>8} {'÷ sqlalchemy':>13}")
    summary = {}
    for name, times in results.items():
        median = statistics.median(times)
        summary[name] = {"median": median, "slowest": max(times), "runs": times}
        print(f"{name:<36} {median:8.3f} {max(times):8.3f} {median / baseline:12.2f}x")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"startup-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"source": str(args.source or "this checkout"), **summary}, indent=1))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
