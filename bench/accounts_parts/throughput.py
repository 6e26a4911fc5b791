"""Experiment: how fast rows are submitted through two accounts, against one, and its table.

600 rows (`--rows`); every mock allows 10 requests per sliding 1 s window (`--limit 10
--window 1`) and every account has `rate = "9/s"`. In each mode, two runs, each against fresh
mocks: ONE account (`a`, the baseline) and TWO (`a` and `b`). Polls are held off
(VEO_POLL_DELAY=3600): an account's rate is shared by its submissions and its polls, and the
mock's limit counts both, so with polls going on each row takes two of its account's slots
(two accounts then submit about 9 rows/s); held off, every slot is a submission. Embedded:
`veo-batch run --concurrency 8 --no-wait`, which exits once every row has its task;
distributed: two workers -c 2 and the scheduler, until every row has its task (runs.py).
Measured:

- rows/s: (rows with a task - 1) / (the last `submitted_at` - the first), from the database;
- two accounts ÷ one in the same mode (target: near 2; the figure of this part) and two
  accounts' rows/s (target: above 15, of the 18/s their rates allow together);
- 429s (target: none) and each mock's busiest 1 s window (target: at most 10);
- rows per account, and the wall time (embedded: spawn to exit; distributed: the scheduler's
  start to every row with its task);
- checks: every row has its task, no prompt created twice or nowhere, no poll recalled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from bench.accounts_parts.config import (
    HELD_POLLS,
    LIMIT,
    RATE,
    RATE_PER_S,
    TARGET_ROWS_PER_S,
    WINDOW,
    Relay,
    prompts_of,
    start_relay,
    write_csv,
)
from bench.accounts_parts.runs import (
    common_problems,
    created_across,
    distributed,
    embedded,
    without_prompts,
)
from bench.harness.processes import Children
from bench.harness.results import check_cell, targets_cell, times
from veobatch.cli.output import table_text

NAMES: Final = ("a", "b")
RATIO_TARGET: Final = 1.8  # two accounts ÷ one: "near 2"


def throughput(
    children: Children, work: Path, mode: str, accounts: int, rows: int, redis_url: str
) -> dict[str, Any]:
    print(
        f"throughput ({mode}): {rows:,} rows over {accounts} account(s) at {RATE}, mocks "
        f"limited to {LIMIT}/{WINDOW:g} s ...",
        flush=True,
    )
    name = f"throughput-{mode}-{accounts}"
    jobs = write_csv(work / f"{name}.csv", rows, name)
    timeout = 120 + 3 * rows / (RATE_PER_S * accounts)
    relays: list[Relay] = []
    options = ("--limit", str(LIMIT), "--window", f"{WINDOW:g}")
    try:
        for account in NAMES[:accounts]:
            relays.append(start_relay(children, f"{name}-", account, *options, rate=RATE))
        if mode == "embedded":
            result = embedded(
                children, work, name, jobs, relays, HELD_POLLS, follow=False, timeout=timeout
            )
        else:
            result = distributed(
                children,
                work,
                name,
                jobs,
                relays,
                HELD_POLLS,
                redis_url,
                follow=False,
                timeout=timeout,
            )
    finally:
        children.stop(*(relay.mock.child for relay in relays))
    return figures(result, rows, accounts, name)


def figures(result: dict[str, Any], rows: int, accounts: int, tag: str) -> dict[str, Any]:
    relays = result["relays"]
    made = created_across(relays)
    prompts = set(prompts_of(rows, tag))
    database = result["database"]
    result.update(
        rows=rows,
        accounts=accounts,
        rows_per_s=database["submitted_per_s"],
        prompts_created_twice=sum(1 for n in made.values() if n > 1),
        prompts_not_created=len(prompts - set(made)),
        rejected_429=sum(counters["rejected_429"] for counters in relays.values()),
        busiest_window={name: counters["busiest_window"] for name, counters in relays.items()},
        relays=without_prompts(relays),
    )
    wrong = common_problems(result)
    if database["submitted"] != rows:
        wrong.append(f"{database['submitted']:,} of {rows:,} rows have a task")
    recalled = {name: counters["recalled"] for name, counters in relays.items()}
    if any(recalled.values()):
        wrong.append(f"polls at a relay that did not create the task: {recalled}")
    result["wrong"] = wrong
    return result


def ratios(results: list[dict[str, Any]]) -> dict[str, float | None]:
    """Per mode, two accounts' rows/s ÷ one account's, in the same run of this script."""
    found: dict[str, float | None] = {}
    for mode in dict.fromkeys(r["mode"] for r in results):
        by_accounts = {r["accounts"]: r["rows_per_s"] for r in results if r["mode"] == mode}
        one, two = by_accounts.get(1), by_accounts.get(2)
        found[mode] = two / one if one and two is not None else None
        for r in results:
            if r["mode"] == mode and r["accounts"] == 2:
                r["vs_one"] = found[mode]
    return found


def targets(r: dict[str, Any]) -> str:
    missed = []
    if r["accounts"] == 2:
        if r["rows_per_s"] <= TARGET_ROWS_PER_S:
            missed.append(f"rows/s <= {TARGET_ROWS_PER_S:g}")
        if r.get("vs_one") is not None and r["vs_one"] < RATIO_TARGET:
            missed.append(f"two ÷ one < {RATIO_TARGET:g}")
    if r["rejected_429"]:
        missed.append("429s")
    if max(r["busiest_window"].values(), default=0) > LIMIT:
        missed.append(f"window > {LIMIT}")
    return targets_cell(missed)


def throughput_table(results: list[dict[str, Any]]) -> str:
    headers = [
        "MODE",
        "ACCOUNTS",
        "ROWS",
        "WITH TASK",
        "PER ACCOUNT",
        "ROWS/S",
        "VS ONE",
        "429s",
        "BUSIEST 1 s",
        "WALL s",
        "TARGETS",
        "CHECK",
    ]
    rows = []
    for r in results:
        database = r["database"]
        rows.append(
            [
                r["mode"],
                r["accounts"],
                f"{r['rows']:,}",
                f"{database['submitted']:,}",
                " ".join(f"{k} {v:,}" for k, v in database["tasks_by_account"].items()),
                f"{r['rows_per_s']:.2f}",
                times(r.get("vs_one")),
                r["rejected_429"],
                " ".join(f"{k} {v}" for k, v in r["busiest_window"].items()),
                f"{r['wall_seconds']:.1f}",
                targets(r),
                check_cell(r["wrong"]),
            ]
        )
    return (
        f"{table_text(headers, rows)}\n\nthroughput: each account rate {RATE}, each mock "
        f"limited to {LIMIT} requests per sliding {WINDOW:g} s window (BUSIEST 1 s: the most "
        "it saw in one), polls held off. ROWS/S: (n - 1) / (last - first submitted_at); VS "
        "ONE: ÷ one account's ROWS/S in the same mode and run.\ntargets: two accounts above "
        f"{TARGET_ROWS_PER_S:g} rows/s and at least ×{RATIO_TARGET:g} one account's; no 429; "
        f"busiest window at most {LIMIT}."
    )
