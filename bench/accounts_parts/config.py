"""What the account experiments (bench/accounts.py) share: their settings, the relays (a fresh
mock provider each, the account that names it in VEO_ACCOUNTS, the variable holding its key),
the accounts file, the job file, and the environment a run of veo-batch gets."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench.harness.processes import Children, base_env
from bench.harness.services import Mock

DEFAULT_FAILOVER_ROWS: Final = 300
DEFAULT_ROWS: Final = 600  # the throughput part (--rows)
EMPTY_BALANCE: Final = 40  # tasks the `empty` relay creates before it answers 403 quota
DOWN_STATUS: Final = 502  # what the `down` relay answers every request (an HTML page)
RATE: Final = "9/s"  # each account's rate in the throughput part
RATE_PER_S: Final = 9.0
LIMIT: Final = 10  # the throughput mocks' requests per WINDOW
WINDOW: Final = 1.0  # seconds
TARGET_ROWS_PER_S: Final = 15.0  # two accounts at 9/s each
EMBEDDED_CONCURRENCY: Final = 8  # `veo-batch run --concurrency`
WORKERS: Final = 2  # `veo-batch worker` processes in the distributed mode
WORKER_CONCURRENCY: Final = 2  # -c of each
REDIS_URL: Final = "redis://127.0.0.1:6379/11"  # the default of --redis-url
PG_NAME: Final = "veobatch_bench_accounts"
PG_BENCH_DSN: Final = f"host=127.0.0.1 port=5432 user=postgres dbname={PG_NAME} connect_timeout=5"
PG_URL: Final = f"postgresql://postgres@127.0.0.1:5432/{PG_NAME}"
IMAGE: Final = "https://img.example.com/accounts.jpg"  # not fetched by the mock (not local)
PROMPT: Final = "{tag} row {n}: a lighthouse on a windswept beach at dawn, slow pan"
STALL_SECONDS: Final = 60.0  # no task created and no poll answered for this long: stuck
LOOK_SECONDS: Final = 0.05  # seconds between looks at a run (its process, its rows)
MOCK_COUNTERS: Final = (
    "requests",
    "created",
    "polls",
    "rejected_429",
    "recalled",
    "busiest_window",
)
# Polls quick, so that the failover rows end within seconds of their submission.
FAST_POLLS: Final = {"VEO_POLL_DELAY": "0.2", "VEO_POLL_INTERVAL": "0.2-1"}
# Polls held off: an account's rate is shared by its submissions and its polls (and the mock's
# limit counts both), so a throughput of submissions is measured with every slot a submission.
HELD_POLLS: Final = {"VEO_POLL_DELAY": "3600", "VEO_POLL_INTERVAL": "0.2-1"}


@dataclass(frozen=True)
class Relay:
    """One relay account: its name in VEO_ACCOUNTS, its mock, and the variable of its key."""

    name: str
    mock: Mock
    key_env: str
    key: str
    rate: str | None = None

    def stats(self) -> dict[str, Any]:
        return self.mock.stats()


def start_relay(
    children: Children, prefix: str, name: str, *options: str, rate: str | None = None
) -> Relay:
    """A fresh mock (`--text-videos`, OPTIONS) for account `name`, its own key."""
    key = f"bench-{name}-key"
    mock = Mock.start(children, f"{prefix}mock-{name}", key, "--text-videos", *options)
    return Relay(name, mock, f"{name.upper()}_KEY", key, rate)


def write_accounts(path: Path, relays: Sequence[Relay]) -> Path:
    """The VEO_ACCOUNTS file of `relays`, in their order, every priority the default."""
    lines = []
    for relay in relays:
        lines += [f"[accounts.{relay.name}]", f'base = "{relay.mock.url}"']
        lines.append(f'key_env = "{relay.key_env}"')
        if relay.rate is not None:
            lines.append(f'rate = "{relay.rate}"')
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def run_env(
    accounts: Path, relays: Sequence[Relay], polls: dict[str, str], **extra: str
) -> dict[str, str]:
    """The environment of a veo-batch process: no VEO_* of this shell, VEO_ACCOUNTS, each
    relay's key variable, the poll settings and `extra`."""
    keys = {relay.key_env: relay.key for relay in relays}
    return base_env(VEO_ACCOUNTS=str(accounts), **keys, **polls, **extra)


def write_csv(path: Path, rows: int, tag: str) -> Path:
    """A CSV job file of `rows` rows (id, prompt, model, images), every prompt different (the
    mocks count tasks per prompt)."""
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "prompt", "model", "images"])
        for n in range(rows):
            writer.writerow([f"{tag}-{n}", PROMPT.format(tag=tag, n=n), "veo3.1", IMAGE])
    return path


def prompts_of(rows: int, tag: str) -> list[str]:
    return [PROMPT.format(tag=tag, n=n) for n in range(rows)]
